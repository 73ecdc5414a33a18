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
from trm_core.evaluation.difficulty import accuracy_by_steps
from trm_core.evaluation.evaluate import EvalResult, evaluate, write_samples
from trm_core.evaluation.record import EVAL_DIR, record_name, write_eval_record
from trm_core.evaluation.settings import EvalSettings

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


def held_out_examples(
    profile: Any,
    split: str,
    limit: int | None = None,
    *,
    source: str | None = None,
    synthetic_steps: tuple[int, int] | None = None,
) -> list[Example]:
    """The first `limit` problems of the run's validation slice ("val": carved from its training
    data, never trained on) or of `source`'s (default: the profile's) "train"/"test" split;
    `synthetic_steps` (A, B): held-out synthetic problems of A..B steps, in the run's answer format,
    none of them in the run's training set."""
    d = profile.data
    source = "synthetic" if synthetic_steps else source or d.source
    kw = {
        "synthetic_size": d.synthetic_size,
        "min_steps": d.synthetic_min_steps,
        "max_steps": d.synthetic_max_steps,
        "seed": d.seed,
        "synthetic_answer": d.synthetic_answer,
        "synthetic_test_steps": tuple(synthetic_steps) if synthetic_steps else None,
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
    (`record_run` False: samples only, e.g. at a test-time depth the record cannot describe; so
    too for `synthetic_steps`, whose samples go to <split>-step<step>-steps<A>-<B>.jsonl).

    Returns (the record written, the results: the primary score first, then the other way if `both`).
    """
    profile = gen.profile
    steps_range = settings.synthetic_steps
    source = "synthetic" if steps_range else resolve_source(settings.data or profile.data.source)
    examples = held_out_examples(
        profile, settings.split, settings.limit, source=source, synthetic_steps=steps_range
    )
    calculator = gen.defaults.calculator if settings.calculator is None else bool(settings.calculator)
    max_tokens = settings.max_tokens or gen.defaults.max_tokens
    modes = [calculator, not calculator] if settings.both else [calculator]
    results = []
    for mode in modes:
        cb = (
            None if progress is None else (lambda done, total, ok, mode=mode: progress(mode, done, total, ok))
        )
        results.append(
            evaluate(
                gen,
                examples,
                batch_size=settings.batch_size,
                max_tokens=max_tokens,
                calculator=mode,
                calculator_mode=settings.calculator_mode,
                progress=cb,
            )
        )
    if len(results) == 2 and not results[1].calculator:  # both ways: each answer beside the other
        for s, off in zip(results[0].samples, results[1].samples, strict=True):
            s["generated_no_calculator"], s["correct_no_calculator"] = off["generated"], off["correct"]
    run_dir = run_dir_of(Path(gen.path))
    stem = record_name(settings.split, gen.step)
    if steps_range:  # not the run's own test problems: samples beside, never the run's record
        stem += f"-steps{steps_range[0]}-{steps_range[1]}"
        record_run = False
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
        "checkpoint": settings.which,
        "step": int(gen.step),
        "split": settings.split,
        "data": source,
        "limit": settings.limit,
        "n": results[0].total,
        "unscorable": results[0].unscorable,  # gold answers without a readable "#### number"
        "accuracy": results[0].accuracy,
        "accuracy_no_calculator": no_calc,
        # lm-evaluation-harness's gsm8k scores of the primary result (scoring.py)
        "accuracy_strict": results[0].strict_accuracy,
        "accuracy_flexible": results[0].flexible_accuracy,
        "by_steps": accuracy_by_steps(results[0].samples),  # {"3": 0.41, ...}: accuracy per problem steps
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        "settings": settings.record(calculator=calculator, max_tokens=max_tokens),
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
    """Load run_dir's `settings.which` checkpoint, evaluate it and record the result."""
    from trm_core.generation.generator import Generator

    gen = Generator.from_checkpoint(run_dir, settings.which, ema=ema, device=device)
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
    settings = EvalSettings(
        which=which, split=split, limit=limit, calculator=True, both=True, batch_size=batch_size
    )

    def report(calculator: bool, done: int, total: int, correct: int) -> None:
        if progress is not None:
            progress(done if calculator else total + done, 2 * total)

    record, results = evaluate_generator(generator, settings, progress=report)
    return record, results[0].samples
