"""Training profiles: TOML files with one section per concern, validated into dataclasses.

A profile is the single source of truth for a run. It is saved verbatim into the run directory,
and `diff(saved, current)` grades every difference so the trainer (and the TUI) can refuse,
confirm or merely note a change before a checkpoint is resumed.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trm_core.errors import UserError
from trm_core.limits import check_profile_limits, name_problem, safe_name
from trm_core.profile_checks import build_section, check_ranges, unknown_key

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
PROFILE_MAX_BYTES = 1 << 20  # a profile is a few KB; a bigger file is not one


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
    halting: Literal["none", "act"] = "none"  # "act": a Q-head halts each token after 1..S steps

    def supervision_passes(self, requested: int) -> int:
        """The effective number of supervision passes: only TRM carries state from pass to pass,
        so for the transformer baseline a second pass would recompute the first (always 1)."""
        return requested if self.arch == "trm" else 1


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
    supervision_steps: int = 1  # with model.halting = "act": the most steps a token may take
    halt_exploration: float = 0.1  # ACT: chance a token must first run a random 2..S steps
    detach_carry: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    ema: bool = False
    ema_decay: float = 0.999
    eval_every: int = 200
    eval_accuracy_problems: int = 0  # answer accuracy on N validation problems at each eval; 0 = off
    tensorboard: bool = False  # mirror metrics.jsonl into RUN/tensorboard/ (needs the `tensorboard` extra)
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
    halt_threshold: float = 0.5  # ACT: a token halts when sigmoid(q_halt) exceeds this


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

# --------------------------------------------------------------------------- loading


def parse_profile(text: str, source: str = "<profile>", *, saved: bool = False) -> Profile:
    """Parse and validate TOML text. Raises ProfileError listing every problem found.

    `saved`: a profile read back from a run, whose name was valid when it trained (older versions
    allowed more characters): an invalid name is made safe (`limits.safe_name`), not refused."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError([f"{source}: TOML syntax error: {e}"], source) from None
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    known = list(SECTIONS) + list(TOP_LEVEL)
    for key, value in raw.items():
        if key in SECTIONS:
            kwargs[key] = build_section(SECTIONS[key], value, key, problems)
        elif key in TOP_LEVEL:
            if not isinstance(value, str):
                problems.append(f"{key} must be a string, got {type(value).__name__} {value!r}")
            elif key == "name" and saved and name_problem(value):
                kwargs[key] = safe_name(value)
            elif key == "name" and name_problem(value):
                # the run directory is RUNS_DIR/<name>: a path here would train outside RUNS_DIR,
                # and control characters would reach every terminal that shows it
                problems.append(str(name_problem(value)))
            else:
                kwargs[key] = value
        else:
            problems.append(unknown_key(key, known, ""))
    profile = Profile(**kwargs, source=source, text=text)
    if not problems:
        check_profile_limits(profile.flat(), problems)  # NaN/inf and upper bounds (limits.py)
    if not problems:
        check_ranges(profile, problems)
    if problems:
        raise ProfileError([f"{source}: {p}" for p in problems], source)
    return profile


def load_profile(path: str | Path) -> Profile:
    """Load a profile file. Missing/unreadable files raise ProfileError with one sentence."""
    from trm_core.safe_read import read_text_file

    path = Path(path)
    # TOML is bytes -> strict UTF-8 -> the exact text: no universal newlines (a bare CR is an error)
    text = read_text_file(
        path, PROFILE_MAX_BYTES, what="profile file", error=lambda m: ProfileError([m], str(path))
    )
    profile = parse_profile(text, str(path))
    if profile.name == "unnamed":
        profile.name = safe_name(path.stem)
    return profile


def save_profile_text(path: str | Path, text: str) -> Profile:
    """Validate `text` and write it atomically, byte for byte (comments kept). Returns the profile."""
    from trm_core.atomic import write_text_atomic

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
    "model.tie_embeddings", "model.halting", "tokenizer.name",
}  # fmt: skip
# Keys that do not touch weights, optimisation or data at all.
_HARMLESS_PREFIXES = ("generate.",)
_HARMLESS = {
    "name", "description", "train.log_every", "train.device", "train.keep_last",
    "train.eval_accuracy_problems", "train.tensorboard",
}  # fmt: skip


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
