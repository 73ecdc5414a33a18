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


# Every key's description is the comment beside its field (or on comment lines directly above
# it): `python -m trm_core.profile_doc` turns them into docs/profiles.md, and a test fails when a
# key has none or that file is out of date. A new key: its field, its comment, regenerate.


@dataclass
class ModelConfig:
    # recursive TRM, or the baseline: the same blocks applied once, as a stack
    arch: Literal["trm", "transformer"] = "trm"
    # width of the net and of the latent streams `z_H`, `z_L`; divisible by `num_heads`
    hidden_size: int = 128
    num_heads: int = 4  # attention heads
    num_layers: int = 2  # blocks in the shared net (TRM) or the stack (transformer)
    expansion: float = 4.0  # SwiGLU hidden = expansion * hidden_size * 2/3, rounded
    H_cycles: int = 3  # outer cycles per supervision pass: each updates `z_H` once
    L_cycles: int = 6  # inner cycles per H-cycle: updates of `z_L` before the one of `z_H`
    grad_cycles: int = 1  # the last H-cycles that get gradients; the rest run under no_grad
    rope_theta: float = 10000.0  # RoPE base
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = True  # the LM head shares the embedding matrix
    # "act": a Q-head on `z_H` halts each token after 1..`train.supervision_steps` steps (docs/design.md)
    halting: Literal["none", "act"] = "none"
    # z_H/z_L start: the model's fixed start vectors (TRM's), or Gaussian noise per sequence, seeded (Huginn)
    init_state: Literal["learned", "noise"] = "learned"
    # ACT: the halting logit's bias at initialisation (-5: sigmoid far from halting, the official TRM's; ~-3 per the router-initialisation study)
    halt_bias_init: float = -5.0

    def supervision_passes(self, requested: int) -> int:
        """The effective number of supervision passes: only TRM carries state from pass to pass,
        so for the transformer baseline a second pass would recompute the first (always 1)."""
        return requested if self.arch == "trm" else 1


@dataclass
class TokenizerConfig:
    # `"byte"` (UTF-8 bytes), `"gpt2"` (offline, GPT-2's exact ids) or `"hf:<repo-or-dir>"` (AutoTokenizer)
    name: str = "byte"


@dataclass
class DataConfig:
    # `"synthetic"` (our generator), `"jsonl:<file-or-dir>"` (GSM8K's schema, offline) or `"hf:openai/gsm8k"`
    source: str = "synthetic"
    max_length: int = 512  # examples are truncated to this many tokens
    val_size: int = 256  # examples carved from *train* for early stopping
    loss_on: Literal["answer", "all"] = "answer"  # "answer": the prompt is masked out of the loss (EOS kept)
    bucket_multiple: int = 64  # pad each batch's length up to a multiple of this
    synthetic_size: int = 20000  # training examples drawn from the synthetic generator
    synthetic_min_steps: int = 1  # fewest calculation steps in a synthetic problem
    synthetic_max_steps: int = 4  # most calculation steps in a synthetic problem (1..4)
    # "steps": written steps, then "#### N" (GSM8K's form); "direct": only "#### N" (synthetic only)
    synthetic_answer: Literal["steps", "direct"] = "steps"
    seed: int = 0  # data order, the validation split and the synthetic problems


