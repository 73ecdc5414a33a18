"""Training profiles: TOML files with one section per concern, validated into dataclasses.

A profile is the single source of truth for a run. It is saved verbatim into the run directory,
and `diff(saved, current)` grades every difference so the trainer (and the TUI) can refuse,
confirm or merely note a change before a checkpoint is resumed.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from trm_core.errors import UserError

__all__ = [
    "ModelConfig",
    "TokenizerConfig",
    "DataConfig",
    "TrainConfig",
    "EarlyStoppingConfig",
    "GenerateConfig",
    "Profile",
    "ProfileError",
    "Mismatch",
    "load_profile",
    "parse_profile",
    "diff",
    "SEVERITIES",
    "save_profile_text",
    "set_value",
    "severity",
    "worst",
]

SEVERITIES = ("incompatible", "changes-training", "harmless")


class ProfileError(UserError):
    """A profile the user wrote is invalid. `problems` holds one readable sentence per problem."""

    def __init__(self, problems: list[str], source: str = "<profile>"):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------- sections


@dataclass
class ModelConfig:
    arch: Literal["trm", "transformer"] = "trm"
    hidden_size: int = 128
    num_heads: int = 4
    num_layers: int = 2  # blocks in the shared net (TRM) or the stack (transformer)
    expansion: float = 4.0  # SwiGLU hidden = expansion * hidden_size * 2/3, rounded
    H_cycles: int = 3
    L_cycles: int = 6
    grad_cycles: int = 1  # the last H-cycles that get gradients; the rest run under no_grad
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True


@dataclass
class TokenizerConfig:
    name: str = "byte"  # "gpt2" | "byte" | "hf:<repo-or-dir>"


@dataclass
class DataConfig:
    source: str = "synthetic"  # "hf:openai/gsm8k" | "jsonl:<file-or-dir>" | "synthetic"
    max_length: int = 512  # examples are truncated to this many tokens
    val_size: int = 256  # examples carved from *train* for early stopping
    loss_on: Literal["answer", "all"] = "answer"
    bucket_multiple: int = 64  # pad each batch's length up to a multiple of this
    synthetic_size: int = 20000  # training examples drawn from the synthetic generator
    synthetic_min_steps: int = 1
    synthetic_max_steps: int = 4
    seed: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 32
    epochs: int = 10
    max_steps: int = 0  # 0 = run `epochs` epochs
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    supervision: Literal["deep", "accumulate"] = "deep"
    supervision_steps: int = 1
    detach_carry: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    ema: bool = False
    ema_decay: float = 0.999
    eval_every: int = 200
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    max_bad_steps: int = 5  # NaN/inf losses in a row before training stops
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    patience: int = 5  # evaluations without improvement
    min_delta: float = 0.0
    stop_below: float = 0.0  # validation loss target; 0 = no target
    restore_best: bool = True


@dataclass
class GenerateConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = -1  # negative = a fresh seed per sampled answer (shown, so it can be reproduced)
    calculator: bool = True
    kv_cache: bool = True


@dataclass
class Profile:
    name: str = "unnamed"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    source: str = field(default="<profile>", compare=False, repr=False)  # file it came from
    text: str = field(default="", compare=False, repr=False)  # the TOML exactly as written

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("text")
        return d

    def flat(self) -> dict[str, Any]:
        """`{"model.hidden_size": 512, ...}` — the key paths diff() and the UI speak."""
        out: dict[str, Any] = {}
        for k, v in self.to_dict().items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    out[f"{k}.{k2}"] = v2
            else:
                out[k] = v
        return out

    def to_toml(self) -> str:
        """The profile as TOML. Keeps `self.text` (the user's comments) when it parses to the same profile."""
        if self.text:
            try:
                if parse_profile(self.text).to_dict() == self.to_dict():
                    return self.text
            except ProfileError:
                pass
        import tomlkit

        doc = tomlkit.document()
        for k, v in self.to_dict().items():
            doc[k] = v
        return tomlkit.dumps(doc)


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "tokenizer": TokenizerConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "early_stopping": EarlyStoppingConfig,
    "generate": GenerateConfig,
}
TOP_LEVEL = ("name", "description")

# (key path, lower bound, inclusive?) — range checks beyond the type
_POSITIVE = [
    "model.hidden_size", "model.num_heads", "model.num_layers", "model.expansion",
    "model.H_cycles", "model.L_cycles", "model.grad_cycles", "model.rope_theta", "model.norm_eps",
    "data.max_length", "data.bucket_multiple", "data.synthetic_size",
    "data.synthetic_min_steps", "data.synthetic_max_steps",
    "train.batch_size", "train.epochs", "train.lr", "train.supervision_steps", "train.eval_every",
    "train.checkpoint_every", "train.keep_last", "train.log_every", "train.max_bad_steps",
    "early_stopping.patience", "generate.max_tokens",
]  # fmt: skip
_NON_NEGATIVE = [
    "data.val_size", "data.seed", "train.max_steps", "train.min_lr_ratio", "train.warmup_steps",
    "train.weight_decay", "train.grad_clip", "train.seed", "early_stopping.min_delta",
    "early_stopping.stop_below", "generate.temperature", "generate.top_k",
]  # fmt: skip
_UNIT_INTERVAL = ["train.beta1", "train.beta2", "train.ema_decay", "train.min_lr_ratio"]
_PROB = ["generate.top_p"]  # (0, 1]


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> tuple[Any, str | None]:
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
        return None, f"{path} must be {_type_name(tp)}, got {value!r}{hint}"
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
    return None, f"{path} must be {_type_name(tp)}, got {type(value).__name__} {value!r}"


