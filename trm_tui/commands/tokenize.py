"""`trm-tui tokenize --tokenizer SPEC TEXT`: print token ids as JSON (or `--decode` ids back to text)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="print the token ids of TEXT (or decode ids with --decode)")
    p.add_argument("text", metavar="TEXT", help="text to encode, or a JSON list of ids with --decode")
    p.add_argument(
        "--tokenizer",
        "-t",
        default="gpt2",
        metavar="SPEC",
        help="gpt2 | byte | hf:<repo-or-dir> (default gpt2)",
    )
    p.add_argument("--decode", action="store_true", help="TEXT is a JSON list of ids: print the text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from trm_core.data.tokenizers import build_tokenizer
    from trm_core.errors import TokenizerError, UserError

    tok = build_tokenizer(args.tokenizer)
    if not args.decode:
        print(json.dumps(tok.encode(args.text)))
        return 0
    try:
        ids = json.loads(args.text)
    except json.JSONDecodeError:
        raise UserError("--decode expects a JSON list of token ids, e.g. [47849, 9752]") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise UserError("--decode expects a JSON list of integer token ids, e.g. [47849, 9752]")
    bad = [i for i in ids if not 0 <= i < tok.vocab_size]
    if bad:
        raise TokenizerError(
            f"token id {bad[0]} is outside the vocabulary of '{tok.spec}' (0..{tok.vocab_size - 1})"
        )
    print(tok.decode(ids))
    return 0
