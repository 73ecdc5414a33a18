"""Putting runs out of sight without losing them: hidden runs (a list in RUNS_DIR/.hidden-runs.json,
the files untouched) and deleted runs (moved to RUNS_DIR/.trash/, never removed). No Textual here."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trm_core.atomic import write_text_atomic

HIDDEN = ".hidden-runs.json"
TRASH = ".trash"


def hidden_runs(runs_dir: Path) -> set[str]:
    try:
        names = json.loads((runs_dir / HIDDEN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def set_hidden(runs_dir: Path, names: Iterable[str], hidden: bool) -> set[str]:
    """Hide (or show again) runs named as the Runs table names them (`run` or `sweep/run`)."""
    now = hidden_runs(runs_dir)
    now = now | set(names) if hidden else now - set(names)
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(runs_dir / HIDDEN, json.dumps(sorted(now), indent=1) + "\n", fsync=False)
    return now


def trash(runs_dir: Path, name: str) -> Path:
    """Move a run (or a whole sweep directory) to RUNS_DIR/.trash/<name>-<time>; returns where it went.
    Nothing is deleted: `mv` it back to restore it."""
    src = runs_dir / name
    dest = runs_dir / TRASH / f"{name.replace('/', '--')}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dest)
    return dest


def short_names(manifest_runs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """`sweep/run` -> `sweep/key=value…/sN`: only the keys whose values vary within the sweep
    (the leaf of a dotted key), the seed only when the sweep has several."""
    out: dict[str, str] = {}
    for sweep, entries in manifest_runs.items():
        overrides = [e.get("overrides") or {} for e in entries]
        keys = [k for k in dict.fromkeys(k for o in overrides for k in o) if k != "train.seed"]
        varying = [k for k in keys if len({repr(o.get(k)) for o in overrides}) > 1]
        seeds = len({repr(o.get("train.seed")) for o in overrides}) > 1
        leaves = [k.rpartition(".")[2] for k in varying]
        # a key some runs do not set comes from [[variant]] tables: the run's name says it better
        # ("sampled" rather than "init_state=None"), so the name without its seed is shown
        by_variant = any(k not in o for k in varying for o in overrides)
        for e, o in zip(entries, overrides, strict=True):
            parts = (
                [re.sub(r"_seed\d+$", "", str(e.get("name")))]
                if by_variant
                else [
                    f"{leaf if leaves.count(leaf) == 1 else key}={_value(o.get(key))}"
                    for key, leaf in zip(varying, leaves, strict=True)
                ]
            )
            if seeds or not parts:
                parts.append(f"s{o.get('train.seed', '?')}")
            out[f"{sweep}/{e.get('name')}"] = f"{sweep}/" + " ".join(parts)
    return out


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)
