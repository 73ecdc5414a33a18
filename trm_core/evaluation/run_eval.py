"""Evaluate a run's checkpoint and record the result in the run (`record.py`): shared by
`trm-tui eval`, `trm-tui train --eval` and the sweep queue, so all three write the same file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trm_core.data.batches import split_train_val
from trm_core.data.sources import Example, load_examples
from trm_core.errors import UserError
from trm_core.evaluation.evaluate import EvalResult, evaluate, write_samples
from trm_core.evaluation.record import EVAL_DIR, record_name, write_eval_record

__all__ = [
    "EvalSettings",
    "resolve_source",
    "run_dir_of",
    "held_out_examples",
    "evaluate_generator",
    "evaluate_run",
    "evaluate_held_out",
]

# (calculator on?, problems done, problems in all, correct so far)
Progress = Callable[[bool, int, int, int], None]


def resolve_source(source: str) -> str:
    """A bare file or folder of GSM8K-schema JSONL becomes `jsonl:<path>`."""
    if not source.startswith(("jsonl:", "hf:", "synthetic")) and Path(source).exists():
        return f"jsonl:{source}"
    return source


def run_dir_of(ckpt: Path) -> Path:
    """runs/<name> for runs/<name>/checkpoints/step-…; a loose checkpoint dir is its own home."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt


class EvalSettings(dict):
    """The settings an evaluation ran with, as stored in the record (a plain dict, JSON-ready).

    Keys: which, data (None = the profile's), split, limit, calculator (for `accuracy`), both (also
    score the other way), max_tokens (None = the profile's), batch_size (None = by device),
    calculator_mode ("verify": the model's right results kept as written; "write").
    """

    @classmethod
    def make(
        cls,
        *,
        which: str = "best",
        data: str | None = None,
        split: str = "test",
        limit: int | None = None,
        calculator: bool | None = None,
        both: bool = False,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        calculator_mode: str = "verify",
    ) -> EvalSettings:
        if limit is not None and limit < 1:
            raise UserError(f"the evaluation limit must be at least 1, got {limit}")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"the evaluation batch size must be at least 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise UserError(f"the evaluation's max tokens must be at least 1, got {max_tokens}")
        return cls(
            which=str(which),
            data=data,
            split=split,
            limit=limit,
            calculator=calculator,
            both=both,
            max_tokens=max_tokens,
            batch_size=batch_size,
            calculator_mode=calculator_mode,
        )


def held_out_examples(
    profile: Any, split: str, limit: int | None = None, *, source: str | None = None
) -> list[Example]:
    """The first `limit` problems of the run's validation slice ("val": carved from its training
    data, never trained on) or of `source`'s (default: the profile's) "train"/"test" split."""
    d = profile.data
    source = source or d.source
    kw = {
        "synthetic_size": d.synthetic_size,
        "min_steps": d.synthetic_min_steps,
        "max_steps": d.synthetic_max_steps,
        "seed": d.seed,
    }
    if split == "val":
        examples = split_train_val(load_examples(source, "train", **kw), d.val_size, d.seed)[1]
    else:
        examples = load_examples(source, split, **kw)
    return examples[:limit] if limit else examples


def _generated_tokens(gen: Any, result: EvalResult) -> int:
    try:
        return sum(len(gen.tokenizer.encode(s["generated"])) for s in result.samples)
    except Exception:  # a tokenizer without encode (test fakes): no token count
        return 0