def _unknown(key: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
    return f"unknown key {where + '.' if where else ''}{key}{hint}"


def _build_section(cls: type, raw: Any, section: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"[{section}] must be a table, got {type(raw).__name__}")
        return cls()
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            problems.append(_unknown(key, names, section))
            continue
        v, err = _coerce(value, hints[key], f"{section}.{key}")
        if err:
            problems.append(err)
        else:
            kwargs[key] = v
    return cls(**kwargs)


def _check_ranges(p: Profile, problems: list[str]) -> None:
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
    if m.arch == "transformer" and p.train.supervision_steps != 1:
        problems.append("train.supervision_steps must be 1 when model.arch is 'transformer'")


def _plain_name(name: str) -> bool:
    return bool(name.strip()) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def parse_profile(text: str, source: str = "<profile>") -> Profile:
    """Parse and validate TOML text. Raises ProfileError listing every problem found."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError([f"{source}: TOML syntax error: {e}"], source) from None
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    known = list(SECTIONS) + list(TOP_LEVEL)
    for key, value in raw.items():
        if key in SECTIONS:
            kwargs[key] = _build_section(SECTIONS[key], value, key, problems)
        elif key in TOP_LEVEL:
            if not isinstance(value, str):
                problems.append(f"{key} must be a string, got {type(value).__name__} {value!r}")
            elif key == "name" and not _plain_name(value):
                # the run directory is RUNS_DIR/<name>: a path here would train outside RUNS_DIR
                problems.append(
                    f"name must be a plain name (no '/', '\\' or '..'), not a path, got {value!r}"
                )
            else:
                kwargs[key] = value
        else:
            problems.append(_unknown(key, known, ""))
    profile = Profile(**kwargs, source=source, text=text)
    if not problems:
        _check_ranges(profile, problems)
    if problems:
        raise ProfileError([f"{source}: {p}" for p in problems], source)
    return profile


def load_profile(path: str | Path) -> Profile:
    """Load a profile file. Missing/unreadable files raise ProfileError with one sentence."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([f"{path}: no such profile file"], str(path)) from None
    except IsADirectoryError:
        raise ProfileError([f"{path}: is a directory, not a profile file"], str(path)) from None
    except UnicodeDecodeError:
        raise ProfileError([f"{path}: not a UTF-8 text file"], str(path)) from None
    except OSError as e:
        raise ProfileError([f"{path}: cannot read profile ({e.strerror})"], str(path)) from None
    profile = parse_profile(text, str(path))
    if profile.name == "unnamed":
        profile.name = path.stem
    return profile


def save_profile_text(path: str | Path, text: str) -> Profile:
    """Validate `text` and write it atomically, byte for byte (comments kept). Returns the profile."""
    from trm_core.runs.atomic import write_text_atomic

    profile = parse_profile(text, str(path))
    write_text_atomic(path, text)
    return profile


def set_value(text: str, key_path: str, value: Any) -> str:
    """Return `text` with one key changed, keeping every comment and the layout (tomlkit)."""
    import tomlkit

    doc = tomlkit.parse(text)
    section, _, key = key_path.rpartition(".")
    table = doc
    if section:
        if section not in doc:
            doc[section] = tomlkit.table()
        table = doc[section]
    table[key] = value
    return tomlkit.dumps(doc)


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Mismatch:
    key: str
    saved: Any
    current: Any
    severity: str  # one of SEVERITIES


# Keys whose change means the saved weights cannot be loaded into the new model.
_INCOMPATIBLE = {
    "model.arch", "model.hidden_size", "model.num_heads", "model.num_layers", "model.expansion",
    "model.tie_embeddings", "tokenizer.name",
}  # fmt: skip
# Keys that do not touch weights, optimisation or data at all.
_HARMLESS_PREFIXES = ("generate.",)
_HARMLESS = {"name", "description", "train.log_every", "train.device", "train.keep_last"}


def severity(key: str) -> str:
    if key in _INCOMPATIBLE:
        return "incompatible"
    if key in _HARMLESS or key.startswith(_HARMLESS_PREFIXES):
        return "harmless"
    return "changes-training"


def diff(saved: Profile, current: Profile) -> list[Mismatch]:
    """Every key whose value differs, graded; most severe first."""
    a, b = saved.flat(), current.flat()
    out = [Mismatch(k, a.get(k), b.get(k), severity(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)]
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda m: (order[m.severity], m.key))


def worst(mismatches: list[Mismatch]) -> str | None:
    """The most severe grade among `mismatches`, or None when there is none."""
    for s in SEVERITIES:
        if any(m.severity == s for m in mismatches):
            return s
    return None
