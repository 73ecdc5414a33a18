"""A sweep on disk: `RUNS_DIR/<sweep>/sweep.json` (the manifest), `profiles/<run>.toml` (each expanded
profile, what `--print-commands` hands to a scheduler) and `<run>/` (ordinary run directories).

A run's state is read from its directory, never trusted from the manifest alone, so a sweep killed
at any moment (reboot, lost SSH) is picked up correctly: finished runs are skipped, an interrupted
one resumes from its checkpoint, a trained but unevaluated one is only evaluated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from trm_core.atomic import write_text_atomic
from trm_core.evaluation.record import read_eval_records
from trm_core.evaluation.settings import EvalSettings
from trm_core.experiments.sweep import PlannedRun, Sweep
from trm_core.profile import Mismatch

__all__ = [
    "MANIFEST",
    "STATES",
    "check_changes",
    "eval_is_current",
    "read_manifest",
    "run_state",
    "sweep_dir",
    "sweep_runs",
    "write_manifest",
    "write_profiles",
]

MANIFEST = "sweep.json"
MANIFEST_LOCK = ".sweep.json.lock"  # held for each read-modify-write of sweep.json
MANIFEST_MAX_BYTES = 64 << 20  # 100,000 runs of a few hundred bytes each, with room
CLAIMS = ".claims"  # <run>.lock: the sweep process working on that run holds its flock
PROFILES = "profiles"
# queued: nothing trained yet; stopped: resumable checkpoint; trained: waits for its evaluation
STATES = ("queued", "running", "stopped", "trained", "done", "failed")
# what makes a run's record answer the sweep's [eval]: every setting but the batch size
_COMPARED = tuple(f.name for f in dataclasses.fields(EvalSettings) if f.name != "batch_size")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(EvalSettings)}


def sweep_dir(runs_dir: str | Path, sweep: Sweep) -> Path:
    return Path(runs_dir) / sweep.name


def profile_path(root: Path, run: PlannedRun) -> Path:
    return root / PROFILES / f"{run.name}.toml"


def write_profiles(root: Path, sweep: Sweep) -> list[Path]:
    """Each run's expanded profile, written before anything is printed or started."""
    (root / PROFILES).mkdir(parents=True, exist_ok=True)
    out = []
    for r in sweep.runs:  # a profile already written as is stays untouched (a read-only finished sweep)
        path = profile_path(root, r)
        if not _holds(path, r.text):
            write_text_atomic(path, r.text, fsync=False)
        out.append(path)
    return out


def _holds(path: Path, text: str) -> bool:
    from trm_core.safe_read import FileProblem, read_bounded

    try:
        return read_bounded(path, len(text.encode()) + 1) == text.encode()
    except FileProblem:
        return False


# the longest name a run directory gets below it: checkpoints/step-0000000/optimizer.pt.<atomic temp>
_DEEPEST = "checkpoints/step-0000000/optimizer.pt.tmp-0123456789abcdef"


def _fs_limit(path: Path, name: str, default: int) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def check_paths(root: Path, sweep: Sweep) -> None:
    """Every name the sweep will write fits the file system (NAME_MAX per component, PATH_MAX in all),
    checked before anything is read or written (also at --dry-run): SweepError with each problem."""
    from trm_core.experiments.sweep import SweepError
    from trm_core.printable import printable

    name_max = _fs_limit(root, "PC_NAME_MAX", 255)
    path_max = _fs_limit(root, "PC_PATH_MAX", 4096)
    problems = []
    if len(os.fsencode(root.name)) > name_max:
        problems.append(
            f"the sweep name is {len(os.fsencode(root.name))} bytes; file names are at most {name_max}"
        )
    for run in sweep.runs:
        longest = max(len(os.fsencode(f"{run.name}{ext}")) for ext in ("", ".toml", ".lock"))
        if longest > name_max:
            problems.append(
                f"run {printable(run.name[:40])}… needs a {longest}-byte file name; at most {name_max}"
            )
        deepest = len(os.fsencode(str((root / run.name / _DEEPEST).absolute())))
        if deepest > path_max:
            problems.append(
                f"run {printable(run.name[:40])}…'s files need {deepest}-byte paths; at most {path_max}"
            )
        if len(problems) >= 5:
            break
    if problems:
        raise SweepError([f"{printable(str(root))[:80]}: {p}" for p in problems])


def claim_path(root: Path, name: str) -> Path:
    return root / CLAIMS / f"{name}.lock"


def read_manifest(root: Path) -> dict[str, Any] | None:
    """sweep.json, or None when it is missing or not one (bounded: a FIFO or a huge file is None)."""
    from trm_core.safe_read import FileProblem, read_bounded

    try:
        data = json.loads(read_bounded(root / MANIFEST, MANIFEST_MAX_BYTES).decode("utf-8"))
    except (FileProblem, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("runs"), list) else None


_ENTRY_KEYS = ("state", "message", "seconds")


def _known_states(root: Path) -> dict[str, dict[str, Any]]:
    manifest = read_manifest(root) or {"runs": []}
    out = {}
    for entry in manifest["runs"]:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry.get("state") in STATES:
            out[entry["name"]] = {k: entry[k] for k in _ENTRY_KEYS if k in entry}
    return out


