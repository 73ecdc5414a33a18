"""GSM8K-style data: sources, prompt formatting, label masking and length-bucketed batches.

Sources: `hf:openai/gsm8k` (the hub), `jsonl:<file-or-dir>` (GSM8K's schema, offline) and
`synthetic` (our own generator). An example becomes `Question: {q}\nAnswer: {answer}<eos>`;
the loss covers the answer and EOS (or everything with `loss_on = "all"`), never padding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trm_core.data.example import Example
from trm_core.errors import DataError
from trm_core.safe_read import FileProblem, read_bounded

SPLITS = ("train", "test")
JSONL_MAX_BYTES = 1 << 30  # GSM8K's train.jsonl is 4 MB; a bigger "data file" is a mistake or an attack


def format_prompt(question: str) -> str:
    """The text the model is conditioned on (and prompted with at generation time)."""
    return f"Question: {question}\nAnswer:"


def format_completion(answer: str) -> str:
    """The supervised continuation; the tokenizer's EOS id is appended after tokenizing."""
    return f" {answer}"


def load_examples(
    source: str,
    split: str = "train",
    *,
    synthetic_size: int = 20000,
    min_steps: int = 1,
    max_steps: int = 4,
    seed: int = 0,
    synthetic_answer: str = "steps",
    synthetic_test_steps: tuple[int, int] | None = None,
) -> list[Example]:
    """Examples of `split` ("train" or "test") from `source`; raises DataError with one sentence.
    `synthetic_answer` and `synthetic_test_steps` shape synthetic problems (`synthetic.synthetic_split`)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use 'train' or 'test'")
    source = source.strip()
    if source == "synthetic":
        from trm_core.data.synthetic import synthetic_split

        return synthetic_split(
            split,
            synthetic_size,
            min_steps,
            max_steps,
            seed,
            answer=synthetic_answer,
            test_steps=synthetic_test_steps,
        )
    if source.startswith("jsonl:"):
        return _load_jsonl(source[len("jsonl:") :].strip(), split)
    if source.startswith("hf:"):
        return _load_hf(source, split)
    raise DataError(
        f"unknown data source '{source}'; use 'hf:openai/gsm8k', 'jsonl:<file-or-dir>' or 'synthetic'"
    )


def _row_to_example(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: not a JSON object with 'question' and 'answer'")
    for key in ("question", "answer"):
        if key not in row:
            raise DataError(f"{where}: missing '{key}'")
        if not isinstance(row[key], str):
            raise DataError(f"{where}: '{key}' is not a string")
    return Example(question=row["question"], answer=row["answer"])


def _load_jsonl(target: str, split: str) -> list[Example]:
    if not target:
        raise DataError("data source 'jsonl:' needs a file or a folder, e.g. 'jsonl:data/gsm8k'")
    path = Path(target).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(
                f"{target} has no {split}.jsonl (a jsonl: folder holds train.jsonl and test.jsonl)"
            )
    elif not path.exists():
        raise DataError(f"{target}: no such file or folder for data source 'jsonl:{target}'")
    shown = str(Path(target) / path.name) if Path(target).expanduser().is_dir() else target
    try:  # a regular file of at most JSONL_MAX_BYTES: not a FIFO (hangs), not /dev/zero (fills memory)
        data = read_bounded(path, JSONL_MAX_BYTES)
    except FileProblem as p:
        raise DataError(f"{shown}: {p.phrase}, so it cannot be read as GSM8K JSONL") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{shown}: not a UTF-8 text file") from None
    examples: list[Example] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{shown} line {lineno}: not valid JSON ({msg})") from None
        examples.append(_row_to_example(row, f"{shown} line {lineno}"))
    if not examples:
        raise DataError(f"{shown}: has no examples")
    return examples


def _load_hf(source: str, split: str) -> list[Example]:
    repo = source[len("hf:") :].strip()
    alternatives = "use 'jsonl:<dir>' (a folder with GSM8K's train.jsonl and test.jsonl) or 'synthetic'"
    if not repo:
        raise DataError(f"data source 'hf:' needs a dataset name like 'hf:openai/gsm8k'; or {alternatives}")
    try:
        import datasets

        datasets.logging.set_verbosity_error()  # progress bars and warnings would spill over the TUI
        datasets.disable_progress_bars()
        config = "main" if repo.endswith("gsm8k") else None
        rows = datasets.load_dataset(repo, config, split=split)
    except ImportError:
        raise DataError(f"data source '{source}' needs the 'datasets' package; {alternatives}") from None
    except Exception as e:  # ConnectionError offline, FileNotFoundError, hub errors of every kind
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(
            f"cannot load '{source}' from the Hugging Face hub ({reason}); {alternatives}"
        ) from None
    return [_row_to_example(row, f"{source} {split} row {i}") for i, row in enumerate(rows)]
