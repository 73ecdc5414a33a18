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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UserError
from .profile import Mismatch, Profile, ProfileError, diff, parse_profile

__all__ = [
    "FORMAT_VERSION",
    "LoadedModel",
    "TrainingState",
    "acquire_lock",
    "check_run_dir",
    "checkpoints_dir",
    "has_checkpoint",
    "list_checkpoints",
    "load_for_inference",
    "load_training_state",
    "propose_fresh_run_dir",
    "read_state",
    "resolve_checkpoint",
    "resolve_inference_dtype",
    "save_checkpoint",
    "saved_profile",
    "trm_tui_version",
]

FORMAT_VERSION = 1
_STEP_RE = re.compile(r"^step-(\d+)$")
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
CARRY_FILE = "carry.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
PROFILE_FILE = "profile.toml"
LOCK_FILE = ".lock"


def trm_tui_version() -> str:
    try:
        import trm_tui

        v = getattr(trm_tui, "__version__", None)
        if v:
            return str(v)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("trm-tui")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0"


# --------------------------------------------------------------------------- layout


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a state.json), oldest first."""
    root = checkpoints_dir(run_dir)
    out = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _STEP_RE.match(p.name)
        if m and not p.is_symlink() and (p / STATE_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def has_checkpoint(run_dir: str | Path) -> bool:
    return bool(list_checkpoints(run_dir))


def _pointer(run_dir: str | Path, which: str) -> Path | None:
    link = checkpoints_dir(run_dir) / which
    if link.is_symlink() or link.is_dir():
        target = link.resolve()
        if (target / STATE_FILE).is_file():
            return target
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
    if _STEP_RE.match(path.name) and path.is_dir():
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
    found = _pointer(path, which) or (_pointer(path, "latest") if which == "best" else None)
    if found is None:
        found = list_checkpoints(path)[-1][1]  # pointers lost (copied without symlinks): newest
    return found


def read_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint, with its format version checked."""
    path = Path(ckpt_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError):
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
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is unreadable or corrupted") from None


def _read_profile_file(path: Path) -> Profile:
    text = _read_text(path)
    try:
        profile = parse_profile(text, str(path))
    except ProfileError as e:
        raise CheckpointError(f"{path} is not a valid profile: {e.problems[0]}") from None
    if profile.name == "unnamed":
        profile.name = path.parent.name
    return profile


def saved_profile(run_dir: str | Path) -> Profile:
    """The profile the run's newest checkpoint was trained with (else the run's profile.toml)."""
    latest = _pointer(run_dir, "latest")
    if latest is None and has_checkpoint(run_dir):
        latest = list_checkpoints(run_dir)[-1][1]
    if latest is not None and (latest / PROFILE_FILE).is_file():
        return _read_profile_file(latest / PROFILE_FILE)
    return _read_profile_file(Path(run_dir) / PROFILE_FILE)


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


