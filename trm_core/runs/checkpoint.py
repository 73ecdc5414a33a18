"""Run directories and checkpoints: atomic saves, loads that never execute code, the safety check.

Layout (docs/contracts.md):

    runs/<name>/profile.toml                     the profile text exactly as last trained
    runs/<name>/metrics.jsonl                    one event per line
    runs/<name>/checkpoints/step-0000500/        model.safetensors, ema.safetensors?, optimizer.pt,
                                                 state.json, profile.toml, carry.safetensors?
    runs/<name>/checkpoints/latest -> step-…     relative symlinks, replaced atomically
    runs/<name>/checkpoints/best   -> step-…
    runs/<name>/.lock                            pid of the one trainer writing here

A checkpoint is written into a hidden temporary directory, every file fsynced, then renamed into
place; only then are the pointers moved. A crash mid-save leaves the previous checkpoint intact.
Weights are safetensors; everything else is JSON or `torch.load(weights_only=True)`.

This module writes checkpoints. Reading them lives in `read.py`, the `.lock` in `lock.py`, loading
for inference in `inference.py`. The save path's helpers (`_save_weights`, `_fsync_path`,
`_replace_symlink`) are module globals that save_checkpoint looks up here, so the crash tests can
replace one to stop a save half-way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from trm_core import __version__
from trm_core.atomic import write_failure
from trm_core.errors import CheckpointError
from trm_core.runs.read import (
    CARRY_FILE,
    EMA_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    OPTIMIZER_FILE,
    PROFILE_FILE,
    STATE_FILE,
    checkpoints_dir,
    list_checkpoints,
    read_pointer,
)

# --------------------------------------------------------------------------- weights


def _dedupe(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """safetensors refuses shared tensors (tied embeddings): keep one name, remember the aliases."""
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state_dict.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, aliases


def _save_weights(path: Path, state_dict: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors, aliases = _dedupe(state_dict)
    save_file(tensors, str(path), metadata={"format": "pt", "aliases": json.dumps(aliases)})


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_symlink(link: Path, target_name: str) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)  # no stray `.latest.tmp-<pid>` left for nobody to clean
        raise


# --------------------------------------------------------------------------- save


def _bytes_of(*states: dict[str, Any] | None) -> int:
    """The weights' bytes, x3 with the optimizer's two moments: what a checkpoint needs on disk."""
    n = sum(t.numel() * t.element_size() for st in states if st for t in st.values() if hasattr(t, "numel"))
    return 3 * n


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model_state: dict[str, Any],
    ema_state: dict[str, Any] | None,
    optimizer_payload: dict[str, Any],
    state: dict[str, Any],
    profile_text: str,
    is_best: bool,
    keep_last: int,
    carry_state: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoints/step-XXXXXXX atomically, move `latest` (and `best`), prune old ones.

    Any OSError (disk full, permissions) → CheckpointError; the temp dir is removed and every
    earlier checkpoint and pointer is left untouched.
    """
    import torch

    root = checkpoints_dir(run_dir)
    name = f"step-{step:07d}"
    final = root / name
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # left by a crash mid-save
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{name}-"))
        _save_weights(tmp / MODEL_FILE, model_state)
        if ema_state is not None:
            _save_weights(tmp / EMA_FILE, ema_state)
        if carry_state is not None:
            _save_weights(tmp / CARRY_FILE, carry_state)
        torch.save(optimizer_payload, tmp / OPTIMIZER_FILE)
        full_state = {
            "format_version": FORMAT_VERSION,
            "trm_tui_version": __version__,
            "step": step,
            "saved_at": time.time(),
            **state,
        }
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=2, allow_nan=True), encoding="utf-8")
        (tmp / PROFILE_FILE).write_text(profile_text, encoding="utf-8")
        for f in tmp.iterdir():
            os.chmod(f, 0o644)  # mkdtemp and safetensors create owner-only files
            _fsync_path(f)
        os.chmod(tmp, 0o755)
        _fsync_path(tmp)
        old: Path | None = None
        if final.exists():  # the same step saved again (e.g. stop right after a periodic save)
            old = root / f".tmp-old-{name}-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        tmp = None
        _fsync_path(root)
        _replace_symlink(root / "latest", name)
        if is_best:
            _replace_symlink(root / "best", name)
        _fsync_path(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except Exception as e:  # noqa: BLE001 — OSError, SafetensorError and torch's RuntimeError on a full disk
        reason = write_failure(root, e, _bytes_of(model_state, ema_state, carry_state))
        if reason is None:
            raise
        raise CheckpointError(
            f"could not write checkpoint {final}: {reason}; the previous checkpoint is kept"
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(run_dir, keep_last)
    return final


def _prune(run_dir: str | Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints plus whatever `best` and `latest` name."""
    ckpts = list_checkpoints(run_dir)
    keep = {p.name for _, p in ckpts[-max(keep_last, 1) :]}
    for which in ("best", "latest"):
        target = read_pointer(run_dir, which)
        if target is not None:
            keep.add(target.name)
    for _, p in ckpts:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
