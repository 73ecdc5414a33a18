"""Evaluate one run's checkpoint on its held-out problems (the app's evaluation screen) and keep the result in the run.

"val" is the validation slice the run carved from its training data (never trained on); "test"
is the data source's test split (GSM8K test for `jsonl:`/`hf:` sources). The model answers
greedily twice, with and without the calculator; the record (trm_core.evaluation.record) and the
samples of the calculator pass are written into run_dir/eval/.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trm_core.data.batches import split_train_val
from trm_core.data.sources import Example, load_examples
from trm_core.evaluation.evaluate import evaluate, write_samples
from trm_core.evaluation.record import EVAL_DIR, write_eval_record
from trm_core.profile import Profile

__all__ = ["SPLITS", "held_out_examples", "evaluate_held_out"]

SPLITS = ("val", "test")
Progress = Callable[[int, int], None]  # (problems done over both passes, problems in all)


def held_out_examples(profile: Profile, split: str, limit: int | None = None) -> list[Example]:
    """The run's validation slice ("val") or its source's test split ("test"), first `limit` of them."""
    d = profile.data
    kw = {
        "synthetic_size": d.synthetic_size,
        "min_steps": d.synthetic_min_steps,
        "max_steps": d.synthetic_max_steps,
        "seed": d.seed,
    }
    if split == "val":
        examples = split_train_val(load_examples(d.source, "train", **kw), d.val_size, d.seed)[1]
    else:
        examples = load_examples(d.source, split, **kw)
    return examples[:limit] if limit else examples


def evaluate_held_out(
    run_dir: Path,
    *,
    which: str = "best",
    split: str = "val",
    limit: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    generator: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score the checkpoint, write the record and its samples; return (record, samples)."""
    if generator is None:
        from trm_core.generation.generator import Generator

        generator = Generator.from_checkpoint(run_dir, which)
    profile = generator.profile
    examples = held_out_examples(profile, split, limit)
    n = len(examples)
    max_tokens = generator.defaults.max_tokens
    start = time.perf_counter()
    results = []
    for k, calculator in enumerate((True, False)):

        def report(done: int, total: int, correct: int, k: int = k) -> None:
            if progress is not None:
                progress(k * n + done, 2 * n)

        results.append(
            evaluate(
                generator,
                examples,
                batch_size=batch_size,
                max_tokens=max_tokens,
                calculator=calculator,
                progress=report,
            )
        )
    seconds = time.perf_counter() - start
    with_calc, without = results
    samples = with_calc.samples
    for s, s_off in zip(samples, without.samples, strict=True):
        s["generated_no_calculator"], s["correct_no_calculator"] = s_off["generated"], s_off["correct"]
    tokens = sum(len(generator.tokenizer.encode(s["generated"])) for s in samples)
    tokens += sum(len(generator.tokenizer.encode(s["generated_no_calculator"])) for s in samples)
    step = int(generator.step)
    samples_rel = f"{EVAL_DIR}/{split}-step{step}.jsonl"
    write_samples(Path(run_dir) / samples_rel, samples)
    record = {
        "version": 1,
        "checkpoint": which,
        "step": step,
        "split": split,
        "data": profile.data.source,
        "limit": limit,
        "n": n,
        "accuracy": with_calc.accuracy,
        "accuracy_no_calculator": without.accuracy,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        "settings": {"temperature": 0.0, "max_tokens": max_tokens, "batch_size": batch_size},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "samples": samples_rel,
    }
    write_eval_record(Path(run_dir), record)
    return record, samples
