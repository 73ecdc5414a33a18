"""`trm-tui generate RUN`: stream a checkpoint's answer to one prompt, or a line REPL without `--prompt`.

The model and tokenizer are rebuilt from the checkpoint's own profile; sampling defaults come from
its `[generate]` section and flags override them. A plain question is wrapped in the training
format ("Question: …\\nAnswer:") unless `--raw`. Calculator spans are highlighted on a terminal.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from trm_core.printable import printable

MAX_PROMPT_CHARS = 16_000  # longer prompts keep their end (where the question is) and get a note
HISTORY_FILE = (
    Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "trm-tui" / "history"
)

_CALC_STYLE, _RESET = "\x1b[1;36m", "\x1b[0m"


def finite_float(text: str) -> float:
    """argparse type: a finite number (argparse's float() takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed torch accepts (at most 2**63-1; negative = a fresh random seed)."""
    from trm_core.limits import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError("must be at most 2**63-1 (9223372036854775807)")
    return max(value, -1)


def count_int(text: str) -> int:
    """argparse type: a whole number of at most 10**9 (tokens, rows, problems)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if value > 10**9:
        raise argparse.ArgumentTypeError(f"must be at most 1,000,000,000, got {text[:40]}")
    return value


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_path", metavar="RUN", help="a run directory or a checkpoint directory")
    p.add_argument("--which", default="best", help="best (default), latest or a step number")
    p.add_argument(
        "--raw-weights", action="store_true", help="use the trained weights even when the run kept an EMA"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--dtype",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="inference weights and KV cache (default auto: bf16 on CUDA, fp32 on CPU)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="on CUDA, compile the decode step before capturing it (~1.8x faster per token, 30-60 s at start)",
    )
    p.add_argument(
        "--calculator",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fill <<expr= with the calculator (default: the profile's generate.calculator)",
    )
    p.add_argument(
        "--calculator-mode",
        choices=["verify", "write"],
        default="verify",
        help="verify (default): the model writes each result, wrong ones are corrected; write: the calculator writes them",
    )
    p.add_argument("--max-tokens", type=count_int, default=None, metavar="N", help="new tokens at most")


def add_depth_args(p: argparse.ArgumentParser, *, lists: bool = False) -> None:
    """Test-time depth: any number of supervision steps and cycles, and ACT's halting threshold."""
    each = " (a comma list: every combination is evaluated)" if lists else ""
    kind = str if lists else int
    p.add_argument(
        "--supervision-steps", type=kind, default=None, metavar="S", help=f"supervision steps{each}"
    )
    p.add_argument("--H-cycles", type=kind, default=None, metavar="H", help=f"H-cycles per step{each}")
    p.add_argument("--L-cycles", type=kind, default=None, metavar="L", help=f"L-cycles per H-cycle{each}")
    p.add_argument(
        "--halt-threshold",
        type=str if lists else float,
        default=None,
        metavar="P",
        help=f"ACT: a token halts when sigmoid(q_halt) > P, 0..1 (default: the profile's){each}",
    )


def depth_request(steps: Any, H: Any, L: Any, threshold: Any) -> Any:
    """The `Depth` the flags ask for (unset: the checkpoint's), checked by `Generator.set_depth`."""
    from trm_core.model.depth import Depth

    return Depth(steps, H, L, threshold)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate from a checkpoint (one prompt, or a line REPL)")
    add_checkpoint_args(p)
    add_depth_args(p)
    p.add_argument(
        "--show-depth",
        action="store_true",
        help="under each line of the answer, a line with each token's depth (steps thought; · = calculator)",
    )
    p.add_argument("--prompt", default=None, help="the question (without it: a REPL reading lines)")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, not as 'Question: …\\nAnswer:'")
    p.add_argument("--temperature", type=finite_float, default=None, metavar="T", help="0 = greedy")
    p.add_argument("--top-k", type=count_int, default=None, metavar="K", help="0 = off")
    p.add_argument("--top-p", type=finite_float, default=None, metavar="P", help="nucleus mass, 1 = off")
    p.add_argument(
        "--seed",
        type=seed_int,
        default=None,
        metavar="S",
        help="reproduce a sampled answer (default: the profile's; negative = a fresh seed, printed)",
    )
    p.add_argument("--no-kv-cache", action="store_true", help="recompute the whole sequence per token")
    p.add_argument("--no-cuda-graph", action="store_true", help="decode eagerly on CUDA (for comparisons)")
    p.set_defaults(run=run)


def load_generator(args: argparse.Namespace, **kw: Any) -> Any:
    """The Generator for RUN (CheckpointError, one sentence, when it is missing or corrupt)."""
    from trm_core.generation.generator import Generator

    kw.setdefault("compile_step", args.compile)
    return Generator.from_checkpoint(
        args.run_path, args.which, ema=not args.raw_weights, device=args.device, dtype=args.dtype, **kw
    )


def prepare_prompt(text: str, *, raw: bool, note: TextIO) -> str | None:
    """The model prompt for user text, or None when the text is empty. Huge text keeps its end."""
    from trm_core.data.sources import format_prompt
    from trm_core.generation.textstream import clean_prompt

    text = clean_prompt(text)  # undecodable argv/stdin bytes arrive as surrogates
    if not text.strip():
        return None
    if len(text) > MAX_PROMPT_CHARS:
        print(
            f"note: the prompt has {len(text):,} characters; only its last {MAX_PROMPT_CHARS:,} are used",
            file=note,
        )
        text = text[-MAX_PROMPT_CHARS:]
    return text if raw else format_prompt(text.strip())


def depth_digit(depth: int | None) -> str:
    if depth is None:
        return "·"
    return "0123456789abcdefghijklmnopqrstuvwxyz"[depth] if depth < 36 else "+"


def depth_lines(pieces: list[Any], steps: int) -> list[str]:
    """Each line of the answer followed by a line of digits: the depth of the token of each character."""
    text = digits = ""
    for piece in pieces:
        t = printable(piece.text, keep_lines=True)
        text += t
        depth = piece.depth if piece.source == "model" else None
        if depth is None and piece.source == "model":
            depth = steps  # a fixed-depth model: every token thought for all steps
        digits += "".join(c if c in "\n" else depth_digit(depth) for c in t)
    out = []
    for line, marks in zip(text.split("\n"), digits.split("\n"), strict=True):
        out += [line, marks]
    return out


def stream_to(
    out: TextIO, gen: Any, prompt: str, opts: dict[str, Any], *, color: bool, show_depth: bool = False
) -> None:
    """Write the pieces as they come (flushing each), calculator spans highlighted when `color`;
    with `show_depth` the answer is written when complete, each line over its depths."""
    if show_depth:
        for line in depth_lines(list(gen.stream(prompt, **opts)), gen.steps):
            out.write(line + "\n")
        stats = gen.last_stats
        print(
            f"mean depth {stats.get('mean_depth', gen.steps):.2f} supervision steps · "
            f"{stats.get('net_calls_per_token', 0):.1f} net calls per token",
            file=sys.stderr,
        )
        return
    for piece in gen.stream(prompt, **opts):
        text = printable(piece.text, keep_lines=True)  # a model must never drive the terminal
        if color and piece.source == "calculator":
            text = f"{_CALC_STYLE}{text}{_RESET}"
        out.write(text)
        out.flush()
    out.write("\n")
    out.flush()
    if getattr(gen, "last_seed", None) is not None:
        print(f"(seed {gen.last_seed}: --seed {gen.last_seed} reproduces this answer)", file=sys.stderr)
    if gen.last_dropped:
        print(
            f"note: the first {gen.last_dropped} prompt tokens did not fit the context and were dropped",
            file=sys.stderr,
        )


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "calculator": args.calculator,
        "calculator_mode": args.calculator_mode,
        "kv_cache": False if args.no_kv_cache else None,
    }