def write_manifest(root: Path, sweep: Sweep, states: dict[str, dict[str, Any]]) -> Path:
    """The sweep file, its base, each run's overrides and state (`states[name]`: state, message, seconds).

    A read-modify-write under the manifest's lock: runs missing from `states` keep the state sweep.json
    already gives them, so two sweep processes on one folder each write only what they know."""
    from trm_core.runs.lock import file_lock

    root.mkdir(parents=True, exist_ok=True)
    release = file_lock(root / MANIFEST_LOCK)
    try:
        return _write_manifest(root, sweep, {**_known_states(root), **states})
    finally:
        release()


def _write_manifest(root: Path, sweep: Sweep, states: dict[str, dict[str, Any]]) -> Path:
    doc = {
        "version": 1,
        "name": sweep.name,
        "sweep_file": str(sweep.path),
        "sweep_text": sweep.text,
        "base": str(sweep.base_path),
        "eval": sweep.eval,
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": [
            {
                "name": r.name,
                "overrides": r.overrides,
                "run_dir": r.name,
                "profile": f"{PROFILES}/{r.name}.toml",
                **states.get(r.name, {"state": "queued"}),
            }
            for r in sweep.runs
        ],
    }
    return write_text_atomic(root / MANIFEST, json.dumps(doc, indent=1) + "\n", fsync=False)


def eval_is_current(run_dir: Path, settings: EvalSettings | None) -> bool:
    """True when a record with these settings exists for the checkpoint they name (or no eval is asked)."""
    if settings is None:
        return True
    from trm_core.errors import CheckpointError
    from trm_core.runs.read import read_state, resolve_checkpoint

    try:
        step = read_state(resolve_checkpoint(run_dir, settings.which))["step"]
    except CheckpointError:
        return False
    for rec in read_eval_records(run_dir):
        saved = rec.get("settings") or {}
        asked = settings.record(calculator=saved.get("calculator"), max_tokens=saved.get("max_tokens"))
        # a key a record predates (calculator_mode, synthetic_steps) had its default value then
        same = all(
            saved.get(k, _DEFAULTS.get(k)) == asked.get(k, _DEFAULTS.get(k))
            for k in _COMPARED
            if k not in ("calculator", "max_tokens")
        )
        calc_ok = settings.calculator is None or saved.get("calculator") == settings.calculator
        tokens_ok = settings.max_tokens is None or saved.get("max_tokens") == settings.max_tokens
        if rec.get("step") == step and same and calc_ok and tokens_ok:
            return True
    return False


def run_state(run_dir: Path, settings: EvalSettings | None) -> str:
    """One of STATES, from the run directory alone."""
    from trm_core.runs.listing import run_info

    info = run_info(run_dir)
    if info.status == "running":
        return "running"
    if info.status in ("finished", "early-stopped"):
        return "done" if eval_is_current(run_dir, settings) else "trained"
    if info.status == "failed":
        return "failed"
    if info.status in ("stopped", "interrupted"):
        return "stopped"
    return "queued"


def check_changes(root: Path, sweep: Sweep) -> list[Mismatch]:
    """The safety check of a (changed) sweep against what is on disk, graded like a profile's.

    Each run with a checkpoint is compared with its new profile (keys prefixed `<run>: `); runs the
    sweep no longer has are noted as harmless (they stay on disk, untouched).
    """
    from trm_core.runs.read import check_run_dir

    out: list[Mismatch] = []
    for run in sweep.runs:
        for m in check_run_dir(run.profile, root / run.name) or []:
            if m.key == "name":
                continue
            out.append(Mismatch(f"{run.name}: {m.key}", m.saved, m.current, m.severity))
    manifest = read_manifest(root)
    if manifest is not None:
        planned = {r.name for r in sweep.runs}
        for entry in manifest["runs"]:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name not in planned:
                out.append(Mismatch(f"{name}: (run)", "in the sweep", "dropped, kept on disk", "harmless"))
        if manifest.get("eval") != sweep.eval:
            out.append(Mismatch("[eval]", manifest.get("eval"), sweep.eval, "harmless"))  # re-evaluated only
    order = {"incompatible": 0, "changes-training": 1, "harmless": 2}
    return sorted(out, key=lambda m: (order[m.severity], m.key))


def sweep_runs(runs_dir: str | Path) -> list[Any]:
    """The runs of every sweep under `runs_dir` as RunInfo named `<sweep>/<run>`, grouped by sweep,
    in manifest order; a run not started yet is `queued`."""
    import dataclasses

    from trm_core.runs.listing import RunInfo, run_info

    runs_dir = Path(runs_dir)
    try:
        roots = sorted(d for d in runs_dir.iterdir() if (d / MANIFEST).is_file())
    except OSError:
        return []
    out = []
    for root in roots:
        manifest = read_manifest(root) or {"runs": []}
        for entry in manifest["runs"]:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or "/" in name or name.startswith("."):
                continue
            path = root / name
            label = f"{root.name}/{name}"
            if (path / "metrics.jsonl").is_file():
                out.append(dataclasses.replace(run_info(path), name=label))
            else:
                queued_at = (root / MANIFEST).stat().st_mtime
                out.append(RunInfo(label, path, "queued", 0, 0, None, queued_at))
    return out
