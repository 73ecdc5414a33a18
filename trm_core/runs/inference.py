"""A checkpoint loaded for inference: model + tokenizer rebuilt from its own profile, device and dtype.

`resolve_device` is the one device resolution, shared with the Trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_core.errors import CheckpointError, UserError
from trm_core.model.memory import check_fits
from trm_core.profile import Profile
from trm_core.runs.read import (
    EMA_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    load_weights,
    read_profile_file,
    read_state,
    resolve_checkpoint,
)

__all__ = [
    "INFERENCE_DTYPES",
    "LoadedModel",
    "load_for_inference",
    "load_into",
    "resolve_device",
    "resolve_inference_dtype",
]


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
    H100 (docs/performance.md). Greedy bf16 text can differ from fp32 text; pass "fp32" to compare.
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
    from trm_core.data.tokenizers import build_tokenizer
    from trm_core.model.lm import build_model

    ckpt = resolve_checkpoint(path, which)
    state = read_state(ckpt)
    profile = read_profile_file(ckpt / PROFILE_FILE)
    tokenizer = build_tokenizer(profile.tokenizer.name)
    saved_vocab = state.get("vocab_size")
    if saved_vocab is not None and saved_vocab != tokenizer.vocab_size:
        raise CheckpointError(
            f"{ckpt} was trained with a {profile.tokenizer.name} tokenizer of {saved_vocab} entries, "
            f"but that tokenizer now has {tokenizer.vocab_size}"
        )
    dev = resolve_device(device)
    check_fits(profile, dev, vocab_size=tokenizer.vocab_size, training=False)  # before building the model
    model = build_model(profile.model, tokenizer.vocab_size)
    use_ema = ema and state.get("has_ema", False)
    wpath = ckpt / (EMA_FILE if use_ema else MODEL_FILE)
    load_into(model, load_weights(wpath), wpath)
    model.to(dev, dtype=resolve_inference_dtype(dtype, dev)).eval()
    return LoadedModel(model, tokenizer, profile, int(state["step"]), ckpt, dev)