def evaluate_generator(
    gen: Any,
    settings: EvalSettings,
    *,
    output: Path | None = None,
    progress: Progress | None = None,
    record_run: bool = True,
) -> tuple[dict[str, Any], list[EvalResult]]:
    """Score `gen` (a Generator from a checkpoint) and write samples + record into its run
    (`record_run` False: samples only, e.g. at a test-time depth the record cannot describe).

    Returns (the record written, the results: the primary score first, then the other way if `both`).
    """
    profile = gen.profile
    source = resolve_source(settings["data"] or profile.data.source)
    examples = held_out_examples(profile, settings["split"], settings["limit"], source=source)
    calculator = gen.defaults.calculator if settings["calculator"] is None else bool(settings["calculator"])
    max_tokens = settings["max_tokens"] or gen.defaults.max_tokens
    modes = [calculator, not calculator] if settings["both"] else [calculator]
    results = []
    for mode in modes:
        cb = (
            None if progress is None else (lambda done, total, ok, mode=mode: progress(mode, done, total, ok))
        )
        results.append(
            evaluate(
                gen,
                examples,
                batch_size=settings["batch_size"],
                max_tokens=max_tokens,
                calculator=mode,
                calculator_mode=settings.get("calculator_mode", "verify"),
                progress=cb,
            )
        )
    if len(results) == 2 and not results[1].calculator:  # both ways: each answer beside the other
        for s, off in zip(results[0].samples, results[1].samples, strict=True):
            s["generated_no_calculator"], s["correct_no_calculator"] = off["generated"], off["correct"]
    run_dir = run_dir_of(Path(gen.path))
    stem = record_name(settings["split"], gen.step)
    samples_path = output or run_dir / EVAL_DIR / f"{stem}.jsonl"
    try:
        write_samples(samples_path, results[0].samples)
    except OSError as e:
        raise UserError(f"cannot write {samples_path}: {e.strerror or e}") from None
    try:
        samples_rel: str | None = str(samples_path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        samples_rel = str(samples_path)  # --output outside the run: kept as given
    no_calc = next((r.accuracy for r in results if not r.calculator), None)
    seconds = sum(r.seconds for r in results)
    tokens = sum(_generated_tokens(gen, r) for r in results)
    record = {
        "checkpoint": settings["which"],
        "step": int(gen.step),
        "split": settings["split"],
        "data": source,
        "limit": settings["limit"],
        "n": results[0].total,
        "unscorable": results[0].unscorable,  # gold answers without a readable "#### number"
        "accuracy": results[0].accuracy,
        "accuracy_no_calculator": no_calc,
        # lm-evaluation-harness's gsm8k scores of the primary result (scoring.py)
        "accuracy_strict": results[0].strict_accuracy,
        "accuracy_flexible": results[0].flexible_accuracy,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        "settings": {**settings, "calculator": calculator, "max_tokens": max_tokens},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "samples": samples_rel,
    }
    try:
        if record_run:
            write_eval_record(run_dir, record)
    except OSError as e:
        raise UserError(f"cannot write the evaluation record into {run_dir}: {e.strerror or e}") from None
    return {"version": 1, **record}, results


def evaluate_run(
    run_dir: str | Path,
    settings: EvalSettings,
    *,
    device: str = "auto",
    ema: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Load run_dir's `settings['which']` checkpoint, evaluate it and record the result."""
    from trm_core.generation.generator import Generator

    gen = Generator.from_checkpoint(run_dir, settings["which"], ema=ema, device=device)
    record, _ = evaluate_generator(gen, settings, progress=progress)
    return record


def evaluate_held_out(
    run_dir: str | Path,
    *,
    which: str = "best",
    split: str = "val",
    limit: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    generator: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The app's evaluation: greedy answers with and without the calculator, recorded in the run;
    `progress(done, total)` counts both passes. Returns (record, samples of the calculator pass,
    each with the no-calculator answer beside it)."""
    if generator is None:
        from trm_core.generation.generator import Generator

        generator = Generator.from_checkpoint(run_dir, which)
    settings = EvalSettings.make(
        which=which, split=split, limit=limit, calculator=True, both=True, batch_size=batch_size
    )

    def report(calculator: bool, done: int, total: int, correct: int) -> None:
        if progress is not None:
            progress(done if calculator else total + done, 2 * total)

    record, results = evaluate_generator(generator, settings, progress=report)
    return record, results[0].samples