@dataclass
class TrainConfig:
    batch_size: int = 32  # examples per batch (per rank under torchrun)
    epochs: int = 10  # passes over the training data, unless `max_steps` is set
    max_steps: int = 0  # optimizer steps to train; 0 = run `epochs` epochs
    lr: float = 3e-4  # AdamW's peak learning rate, after the linear warm-up
    min_lr_ratio: float = 0.1  # the cosine schedule decays to lr * min_lr_ratio
    warmup_steps: int = 100  # optimizer steps of linear warm-up
    weight_decay: float = 0.1  # AdamW weight decay
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # gradient norm clip; 0 = off
    # "deep": a step per supervision pass; "accumulate": one per batch
    supervision: Literal["deep", "accumulate"] = "deep"
    # deep-supervision passes per batch, each from the previous carry; with ACT: the most a token takes
    supervision_steps: int = 1
    halt_exploration: float = 0.1  # ACT: chance a token must first run a random 2..S steps
    # H-cycles per optimizer step: `model.H_cycles` ("fixed"), Huginn's 1 + Poisson(λ), λ ~ LogNormal(ln depth_mean - σ²/2, σ), or U{depth_min..depth_max}; clipped to [depth_min, depth_max]
    depth_sampling: Literal["fixed", "poisson-lognormal", "uniform"] = "fixed"
    # poisson-lognormal: the mean of λ (the sampled depth averages about depth_mean + 1 before clipping, as in Huginn); 0 = model.H_cycles
    depth_mean: float = 0.0
    depth_sigma: float = 0.5  # poisson-lognormal: σ of log λ (Huginn's 0.5)
    depth_min: int = 1  # sampled H-cycles at least this
    depth_max: int = 16  # sampled H-cycles at most this
    # gradients through the last k H-cycles only, the earlier ones under no_grad; 0 = `model.grad_cycles`
    backprop_depth: int = 0
    detach_carry: bool = True  # false = gradients through the carry (true BPTT; "accumulate" only)
    # "auto": bf16 on CUDA, fp32 on CPU; "bf16": bf16 autocast, on a CPU only with AVX512-BF16 or AMX
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # "auto": torch.compile on CUDA; on CPU only where the measured saving (the compiled net ran 1.07-1.21x
    # the eager quickstart step on an AMD EPYC) times the run's steps beats the measured compile cost
    # (60 s cold, 11 s with this model's kernels in the on-disk cache): runs of >= 1500 steps, >= 400 warm
    compile: Literal["auto", "on", "off"] = "auto"
    ema: bool = False  # keep an exponential moving average of the weights (saved beside them)
    ema_decay: float = 0.999  # the EMA's decay per optimizer step
    eval_every: int = 200  # optimizer steps between validation evaluations
    eval_accuracy_problems: int = 0  # answer accuracy on N validation problems at each eval; 0 = off
    tensorboard: bool = False  # mirror metrics.jsonl into RUN/tensorboard/ (needs the `tensorboard` extra)
    checkpoint_every: int = 500  # optimizer steps between checkpoints
    keep_last: int = 3  # checkpoints kept (besides `best`)
    log_every: int = 10  # optimizer steps between logged training losses
    max_bad_steps: int = 5  # NaN/inf losses in a row before training stops
    device: Literal["auto", "cpu", "cuda"] = "auto"  # "auto": CUDA when available
    seed: int = 0  # model initialisation (and ACT's exploration)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True  # stop when the validation loss stops improving
    patience: int = 5  # evaluations without improvement before stopping
    min_delta: float = 0.0  # the smallest drop in validation loss that counts as an improvement
    stop_below: float = 0.0  # stop once the validation loss is below this; 0 = no target
    restore_best: bool = True  # end the run with the best weights, not the last


@dataclass
class GenerateConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # nucleus sampling; 1 = off
    max_tokens: int = 256  # most new tokens per answer
    seed: int = -1  # negative = a fresh seed per sampled answer (shown, so it can be reproduced)
    # check every `<<expr=result>>` while decoding: the model's result kept when right, corrected when wrong
    calculator: bool = True
    kv_cache: bool = True  # exact KV-cached decoding (off: recompute the whole sequence per token)
    # ACT: a token halts when sigmoid(q_halt) exceeds this (0: after 1 step, 1: never early)
    halt_threshold: float = 0.5


@dataclass
class Profile:
    # the run directory's name: 1-64 of A-Z a-z 0-9 . _ -, not starting with "."; default: the file's stem
    name: str = "unnamed"
    description: str = ""  # free text, shown beside the profile
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
