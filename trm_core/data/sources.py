"""GSM8K-style data: sources, prompt formatting, label masking and length-bucketed batches.

Sources: `hf:openai/gsm8k` (the hub), `jsonl:<file-or-dir>` (GSM8K's schema, offline) and
`synthetic` (our own generator). An example becomes `Question: {q}\nAnswer: {answer}<eos>`;
the loss covers the answer and EOS (or everything with `loss_on = "all"`), never padding."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from trm_core.data.example import Example
from trm_core.errors import DataError
from trm_core.printable import printable
from trm_core.safe_read import FileProblem, read_bounded

SPLITS = ("train", "test")
# GSM8K's train.jsonl is 4 MB (7,473 rows, questions under 1 KB). The bounds hold for memory, not
# only for bytes read: the file is parsed line by line from its bytes (no whole-file decoded copy),
# and one row's question or answer is refused past FIELD_MAX_CHARS (a 100 MB question peaked at
# 2.7 GB RSS in tokenizing), so loading stays within ~2x JSONL_MAX_BYTES.
JSONL_MAX_BYTES = 256 << 20
FIELD_MAX_CHARS = 100_000  # per question / answer
MAX_ROWS = 1_000_000


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
        if len(row[key]) > FIELD_MAX_CHARS:
            raise DataError(
                f"{where}: '{key}' is {len(row[key]):,} characters, over the {FIELD_MAX_CHARS:,} a row may hold"
            )
        if _SURROGATE.search(row[key]):
            raise DataError(f"{where}: '{key}' holds a lone surrogate (\\ud800-\\udfff), not text")
    return Example(question=row["question"], answer=row["answer"])


_SURROGATE = re.compile("[\ud800-\udfff]")


def _load_jsonl(target: str, split: str) -> list[Example]:
    if not target:
        raise DataError("data source 'jsonl:' needs a file or a folder, e.g. 'jsonl:data/gsm8k'")
    path = Path(target).expanduser()
    try:
        os.stat(path)
    except FileNotFoundError:
        pass  # said below
    except OSError as e:
        why = "is a symlink loop" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
        raise DataError(f"{printable(target)}: {why}, so it cannot be read as GSM8K JSONL") from None
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
    examples: list[Example] = []
    pos, lineno = 0, 0
    while pos < len(data):  # line by line: no decoded copy of the whole file
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        lineno += 1
        if end - pos > 4 * FIELD_MAX_CHARS + 4096:  # before any copy of it is made
            raise DataError(f"{shown} line {lineno}: {end - pos:,} bytes, longer than any row may be")
        raw, pos = data[pos:end], end + 1
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{shown} line {lineno}: not UTF-8 text") from None
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{shown} line {lineno}: not valid JSON ({msg})") from None
        except ValueError:  # a number past Python's int-string limit (4,300 digits)
            raise DataError(
                f"{shown} line {lineno}: holds a number too long to read (over 4,300 digits)"
            ) from None
        examples.append(_row_to_example(row, f"{shown} line {lineno}"))
        if len(examples) > MAX_ROWS:
            raise DataError(f"{shown}: more than {MAX_ROWS:,} rows")
    del data
    if not examples:
        raise DataError(f"{shown}: has no examples")
    return examples


LOCAL_GSM8K = Path("..") / "shared" / "gsm8k"  # beside a checkout: the real GSM8K JSONL
HUB_HOST, HUB_PORT = "huggingface.co", 443
PROBE_S = 1.5  # how long the hub may take to answer before we call the machine offline


def _local_alternative() -> str:
    """Where a local GSM8K JSONL is: ../shared/gsm8k (from the cwd or the repo) when it exists."""
    repo = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repo):
        if (base / LOCAL_GSM8K / "train.jsonl").is_file():
            where = printable(str((base / LOCAL_GSM8K).resolve()))
            return f"data.source = 'jsonl:{LOCAL_GSM8K}' (it exists: {where}) or any 'jsonl:<dir>' of GSM8K JSONL"
    return f"data.source = 'jsonl:<dir>' with GSM8K's train.jsonl and test.jsonl (e.g. 'jsonl:{LOCAL_GSM8K}')"


def _hub_cached(repo: str) -> bool:
    """Whether the datasets cache holds `repo` (offline, load_dataset can use nothing else)."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    caches = [Path(os.environ["HF_DATASETS_CACHE"])] if os.environ.get("HF_DATASETS_CACHE") else []
    caches.append(home / "datasets")
    stem = repo.replace("/", "___")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub") / f"datasets--{repo.replace('/', '--')}"
    return hub.is_dir() or any((c / stem).is_dir() for c in caches)


def _offline_reason() -> str | None:
    """Why the hub cannot be reached right now (an offline switch, no network), else None; at most
    PROBE_S seconds (datasets would retry for ~30 s before failing)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    import socket
    import threading

    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, HUB_PORT), timeout=PROBE_S).close()
            result.append(None)
        except OSError as e:
            result.append(f"no network: {e.strerror or type(e).__name__}")

    t = threading.Thread(target=probe, daemon=True)  # a DNS lookup can block past any timeout
    t.start()
    t.join(PROBE_S)
    return result[0] if result else f"{HUB_HOST} did not answer within {PROBE_S} s"


def check_source_reachable(source: str) -> None:
    """For an `hf:` source that is not cached, a DataError within PROBE_S seconds when the hub cannot
    be reached — called before torch is imported, so an offline `train` fails in about a second, not
    after ~30 s of imports and hub retries. Other sources: nothing (their loader checks them)."""
    source = source.strip()
    if not source.startswith("hf:") or not source[3:].strip():
        return
    repo = source[3:].strip()
    if not _hub_cached(repo):
        reason = _offline_reason()
        if reason is not None:
            raise DataError(
                f"cannot load '{printable(source)}' from the Hugging Face hub: it is unreachable ({reason}) and "
                f"the dataset is not cached; use a local copy: {_local_alternative()}, or 'synthetic'"
            )


def _load_hf(source: str, split: str) -> list[Example]:
    repo = source[len("hf:") :].strip()
    alternatives = "use 'jsonl:<dir>' (a folder with GSM8K's train.jsonl and test.jsonl) or 'synthetic'"
    if not repo:
        raise DataError(f"data source 'hf:' needs a dataset name like 'hf:openai/gsm8k'; or {alternatives}")
    check_source_reachable(source)
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