# --------------------------------------------------------------------------- lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def acquire_lock(run_dir: str | Path, log: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Create run_dir/.lock with our pid (O_EXCL); returns a release function.

    A live owner → CheckpointError naming its pid; a dead owner's lock is taken over.
    """
    path = Path(run_dir) / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                raw = path.read_text().strip()
                pid = int(raw)
            except FileNotFoundError:
                continue  # released between our attempts
            except (OSError, ValueError):
                pid = -1
            if pid > 0 and _pid_alive(pid):
                raise CheckpointError(
                    f"{run_dir} is being trained by another process (pid {pid}); "
                    f"stop it first or remove {path} if that process is not a trainer"
                ) from None
            if log:
                log(f"took over a stale lock in {run_dir} (pid {pid if pid > 0 else '?'} is not running)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        mine = os.getpid()

        def release(mine: int = mine) -> None:
            try:
                if int(path.read_text().strip()) == mine:
                    path.unlink()
            except (OSError, ValueError):
                pass

        return release
    raise CheckpointError(f"could not take the lock {path}")


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


def _load_weights(path: Path, device: Any = "cpu") -> dict[str, Any]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        out = {}
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            for k in f.keys():
                out[k] = f.get_tensor(k)
        aliases = json.loads(meta.get("aliases", "{}"))
    except Exception:  # safetensors raises several types for a bad header or short file
        raise CheckpointError(f"{path} is truncated or corrupted") from None
    for alias, name in aliases.items():
        if name not in out:
            raise CheckpointError(f"{path} is truncated or corrupted")
        out[alias] = out[name]
    return out


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


# --------------------------------------------------------------------------- save / load


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
            "trm_tui_version": trm_tui_version(),
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
    except OSError as e:
        reason = e.strerror or str(e)
        raise CheckpointError(f"could not write checkpoint {final}: {reason}") from None
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
        target = _pointer(run_dir, which)
        if target is not None:
            keep.add(target.name)
    for _, p in ckpts:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


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

    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        # weights_only: the unpickler only rebuilds tensors and plain containers — never runs code.
        # Its warnings (e.g. about a foreign pickle protocol) would spill over the one-line error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
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
    model = _load_weights(ckpt_dir / MODEL_FILE, device)
    ema = _load_weights(ckpt_dir / EMA_FILE, device) if state.get("has_ema") else None
    carry = _load_weights(ckpt_dir / CARRY_FILE, device) if state.get("has_carry") else None
    optimizer = _load_pt(ckpt_dir / OPTIMIZER_FILE)
    return TrainingState(ckpt_dir, state, model, ema, optimizer, carry, profile_text)


# --------------------------------------------------------------------------- inference


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    profile: Profile
    step: int
    path: Path
    device: Any


def resolve_device(device: str | None = "auto") -> Any:
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was requested but CUDA is not available on this machine")
    return torch.device(device)


def load_into(model: Any, weights: dict[str, Any], path: Path) -> None:
    """load_state_dict with a one-sentence error for a checkpoint that does not fit the model."""
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise CheckpointError(f"{path} does not match the model its profile describes") from None


INFERENCE_DTYPES = ("auto", "fp32", "bf16")


def resolve_inference_dtype(dtype: Any, device: Any) -> Any:
    """The torch dtype to run inference in: "auto" (or None) = bf16 on CUDA, fp32 elsewhere.

    bf16 weights and KV cache read half the bytes per token: measured 2.9x faster GSM8K eval on an
    H100 (docs/perf-notes.md). Greedy bf16 text can differ from fp32 text; pass "fp32" to compare.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
    }
    if dtype not in names:
        raise CheckpointError(f"unknown inference dtype {dtype!r}; use auto, fp32 or bf16")
    return names[dtype]


def load_for_inference(
    path: str | Path,
    which: str = "best",
    *,
    ema: bool = True,
    device: str | None = "auto",
    dtype: Any = None,
) -> LoadedModel:
    """Rebuild model + tokenizer from the checkpoint's own profile and load its (EMA) weights.

    `dtype` ("auto"/None, "fp32", "bf16" or a torch dtype): the weights' dtype for inference;
    "auto" is bf16 on CUDA and fp32 on CPU (see `resolve_inference_dtype`).
    """
    from .model import build_model
    from .tokenizer import build_tokenizer

    ckpt = resolve_checkpoint(path, which)
    state = read_state(ckpt)
    profile = _read_profile_file(ckpt / PROFILE_FILE)
    tokenizer = build_tokenizer(profile.tokenizer.name)
    saved_vocab = state.get("vocab_size")
    if saved_vocab is not None and saved_vocab != tokenizer.vocab_size:
        raise CheckpointError(
            f"{ckpt} was trained with a {profile.tokenizer.name} tokenizer of {saved_vocab} entries, "
            f"but that tokenizer now has {tokenizer.vocab_size}"
        )
    dev = resolve_device(device)
    model = build_model(profile.model, tokenizer.vocab_size)
    use_ema = ema and state.get("has_ema", False)
    wpath = ckpt / (EMA_FILE if use_ema else MODEL_FILE)
    load_into(model, _load_weights(wpath), wpath)
    model.to(dev, dtype=resolve_inference_dtype(dtype, dev)).eval()
    return LoadedModel(model, tokenizer, profile, int(state["step"]), ckpt, dev)