def run(args: argparse.Namespace) -> int:
    from trm_core.errors import UserError

    if args.prompt is not None and prepare_prompt(args.prompt, raw=args.raw, note=sys.stderr) is None:
        raise UserError("the prompt is empty; pass a question with --prompt or leave --prompt out for a REPL")
    gen = load_generator(args, cuda_graph=not args.no_cuda_graph)
    gen.set_depth(depth_request(args.supervision_steps, args.H_cycles, args.L_cycles, args.halt_threshold))
    opts = sampling_options(args)
    gen.options(**opts)  # bad flag values fail now, in one sentence, before any prompt
    color = sys.stdout.isatty()
    if args.prompt is not None:
        prompt = prepare_prompt(args.prompt, raw=args.raw, note=sys.stderr)
        assert prompt is not None
        stream_to(sys.stdout, gen, prompt, opts, color=color, show_depth=args.show_depth)
        return 0
    return repl(gen, args, opts, color=color)


def _setup_history() -> Any:
    try:
        import readline
    except ImportError:  # not on every platform; input() still works
        return None
    try:
        HISTORY_FILE.parent.mkdir(parents=True, exist_ok=True)
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    readline.set_history_length(1000)
    return readline


def repl(gen: Any, args: argparse.Namespace, opts: dict[str, Any], *, color: bool) -> int:
    """Read a line, stream its answer, repeat; Ctrl+D (EOF) quits, Ctrl+C stops one answer."""
    interactive = sys.stdin.isatty()
    readline = _setup_history() if interactive else None
    if interactive:
        step = getattr(gen, "step", "?")
        print(f"{printable(str(gen.path))} (step {step}) — type a question; Ctrl+D to quit", file=sys.stderr)
    try:
        while True:
            try:
                line = input("> " if interactive else "")
            except EOFError:
                if interactive:
                    print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:
                print(file=sys.stderr)
                continue
            prompt = prepare_prompt(line, raw=args.raw, note=sys.stderr)
            if prompt is None:
                continue
            try:
                stream_to(sys.stdout, gen, prompt, opts, color=color, show_depth=args.show_depth)
            except KeyboardInterrupt:
                print("\n(stopped)", file=sys.stderr)
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass
