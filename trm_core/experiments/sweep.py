"""Sweep files: a base profile × a grid of overrides × seeds, validated and expanded into runs.

    name = "arch"                 # runs go to RUNS_DIR/<name>/<run>/
    base = "quickstart"           # a profile name (profiles dir, beside the sweep file) or a path
    seeds = [0, 1, 2]             # train.seed: model init and data order
    [set]                         # dotted keys, every run
    "train.max_steps" = 300
    [grid]                        # dotted keys -> lists, the cartesian product
    "train.lr" = [1e-3, 3e-3]
    [[variant]]                   # optional: configurations that go together, each × grid × seeds
    label = "trm"
    [[variant]]
    label = "transformer-same-compute"
    "model.arch" = "transformer"
    "model.num_layers" = 6
    [eval]                        # after each training; recorded in the run's eval/ folder
    split = "test"
    limit = 500
    calculator = [true, false]
    [[eval.depth]]                # optional: then a depth study per table, RUN/<name> (eval --json)
    name = "depth-hard.json"
    synthetic_steps = "3-4"       # held-out synthetic problems of 3..4 steps
    H_cycles = [1, 2, 4, 8, 16]

Everything is checked before anything runs: every problem of the file and of every expanded
profile is reported at once (`SweepError.problems`).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trm_core.errors import UserError
from trm_core.profile import Profile, ProfileError, parse_profile, set_value

__all__ = ["EVAL_KEYS", "PlannedRun", "Sweep", "SweepError", "load_sweep", "parse_sweep", "run_name"]

TOP_KEYS = ("name", "description", "base", "seeds", "set", "grid", "variant", "eval")
EVAL_KEYS = ("split", "limit", "calculator", "checkpoint", "batch_size", "max_tokens", "depth")
_NOT_SWEEPABLE = {"name", "description", "train.seed"}  # the run's own name; seeds has its own list
SWEEP_MAX_BYTES = 16 << 20  # a sweep file is a few KB; 16 MiB still lets an oversized grid be counted
MAX_RUNS = 1000  # validating one run costs ~4 ms: 1,000 runs are 4 s before the first one starts


def count_runs(raw: dict[str, Any]) -> int:
    """How many runs a parsed sweep table asks for, by arithmetic on its lists' lengths alone (nothing
    expanded or validated): seeds × variants × the product of the grid's value lists."""

    def n(value: Any) -> int:
        return len(value) if isinstance(value, list) and value else 1

    grid = raw.get("grid")
    sizes = [n(v) for v in grid.values()] if isinstance(grid, dict) else []
    return n(raw.get("seeds")) * n(raw.get("variant")) * math.prod(sizes)


class SweepError(UserError):
    """A sweep file with problems; `problems` holds one sentence each, all of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        )


@dataclass
class PlannedRun:
    name: str  # the run directory's name inside RUNS_DIR/<sweep>/
    overrides: dict[str, Any]  # swept keys and train.seed
    profile: Profile
    text: str  # the profile as TOML (the base's comments kept)


@dataclass
class Sweep:
    name: str
    path: Path
    text: str
    base_path: Path
    seeds: list[int]
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    eval: dict[str, Any] | None  # None: no evaluation
    variants: list[dict[str, Any]] = field(default_factory=lambda: [{}])  # "label" + dotted overrides
    description: str = ""
    runs: list[PlannedRun] = field(default_factory=list)

    def eval_settings(self) -> Any:
        """The EvalSettings of the [eval] table (None without one)."""
        if self.eval is None:
            return None
        from trm_core.evaluation.run_eval import EvalSettings

        calc = self.eval.get("calculator", [True, False])
        modes = calc if isinstance(calc, list) else [calc]
        return EvalSettings.make(
            which=self.eval.get("checkpoint", "best"),
            split=self.eval.get("split", "test"),
            limit=self.eval.get("limit"),
            calculator=modes[0],
            both=len(set(modes)) == 2,
            max_tokens=self.eval.get("max_tokens"),
            batch_size=self.eval.get("batch_size"),
        )

    def depth_studies(self) -> list[Any]:
        """The DepthStudy of each [[eval.depth]] table (validated when the file was loaded)."""
        from trm_core.evaluation.depth_study import parse_depth_studies

        return parse_depth_studies(self.eval.get("depth", []), []) if self.eval else []


def _slug(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def run_name(overrides: dict[str, Any], swept: list[str], label: str = "") -> str:
    """`arch-trm_num_layers-6_seed1`: the variant's label, the last part of each swept key (whole key if
    ambiguous) with its value, then the seed."""
    leaves = [k.rpartition(".")[2] for k in swept]
    parts = [_slug(label)] if label else []
    for key, leaf in zip(swept, leaves, strict=True):
        label = leaf if leaves.count(leaf) == 1 else key.replace(".", "-")
        parts.append(f"{label}-{_slug(overrides[key])}")
    parts.append(f"seed{overrides['train.seed']}")
    return "_".join(parts)


def _resolve_base(base: str, sweep_path: Path, profiles_dir: Path | None) -> Path | None:
    candidates = [Path(base), sweep_path.parent / base]
    name = base if base.endswith(".toml") else f"{base}.toml"
    if profiles_dir is not None:
        candidates.append(profiles_dir / name)
    candidates += [sweep_path.parent / name, sweep_path.parent.parent / name, Path("profiles") / name]
    return next((c for c in candidates if c.is_file()), None)


def _known_keys() -> list[str]:
    return list(Profile().flat())


def _check_key(key: str, where: str, known: list[str], problems: list[str]) -> bool:
    if key in _NOT_SWEEPABLE:
        why = "use seeds = [...]" if key == "train.seed" else "each run is named after its values"
        problems.append(f"[{where}] cannot set {key!r} ({why})")
        return False
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"[{where}] unknown profile key {key!r}{hint}; keys are dotted, e.g. 'train.lr'")
        return False
    return True


def _check_eval(raw: Any, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        problems.append(f"[eval] must be a table, got {type(raw).__name__}")
        return None
    for key, value in raw.items():
        if key not in EVAL_KEYS:
            close = difflib.get_close_matches(key, EVAL_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"[eval] unknown key {key!r}{hint}; known: {', '.join(EVAL_KEYS)}")
        elif key == "split" and value not in ("train", "test"):
            problems.append(f"eval.split must be 'train' or 'test', got {value!r}")
        elif key in ("limit", "batch_size", "max_tokens") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            problems.append(f"eval.{key} must be an integer of at least 1, got {value!r}")
        elif key == "checkpoint" and not (
            value in ("best", "latest") or isinstance(value, int) and not isinstance(value, bool)
        ):
            problems.append(f"eval.checkpoint must be 'best', 'latest' or a step number, got {value!r}")
        elif key == "depth":
            from trm_core.evaluation.depth_study import parse_depth_studies

            parse_depth_studies(value, problems)
        elif key == "calculator":
            modes = value if isinstance(value, list) else [value]
            if not modes or not all(isinstance(m, bool) for m in modes) or len(modes) > 2:
                problems.append(f"eval.calculator must be true, false or [true, false], got {value!r}")
    return raw


def _check_variants(
    raw: Any, fixed: dict[str, Any], grid: dict[str, Any], known: list[str], problems: list[str]
) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, dict) for v in raw):
        problems.append(
            "variant must be an array of tables: [[variant]] with dotted keys (and an optional label)"
        )
        return [{}]
    out = []
    for i, v in enumerate(raw, 1):
        label = v.get("label", "")
        if not isinstance(label, str):
            problems.append(f"[[variant]] {i}: label must be a string, got {label!r}")
        keep = {"label": label} if isinstance(label, str) and label else {}
        for key, value in v.items():
            if key == "label" or not _check_key(key, f"variant {i}", known, problems):
                continue
            if key in fixed or key in grid:
                problems.append(f"[[variant]] {i}: {key!r} is also in [{'set' if key in fixed else 'grid'}]")
            keep[key] = value
        out.append(keep)
    labels = [_variant_label(v) for v in out]
    if len(set(labels)) != len(labels):
        problems.append(f"two variants get the same name ({', '.join(labels)}); give each a distinct label")
    return out


def _variant_label(variant: dict[str, Any]) -> str:
    if variant.get("label"):
        return str(variant["label"])
    return "_".join(f"{k.rpartition('.')[2]}-{_slug(v)}" for k, v in variant.items())


def parse_sweep(text: str, path: str | Path = "<sweep>", profiles_dir: str | Path | None = None) -> Sweep:
    """Parse, validate and expand a sweep; raise SweepError with every problem found."""
    path = Path(path)
    src = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError([f"{src}: TOML syntax error: {e}"]) from None
    total = count_runs(raw)
    if total > MAX_RUNS:
        raise SweepError(
            [
                f"{src}: the sweep asks for {total:,} runs (seeds × variants × grid), more than the {MAX_RUNS:,} a sweep may have"
            ]
        )
    problems: list[str] = []
    known = _known_keys()
    if "base" not in raw and any(k in raw for k in ("model", "train", "data", "tokenizer")):
        raise SweepError(
            [f"{src} looks like a profile, not a sweep (it has no base = …); train it with trm-tui train"]
        )
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown key {key!r}{hint}; a sweep has {', '.join(TOP_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        problems.append(f"name must be a plain name (letters, digits, . _ + -), got {name!r}")
    base_path = None
    base = raw.get("base")
    if not isinstance(base, str) or not base:
        problems.append('base must name a profile (e.g. base = "quickstart") or a profile file')
    else:
        base_path = _resolve_base(base, path, Path(profiles_dir) if profiles_dir else None)
        if base_path is None:
            problems.append(
                f"base profile {base!r} not found (as a path, beside the sweep, or in the profiles dir)"
            )
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        problems.append(f"seeds must be a non-empty list of integers ≥ 0, got {seeds!r}")
        seeds = [0]
    elif len(set(seeds)) != len(seeds):
        problems.append(f"seeds must not repeat, got {seeds!r}")
    fixed = raw.get("set", {})
    grid = raw.get("grid", {})
    for table, label in ((fixed, "set"), (grid, "grid")):
        if not isinstance(table, dict):
            problems.append(f"[{label}] must be a table of dotted keys, got {type(table).__name__}")
    fixed = (
        {k: v for k, v in fixed.items() if _check_key(k, "set", known, problems)}
        if isinstance(fixed, dict)
        else {}
    )
    grid = (
        {k: v for k, v in grid.items() if _check_key(k, "grid", known, problems)}
        if isinstance(grid, dict)
        else {}
    )
    for key, values in list(grid.items()):
        if not isinstance(values, list) or not values:
            problems.append(f"[grid] {key!r} must be a non-empty list of values, got {values!r}")
            grid.pop(key)
        elif len({repr(v) for v in values}) != len(values):
            problems.append(f"[grid] {key!r} repeats a value: {values!r}")
        if key in fixed:
            problems.append(f"{key!r} is in both [set] and [grid]")
    variants = _check_variants(raw.get("variant", [{}]), fixed, grid, known, problems)
    ev = _check_eval(raw["eval"], problems) if "eval" in raw else None
    description = raw.get("description", "")
    if problems or base_path is None:
        raise SweepError([f"{src}: {p}" for p in problems])
    sweep = Sweep(str(name), path, text, base_path, list(seeds), fixed, grid, ev, variants, str(description))
    sweep.runs = expand(sweep, problems)
    if problems:
        raise SweepError(problems)
    return sweep


def expand(sweep: Sweep, problems: list[str]) -> list[PlannedRun]:
    """Every variant × grid point × seed as a validated profile; problems of each run appended to `problems`."""
    from trm_core.profile import PROFILE_MAX_BYTES
    from trm_core.safe_read import read_text_file

    try:
        base_text = read_text_file(
            sweep.base_path, PROFILE_MAX_BYTES, what="base profile", error=lambda m: SweepError([m])
        )
    except SweepError as e:
        problems.extend(e.problems)
        return []
    try:
        parse_profile(base_text, str(sweep.base_path))
    except ProfileError as e:
        problems.extend(e.problems)
        return []
    swept = list(sweep.grid)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    points = itertools.product(sweep.variants, itertools.product(*sweep.grid.values()), sweep.seeds)
    for variant, values, seed in points:
        own = {k: v for k, v in variant.items() if k != "label"}
        overrides = {**own, **dict(zip(swept, values, strict=True)), "train.seed": seed}
        name = run_name(overrides, swept, _variant_label(variant))
        while name in seen:  # two values with the same slug ("1e-3" and "0.001")
            name += "+"
        seen.add(name)
        text = set_value(base_text, "name", name)
        for key, value in {**sweep.fixed, **overrides}.items():
            text = set_value(text, key, value)
        try:
            profile = parse_profile(text, f"{sweep.name}/{name}")
        except ProfileError as e:
            problems.extend(e.problems)
            continue
        runs.append(PlannedRun(name, overrides, profile, text))
    return runs


def load_sweep(path: str | Path, profiles_dir: str | Path | None = None) -> Sweep:
    """Read and parse a sweep file (SweepError: one sentence per problem)."""
    from trm_core.safe_read import read_text_file

    path = Path(path)
    text = read_text_file(path, SWEEP_MAX_BYTES, what="sweep file", error=lambda m: SweepError([m]))
    return parse_sweep(text, path, profiles_dir)
