"""Data: sources and their errors, prompt masking, validation carving, bucketed/sharded batches."""

from __future__ import annotations

import json
import time

import pytest
import torch

from trm_core.data.batches import build_datasets, iterate_batches, num_batches, tokenize_examples
from trm_core.data.sources import Example, format_completion, format_prompt, load_examples
from trm_core.data.tokenizers import build_tokenizer
from trm_core.errors import DataError
from trm_core.evaluation.scoring import extract_answer
from trm_core.profile import DataConfig, Profile


@pytest.fixture(scope="module")
def byte_tok():
    return build_tokenizer("byte")


def make_ds(tok, n=203, *, bucket_multiple=8, max_length=128, loss_on="answer"):
    examples = [
        Example(f"q{i} " + "x" * (i * 7 % 41), f"{i}+1=<<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}")
        for i in range(n)
    ]
    return tokenize_examples(
        examples, tok, max_length=max_length, bucket_multiple=bucket_multiple, loss_on=loss_on
    )


def row_keys(batch):
    """Each row's real tokens, as a hashable key (rows are unique in make_ds)."""
    return [tuple(r[r != 257].tolist()) for r in batch.input_ids]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\n#### 72", "72"),
        ("#### $1,234.00", "1234"),
        ("x #### 3.50 dollars", "3.5"),
        ("#### -5", "-5"),
        ("#### 10.0\n", "10"),
        ("####   007", "7"),
        ("no final answer", None),
        ("#### none", None),
        ("#### 1\n#### 2", "2"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_masking_and_shift(byte_tok):
    ex = Example("What is 2+3?", "2+3=<<2+3=5>>5\n#### 5")
    prompt, completion = format_prompt(ex.question), format_completion(ex.answer)
    assert prompt == "Question: What is 2+3?\nAnswer:" and completion.startswith(" 2+3")
    seq = byte_tok.encode(prompt + completion) + [byte_tok.eos_id]
    n, p = len(seq) - 1, len(byte_tok.encode(prompt))

    ds = tokenize_examples([ex], byte_tok, max_length=256, bucket_multiple=16)
    b = next(iterate_batches(ds, 4, seed=0, epoch=0))
    assert b.input_ids.shape == (1, 64) and b.input_ids.dtype == torch.long
    assert b.input_ids[0, :n].tolist() == seq[:-1]
    assert (b.input_ids[0, n:] == byte_tok.pad_id).all()
    labels = b.labels[0].tolist()
    assert labels[: p - 1] == [-100] * (p - 1)  # targets inside the prompt are masked
    assert labels[p - 1 : n] == seq[p:]  # answer tokens and EOS are supervised, shifted by one
    assert labels[n - 1] == byte_tok.eos_id
    assert labels[n:] == [-100] * (64 - n)  # padding is masked
    assert b.num_tokens == n

    ds_all = tokenize_examples([ex], byte_tok, max_length=256, bucket_multiple=16, loss_on="all")
    b = next(iterate_batches(ds_all, 4, seed=0, epoch=0))
    assert b.labels[0, :n].tolist() == seq[1:]


def test_truncation(byte_tok):
    long_answer = Example("short?", "1+1=<<1+1=2>>2 " * 20 + "\n#### 2")
    long_prompt = Example("y" * 100, "#### 1")
    ds = tokenize_examples([long_answer, long_prompt], byte_tok, max_length=60, bucket_multiple=64)
    assert len(ds) == 1 and ds.dropped == 1  # the prompt-only example had nothing left to learn
    b = next(iterate_batches(ds, 2, seed=0, epoch=0))
    assert b.input_ids.shape[1] == 64 and b.num_tokens == 59  # never padded past max_length rounded up


def test_gsm8k_jsonl(gsm8k_dir):
    train = load_examples(f"jsonl:{gsm8k_dir}", "train")
    test = load_examples(f"jsonl:{gsm8k_dir}", "test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].question.startswith("Natalia sold clips") and extract_answer(train[0].answer) == "72"
    assert len(load_examples(f"jsonl:{gsm8k_dir / 'test.jsonl'}", "train")) == 1319  # a file serves any split


def test_gsm8k_tokenizes_fast(gsm8k_dir):
    t = time.monotonic()
    ds = tokenize_examples(load_examples(f"jsonl:{gsm8k_dir}"), build_tokenizer("gpt2"), max_length=512)
    assert len(ds) == 7473 and time.monotonic() - t < 15


def test_bad_jsonl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    good = json.dumps({"question": "q", "answer": "#### 1"})
    cases = {
        "missing.jsonl": None,
        "badjson.jsonl": f"{good}\n{{not json\n",
        "noanswer.jsonl": f"{good}\n\n{json.dumps({'question': 'q'})}\n",
        "notobject.jsonl": "[1, 2]\n",
        "notstring.jsonl": json.dumps({"question": "q", "answer": 3}) + "\n",
        "empty.jsonl": "\n",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / "data" / name).write_text(text)
    expected = {
        "missing.jsonl": "data/missing.jsonl: no such file",
        "badjson.jsonl": "data/badjson.jsonl line 2: not valid JSON",
        "noanswer.jsonl": "data/noanswer.jsonl line 3: missing 'answer'",
        "notobject.jsonl": "data/notobject.jsonl line 1: not a JSON object",
        "notstring.jsonl": "data/notstring.jsonl line 1: 'answer' is not a string",
        "empty.jsonl": "data/empty.jsonl: has no examples",
    }
    for name, message in expected.items():
        with pytest.raises(DataError) as e:
            load_examples(f"jsonl:data/{name}")
        assert str(e.value).startswith(message) and "\n" not in str(e.value)
    (tmp_path / "data" / "train.jsonl").write_text(good + "\n")
    assert load_examples("jsonl:data") == [Example("q", "#### 1")]
    with pytest.raises(DataError, match="data has no test.jsonl"):
        load_examples("jsonl:data", "test")


def test_hf_offline_is_fast_and_names_alternatives():
    t = time.monotonic()
    with pytest.raises(DataError) as e:
        load_examples("hf:openai/gsm8k", "train")
    message = str(e.value)
    assert "jsonl:<dir>" in message and "synthetic" in message and "\n" not in message
    assert time.monotonic() - t < 20


@pytest.mark.parametrize("source", ["gsm8k", "jsonl:", "hf:"])
def test_unknown_or_empty_source(source):
    with pytest.raises(DataError):
        load_examples(source)


def test_synthetic_source_holds_out_test():
    train = load_examples("synthetic", "train", synthetic_size=300, seed=1)
    test = load_examples("synthetic", "test", synthetic_size=300, seed=1)
    assert len(train) == 300 and len(test) > 900
    assert train == load_examples("synthetic", "train", synthetic_size=300, seed=1)
    assert not {ex.question for ex in train} & {ex.question for ex in test}


def test_build_datasets_carves_val_from_train(byte_tok):
    data = DataConfig(source="synthetic", synthetic_size=120, val_size=20, max_length=640, bucket_multiple=16)
    train, val = build_datasets(Profile(data=data), byte_tok)
    assert (len(train), len(val)) == (100, 20)
    train_q = {ex.question for ex in train.examples}
    assert not train_q & {ex.question for ex in val.examples}
    all_train = {ex.question for ex in load_examples("synthetic", synthetic_size=120)}
    assert {ex.question for ex in val.examples} <= all_train  # from train, never test
    _, val2 = build_datasets(Profile(data=data), byte_tok)
    assert val2.examples == val.examples
    with pytest.raises(DataError, match="val_size"):
        build_datasets(Profile(data=DataConfig(source="synthetic", synthetic_size=10, val_size=10)), byte_tok)


def test_batches_deterministic_and_cover_epoch(byte_tok):
    ds = make_ds(byte_tok)
    epoch0 = [row_keys(b) for b in iterate_batches(ds, 16, seed=3, epoch=0)]
    assert epoch0 == [row_keys(b) for b in iterate_batches(ds, 16, seed=3, epoch=0)]
    assert epoch0 != [row_keys(b) for b in iterate_batches(ds, 16, seed=3, epoch=1)]
    assert epoch0 != [row_keys(b) for b in iterate_batches(ds, 16, seed=4, epoch=0)]
    rows = [k for batch in epoch0 for k in batch]
    assert len(rows) == len(set(rows)) == len(ds)  # every example exactly once
    assert len(epoch0) == num_batches(ds, 16) == 13


def test_batch_lengths_are_bucketed(byte_tok):
    ds = make_ds(byte_tok, bucket_multiple=8)
    for b in iterate_batches(ds, 16, seed=0, epoch=0):
        T = b.input_ids.shape[1]
        assert T % 8 == 0
        longest = max(len(k) for k in row_keys(b))
        assert longest <= T < longest + 8


def test_start_batch_resumes_exactly(byte_tok):
    ds = make_ds(byte_tok)
    full = list(iterate_batches(ds, 16, seed=5, epoch=2))
    resumed = list(iterate_batches(ds, 16, seed=5, epoch=2, start_batch=4))
    assert len(resumed) == len(full) - 4
    for a, b in zip(full[4:], resumed, strict=True):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)


def test_rank_sharding(byte_tok):
    ds = make_ds(byte_tok)  # 203 rows -> 13 batches of 16: 4 ranks get 3 each, one batch dropped
    shards = [
        [k for b in iterate_batches(ds, 16, seed=0, epoch=0, rank=r, world_size=4) for k in row_keys(b)]
        for r in range(4)
    ]
    counts = [len(list(iterate_batches(ds, 16, seed=0, epoch=0, rank=r, world_size=4))) for r in range(4)]
    assert counts == [num_batches(ds, 16, world_size=4)] * 4 == [3] * 4
    seen: set = set()
    for shard in shards:
        assert not seen & set(shard)
        seen |= set(shard)
    with pytest.raises(ValueError):
        next(iterate_batches(ds, 16, seed=0, epoch=0, rank=4, world_size=4))


def test_unshuffled_keeps_order(byte_tok):
    ds = make_ds(byte_tok, n=40)
    keys = [k for b in iterate_batches(ds, 16, seed=0, epoch=0, shuffle=False) for k in row_keys(b)]
    assert keys == [tuple(s[:-1]) for s in ds.sequences]
