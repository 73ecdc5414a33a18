"""Finding and reading checkpoints: the layout, `latest`/`best`, state.json, weights, the safety check.

The layout is described in `runs/checkpoint.py` (the writer). Nothing here executes code from a file: weights are safetensors, the
optimizer state goes through `torch.load(weights_only=True)`, and a missing, truncated, foreign or
newer-format file is a one-sentence CheckpointError.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_core.errors import CheckpointError
from trm_core.printable import printable
from trm_core.profile import PROFILE_MAX_BYTES, Mismatch, Profile, ProfileError, diff, parse_profile
from trm_core.safe_read import FileProblem, read_bounded

__all__ = [
    "CARRY_FILE",
    "EMA_FILE",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "PROFILE_FILE",
    "STATE_FILE",
    "TrainingState",
    "check_run_dir",
    "checkpoints_dir",
    "has_checkpoint",
    "list_checkpoints",
    "load_training_state",
    "propose_fresh_run_dir",
    "read_state",
    "resolve_checkpoint",
    "saved_profile",
]

# The names the writer (checkpoint.save_checkpoint) and every reader share.
FORMAT_VERSION = 1
STEP_RE = re.compile(r"^step-(\d+)$")
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
CARRY_FILE = "carry.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
PROFILE_FILE = "profile.toml"
STATE_MAX_BYTES = 1 << 20  # state.json is a few KB


# --------------------------------------------------------------------------- layout


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a state.json), oldest first."""
    root = checkpoints_dir(run_dir)
    out = []
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (
        OSError
    ) as e:  # mode 000, a run folder of another user: not "no checkpoint" (train would start over)
        raise CheckpointError(f"cannot read {printable(str(root))} ({e.strerror})") from None
    for p in entries:
        m = STEP_RE.match(p.name)
        if m and not p.is_symlink() and (p / STATE_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def has_checkpoint(run_dir: str | Path) -> bool:
    return bool(list_checkpoints(run_dir))


def read_pointer(run_dir: str | Path, which: str) -> Path | None:
    """The checkpoint `checkpoints/<which>` points at, if it is one of this run's step directories.

    A loop, a dangling link, or a link into another run (whose files `eval` would then write
    beside) is no pointer: callers fall back to the newest checkpoint.
    """
    root = checkpoints_dir(run_dir)
    link = root / which
    try:
        if not (link.is_symlink() or link.is_dir()):
            return None
        target = Path(os.path.realpath(link))
    except (OSError, RuntimeError):
        return None
    if target.parent != Path(os.path.realpath(root)) or not STEP_RE.match(target.name):
        return None
    if (target / STATE_FILE).is_file():
        return root / target.name
    return None


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint directory from a run dir (or a checkpoint dir itself); which = best|latest|<step>.

    `best` falls back to `latest` for a run that has not been evaluated yet.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    if path.name == "checkpoints" and not (path / "checkpoints").exists():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if STEP_RE.match(path.name) and path.is_dir():
        raise CheckpointError(f"{path / STATE_FILE} is missing")
    if not has_checkpoint(path):
        raise CheckpointError(f"{path} holds no checkpoint")
    which = str(which)
    if which.isdigit():
        d = checkpoints_dir(path) / f"step-{int(which):07d}"
        if not (d / STATE_FILE).is_file():
            steps = ", ".join(str(s) for s, _ in list_checkpoints(path))
            raise CheckpointError(f"{path} has no checkpoint at step {int(which)} (it has: {steps})")
        return d
    if which not in ("best", "latest"):
        raise CheckpointError(f"checkpoint must be 'best', 'latest' or a step number, got {which!r}")
    found = read_pointer(path, which) or (read_pointer(path, "latest") if which == "best" else None)
    if found is None:
        found = list_checkpoints(path)[-1][1]  # pointers lost (copied without symlinks): newest
    return found


def _read_file(path: Path, limit: int) -> bytes:
    """A checkpoint file through the one bounded loader: a regular file inside its checkpoint
    directory (no symlink out of it), at most `limit` bytes; else one CheckpointError sentence."""
    try:
        return read_bounded(path, limit, root=path.parent)
    except FileProblem as p:
        raise CheckpointError(f"{path} {p.phrase}") from None


def _memory_limit() -> int:
    from trm_core.model.memory import machine_memory

    return machine_memory("cpu")[0]


def read_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint, with its format version checked."""
    path = Path(ckpt_dir) / STATE_FILE
    data = _read_file(path, STATE_MAX_BYTES)
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested 100,000 deep
        raise CheckpointError(f"{path} is truncated or corrupted") from None
    if not isinstance(state, dict) or not isinstance(state.get("format_version"), int):
        raise CheckpointError(f"{path} is not a trm-tui checkpoint state")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer trm-tui (format {state['format_version']}, "
            f"version {state.get('trm_tui_version', '?')}); this one reads format {FORMAT_VERSION} — upgrade trm-tui"
        )
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path} is corrupted (its step is {step!r}, not a step number)")
    return state


def _read_text(path: Path) -> str:
    """A checkpoint's profile.toml, exactly as written (bytes -> strict UTF-8, as TOML specifies)."""
    try:
        return _read_file(path, PROFILE_MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is unreadable or corrupted") from None


def read_profile_file(path: Path) -> Profile:
    text = _read_text(path)
    try:
        profile = parse_profile(text, str(path), saved=True)
    except ProfileError as e:
        raise CheckpointError(f"{path} is not a valid profile: {e.problems[0]}") from None
    if profile.name == "unnamed":
        profile.name = path.parent.name
    return profile


def saved_profile(run_dir: str | Path) -> Profile:
    """The profile the run's newest checkpoint was trained with (else the run's profile.toml)."""
    latest = read_pointer(run_dir, "latest")
    if latest is None and has_checkpoint(run_dir):
        latest = list_checkpoints(run_dir)[-1][1]
    if latest is not None and (latest / PROFILE_FILE).is_file():
        return read_profile_file(latest / PROFILE_FILE)
    return read_profile_file(Path(run_dir) / PROFILE_FILE)


def check_run_dir(profile: Profile, run_dir: str | Path) -> list[Mismatch] | None:
    """The safety check: graded differences between the saved and current profile; None = no checkpoint."""
    if not has_checkpoint(run_dir):
        return None
    return diff(saved_profile(run_dir), profile)


def propose_fresh_run_dir(run_dir: str | Path) -> Path:
    """runs/name -> runs/name-2, -3, … (the first that does not exist)."""
    run_dir = Path(run_dir)
    m = re.match(r"^(.*)-(\d+)$", run_dir.name)
    base, n = (m.group(1), int(m.group(2)) + 1) if m else (run_dir.name, 2)
    while True:
        cand = run_dir.with_name(f"{base}-{n}")
        if not cand.exists():
            return cand
        n += 1


# --------------------------------------------------------------------------- weights and training state


def load_weights(path: Path, device: Any = "cpu") -> dict[str, Any]:
    """The tensors of a safetensors file, its header validated first (`safetensors_header`) and
    its `aliases` metadata (tied weights) restored."""
    from safetensors.torch import load

    data = _read_file(path, _memory_limit())
    meta = safetensors_header(data, path)
    try:
        aliases = json.loads(meta.get("aliases", "{}"))
    except (ValueError, RecursionError):
        aliases = None
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise CheckpointError(f"{path} is corrupted (its 'aliases' metadata is not a name-to-name table)")
    try:
        out = load(data)
    except Exception:  # safetensors raises several types for a bad header or short file
        raise CheckpointError(f"{path} is truncated or corrupted") from None
    for alias, name in aliases.items():
        if name not in out:
            raise CheckpointError(f"{path} is truncated or corrupted")
        out[alias] = out[name]
    if str(device) != "cpu":
        out = {k: v.to(device) for k, v in out.items()}
    return out


_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def safetensors_header(data: bytes, path: Path) -> dict[str, str]:
    """Validate a safetensors file's header against its size; return its `__metadata__` (str -> str).

    Every tensor: a known dtype, a shape of non-negative ints, and data offsets inside the file
    whose length is exactly the shape's; the header itself is bounded JSON.
    """
    bad = CheckpointError(f"{path} is truncated or corrupted")
    if len(data) < 8:
        raise bad
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, 100 << 20):
        raise bad
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad from None
    if not isinstance(header, dict):
        raise bad
    body = len(data) - 8 - n
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise CheckpointError(f"{path} is corrupted (its metadata is not a table of strings)")
    for info in header.values():
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPE_BYTES:
            raise bad
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise bad
        start, end = offsets
        if not 0 <= start <= end <= body or end - start != math.prod(shape) * _DTYPE_BYTES[info["dtype"]]:
            raise bad
    return meta


@dataclass
class TrainingState:
    """Everything a trainer needs to continue exactly where a checkpoint left off."""

    path: Path
    state: dict[str, Any]
    model: dict[str, Any]
    ema: dict[str, Any] | None
    optimizer: dict[str, Any]
    carry: dict[str, Any] | None
    profile_text: str


def _load_pt(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    data = _read_file(path, _memory_limit())
    try:
        # weights_only: the unpickler only rebuilds tensors and plain containers — never runs code.
        # Its warnings (e.g. about a foreign pickle protocol) would spill over the one-line error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} contains objects other than tensors and plain data; refusing to load it"
        ) from None
    except Exception:
        raise CheckpointError(f"{path} is truncated or corrupted") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a trm-tui optimizer state")
    return payload


def load_training_state(ckpt_dir: str | Path, device: Any = "cpu") -> TrainingState:
    ckpt_dir = Path(ckpt_dir)
    state = read_state(ckpt_dir)
    profile_text = _read_text(ckpt_dir / PROFILE_FILE)
    model = load_weights(ckpt_dir / MODEL_FILE, device)
    ema = load_weights(ckpt_dir / EMA_FILE, device) if state.get("has_ema") else None
    carry = load_weights(ckpt_dir / CARRY_FILE, device) if state.get("has_carry") else None
    optimizer = _load_pt(ckpt_dir / OPTIMIZER_FILE)
    return TrainingState(ckpt_dir, state, model, ema, optimizer, carry, profile_text)
