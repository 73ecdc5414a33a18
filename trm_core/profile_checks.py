"""The checks behind `parse_profile`: types of values, unknown keys (with a close match), ranges.

Every problem becomes one readable sentence naming its key path; `parse_profile` collects them
all and raises one ProfileError.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

__all__ = ["build_section", "check_ranges", "coerce", "type_name", "unknown_key"]

# (key path, lower bound, inclusive?) — range checks beyond the type
_POSITIVE = [
    "model.hidden_size", "model.num_heads", "model.num_layers", "model.expansion",
    "model.H_cycles", "model.L_cycles", "model.grad_cycles", "model.rope_theta", "model.norm_eps",
    "data.max_length", "data.bucket_multiple", "data.synthetic_size",
    "data.synthetic_min_steps", "data.synthetic_max_steps",
    "train.batch_size", "train.epochs", "train.lr", "train.supervision_steps", "train.eval_every",
    "train.checkpoint_every", "train.keep_last", "train.log_every", "train.max_bad_steps",
    "early_stopping.patience", "generate.max_tokens", "train.depth_min", "train.depth_max",
]  # fmt: skip
_NON_NEGATIVE = [
    "data.val_size", "data.seed", "train.max_steps", "train.min_lr_ratio", "train.warmup_steps",
    "train.weight_decay", "train.grad_clip", "train.seed", "early_stopping.min_delta",
    "early_stopping.stop_below", "generate.temperature", "generate.top_k", "train.depth_mean",
    "train.depth_sigma", "train.backprop_depth", "train.eval_accuracy_problems",
]  # fmt: skip
_UNIT_INTERVAL = ["train.beta1", "train.beta2", "train.ema_decay", "train.min_lr_ratio"]
_PROB = ["generate.top_p"]  # (0, 1]
_CLOSED_UNIT = ["train.halt_exploration", "generate.halt_threshold"]  # [0, 1]


# --------------------------------------------------------------------------- loading


def type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(value: Any, tp: Any, path: str) -> tuple[Any, str | None]:
    """Return (value, None) or (None, problem sentence)."""
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if value in choices:
            return value, None
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        return None, f"{path} must be {type_name(tp)}, got {value!r}{hint}"
    if tp is bool:
        if isinstance(value, bool):
            return value, None
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
    elif tp is str:
        if isinstance(value, str):
            return value, None
    return None, f"{path} must be {type_name(tp)}, got {type(value).__name__} {value!r}"


def unknown_key(key: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
    return f"unknown key {where + '.' if where else ''}{key}{hint}"


def build_section(cls: type, raw: Any, section: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"[{section}] must be a table, got {type(raw).__name__}")
        return cls()
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            problems.append(unknown_key(key, names, section))
            continue
        v, err = coerce(value, hints[key], f"{section}.{key}")
        if err:
            problems.append(err)
        else:
            kwargs[key] = v
    return cls(**kwargs)


def check_ranges(p: Any, problems: list[str]) -> None:  # p: a profile.Profile (that module imports this one)
    flat = p.flat()
    for path in _POSITIVE:
        if flat[path] <= 0:
            problems.append(f"{path} must be greater than 0, got {flat[path]!r}")
    for path in _NON_NEGATIVE:
        if flat[path] < 0:
            problems.append(f"{path} must be 0 or more, got {flat[path]!r}")
    for path in _UNIT_INTERVAL:
        if not 0 <= flat[path] < 1 and not (path == "train.min_lr_ratio" and flat[path] == 1):
            problems.append(f"{path} must be between 0 and 1, got {flat[path]!r}")
    for path in _CLOSED_UNIT:
        if not 0 <= flat[path] <= 1:
            problems.append(f"{path} must be between 0 and 1, got {flat[path]!r}")
    for path in _PROB:
        if not 0 < flat[path] <= 1:
            problems.append(f"{path} must be in (0, 1], got {flat[path]!r}")
    m = p.model
    if m.hidden_size > 0 and m.num_heads > 0:
        if m.hidden_size % m.num_heads:
            problems.append(
                f"model.hidden_size ({m.hidden_size}) must be divisible by model.num_heads ({m.num_heads})"
            )
        elif (m.hidden_size // m.num_heads) % 2:
            problems.append(
                f"model.hidden_size / model.num_heads ({m.hidden_size // m.num_heads}) must be even for RoPE"
            )
    t = p.train
    if 0 < t.depth_min and t.depth_min > t.depth_max > 0:
        problems.append(f"train.depth_min ({t.depth_min}) cannot exceed train.depth_max ({t.depth_max})")
    if t.depth_sampling != "fixed" and m.arch != "trm":
        problems.append("train.depth_sampling needs model.arch = 'trm' (it samples the H-cycles)")
    if t.depth_sampling == "poisson-lognormal" and 0 < t.depth_mean < 1:
        problems.append(f"train.depth_mean must be at least 1 (or 0 = model.H_cycles), got {t.depth_mean!r}")
    if abs(m.halt_bias_init) > 100:
        problems.append(f"model.halt_bias_init must be between -100 and 100, got {m.halt_bias_init!r}")
    if m.grad_cycles > m.H_cycles > 0:
        problems.append(f"model.grad_cycles ({m.grad_cycles}) cannot exceed model.H_cycles ({m.H_cycles})")
    d = p.data
    if d.synthetic_min_steps > d.synthetic_max_steps:
        problems.append(
            f"data.synthetic_min_steps ({d.synthetic_min_steps}) cannot exceed "
            f"data.synthetic_max_steps ({d.synthetic_max_steps})"
        )
    if d.synthetic_max_steps > 4:
        problems.append(f"data.synthetic_max_steps must be at most 4, got {d.synthetic_max_steps}")
    if d.synthetic_answer == "direct" and d.source != "synthetic":
        problems.append(
            f"data.synthetic_answer = 'direct' applies to synthetic problems only, but data.source is "
            f"'{d.source}' (its answers keep their written steps); remove the key or use 'synthetic'"
        )
    src = d.source
    if not (src == "synthetic" or src.startswith("hf:") or src.startswith("jsonl:")) or src in (
        "hf:",
        "jsonl:",
    ):
        problems.append(
            f"data.source must be 'synthetic', 'jsonl:<file-or-dir>' or 'hf:<dataset>', got {src!r}"
        )
    tok = p.tokenizer.name
    if not (tok in ("gpt2", "byte") or (tok.startswith("hf:") and len(tok) > 3)):
        close = difflib.get_close_matches(tok, ["gpt2", "byte"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"tokenizer.name must be 'gpt2', 'byte' or 'hf:<repo-or-dir>', got {tok!r}{hint}")
    if m.supervision_passes(p.train.supervision_steps) != p.train.supervision_steps:
        problems.append("train.supervision_steps must be 1 when model.arch is 'transformer'")
    if m.arch == "transformer" and m.halting != "none":
        problems.append(
            "model.halting = 'act' needs model.arch = 'trm' (halting is between supervision steps)"
        )
