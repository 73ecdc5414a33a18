"""Tokenizers: GPT-2's exact ids offline, byte-level, hf:<dir>, and UTF-8-safe streaming."""

from __future__ import annotations

import json
import time

import pytest

from trm_core.data.tokenizers import build_tokenizer
from trm_core.errors import TokenizerError

NATALIA = "Natalia sold clips to 48 of her friends"
NATALIA_IDS = [47849, 9752, 2702, 19166, 284, 4764, 286, 607, 2460]
MULTIBYTE = "héllo 東京 🙂 x=3*4=<<3*4=12>>12\n#### 12"


def stream(tok, ids):
    dec = tok.incremental_decoder()
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    return pieces


def test_gpt2_exact_ids_offline():
    tok = build_tokenizer("gpt2")
    assert tok.encode(NATALIA) == NATALIA_IDS
    assert (tok.vocab_size, tok.eos_id, tok.pad_id) == (50257, 50256, 50256)
    assert tok.decode(NATALIA_IDS + [tok.eos_id]) == NATALIA
    assert build_tokenizer("gpt2") is tok  # cached per spec


def test_gpt2_special_text_is_plain_text():
    tok = build_tokenizer("gpt2")
    ids = tok.encode("a <|endoftext|> b")
    assert 50256 not in ids
    assert tok.decode(ids) == "a <|endoftext|> b"


def test_byte_tokenizer():
    tok = build_tokenizer("byte")
    assert (tok.vocab_size, tok.eos_id, tok.pad_id) == (258, 256, 257)
    assert tok.encode("48") == [ord("4"), ord("8")]  # digits are one token each
    ids = tok.encode(MULTIBYTE)
    assert tok.decode(ids + [256, 257, 257]) == MULTIBYTE


@pytest.mark.parametrize("spec", ["byte", "gpt2"])
def test_streaming_never_splits_characters(spec):
    tok = build_tokenizer(spec)
    ids = tok.encode(MULTIBYTE)
    pieces = stream(tok, ids + [tok.eos_id])
    assert "".join(pieces) == tok.decode(ids) == MULTIBYTE
    assert not any("\ufffd" in p for p in pieces)
    assert "" in pieces  # some token really was a partial character and was held back


def test_hf_dir_matches_gpt2(gpt2_dir):
    hf = build_tokenizer(f"hf:{gpt2_dir}")
    gpt2 = build_tokenizer("gpt2")
    assert hf.vocab_size == 50257 and hf.eos_id == 50256 and hf.pad_id == 50256
    for text in (NATALIA, MULTIBYTE, "a <|endoftext|> b", "  spaces   and\ttabs\n\n"):
        assert hf.encode(text) == gpt2.encode(text)
    ids = hf.encode(MULTIBYTE)
    assert hf.decode(ids + [hf.eos_id]) == MULTIBYTE
    pieces = stream(hf, ids)
    assert "".join(pieces) == MULTIBYTE
    assert not any("\ufffd" in p for p in pieces)


def test_hf_empty_or_missing_dir_is_a_user_error(tmp_path):
    with pytest.raises(TokenizerError, match="gpt2.*byte"):
        build_tokenizer(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    with pytest.raises(TokenizerError, match="gpt2.*byte"):
        build_tokenizer(f"hf:{tmp_path}")


def test_hf_hub_offline_is_fast_and_names_alternatives():
    t = time.monotonic()
    with pytest.raises(TokenizerError, match="'gpt2' or 'byte'") as e:
        build_tokenizer("hf:some-org/no-such-tokenizer")
    assert "\n" not in str(e.value)
    assert time.monotonic() - t < 20


@pytest.mark.parametrize(
    ("spec", "hint"), [("gtp2", "did you mean 'gpt2'"), ("bytes", "did you mean 'byte'")]
)
def test_unknown_spec(spec, hint):
    with pytest.raises(TokenizerError, match=hint):
        build_tokenizer(spec)


def test_cli_tokenize(capsys):
    from trm_tui.__main__ import main

    assert main(["tokenize", "--tokenizer", "gpt2", NATALIA]) == 0
    assert json.loads(capsys.readouterr().out) == NATALIA_IDS
    assert main(["tokenize", "--tokenizer", "gpt2", "--decode", json.dumps(NATALIA_IDS)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == NATALIA
    assert main(["tokenize", "--tokenizer", "gtp2", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trm-tui: unknown tokenizer") and err.count("\n") == 1
