"""Depth: how long a model thinks per token — the one owner of "None means the trained value".

A `Depth` names supervision steps S, H-cycles, L-cycles and ACT's halt threshold. A request (a
key press in the REPL, a flag of `generate`/`eval`) leaves unset what it does not change (None);
`resolve(trained)` fills those from the checkpoint's depth (`Depth.trained(profile)`) once, and
`check(arch)` checks the values once against the limits, in one sentence. The resolved object
travels unchanged to the model: `CausalLM.forward`, `infer`, `infer_depth`, `new_cache` and the
KV cache take it as is and never fill anything in.

Training uses the same object: a fixed-depth run trains at `Depth.trained(profile)`; a sampled
depth (`train.depth_sampling`, `training/depth_sampler.py`) replaces its H-cycles step by step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["Depth", "MAX_TEST_CYCLES", "FLAG_NAMES"]

# Upper bounds of a test-time depth: the profile's own (limits.INT_MAX), so any depth a profile may
# train at may also be asked at inference, and vice versa (H-cycles up to 256, far beyond training).
MAX_TEST_CYCLES = 256
MAX_TEST_STEPS = 256

# How each field is called where the user typed it (the CLI's flags by default).
FLAG_NAMES = {
    "supervision_steps": "--supervision-steps",
    "H_cycles": "--H-cycles",
    "L_cycles": "--L-cycles",
    "halt_threshold": "--halt-threshold",
}


@dataclass(frozen=True)
class Depth:
    """Supervision steps, H- and L-cycles, and ACT's halt threshold; None = the trained value."""

    supervision_steps: int | None = None
    H_cycles: int | None = None
    L_cycles: int | None = None
    halt_threshold: float | None = None

    # ------------------------------------------------------------------ the trained depth

    @classmethod
    def trained(cls, cfg: Any, supervision_steps: int = 1, halt_threshold: float = 0.5) -> Depth:
        """The complete depth of a model config (`ModelConfig`): its H/L, `supervision_steps`
        passes (always 1 for the transformer baseline, which has no carry) and the threshold."""
        return cls(
            cfg.supervision_passes(int(supervision_steps)),
            int(cfg.H_cycles),
            int(cfg.L_cycles),
            float(halt_threshold),
        )

    @classmethod
    def of_profile(cls, profile: Any) -> Depth:
        """The depth a run trained at and decodes at by default (its profile's S, H, L, threshold)."""
        return cls.trained(profile.model, profile.train.supervision_steps, profile.generate.halt_threshold)

    # ------------------------------------------------------------------ requests

    @property
    def complete(self) -> bool:
        return None not in dataclasses.astuple(self)

    def resolve(self, trained: Depth) -> Depth:
        """This request with every unset value taken from `trained` (a complete depth)."""
        assert trained.complete, "resolve against a complete depth (Depth.trained / of_profile)"
        pairs = zip(dataclasses.astuple(self), dataclasses.astuple(trained), strict=True)
        return Depth(*(t if v is None else v for v, t in pairs))

    def check(self, arch: str = "trm", names: dict[str, str] | None = None) -> Depth:
        """This depth if every set value is allowed, else UserError in one sentence naming the
        field as the user typed it (`names`, default: the CLI's flags)."""
        from trm_core.errors import UserError

        names = names or FLAG_NAMES
        for field, top in (
            ("supervision_steps", MAX_TEST_STEPS),
            ("H_cycles", MAX_TEST_CYCLES),
            ("L_cycles", MAX_TEST_CYCLES),
        ):
            value = getattr(self, field)
            if value is not None and not 1 <= value <= top:
                raise UserError(f"{names[field]} must be between 1 and {top}, got {value}")
        t = self.halt_threshold
        if t is not None and not 0 <= t <= 1:
            raise UserError(f"{names['halt_threshold']} must be between 0 and 1, got {t}")
        if arch != "trm" and (
            self.H_cycles is not None or self.L_cycles is not None or (self.supervision_steps or 1) != 1
        ):
            steps, H, L = (names[k] for k in ("supervision_steps", "H_cycles", "L_cycles"))
            raise UserError(f"{steps}, {H} and {L} apply to TRM checkpoints only")
        return self

    # ------------------------------------------------------------------ what a complete depth costs

    @property
    def cycles(self) -> tuple[int, int]:
        assert self.H_cycles is not None and self.L_cycles is not None, "an unresolved depth"
        return self.H_cycles, self.L_cycles

    def with_H(self, H_cycles: int) -> Depth:
        """The same depth at another number of H-cycles (training's sampled depth)."""
        return dataclasses.replace(self, H_cycles=int(H_cycles))

    def label(self, act: bool) -> str:
        """S2-H1-L2 (and -t0.5 under ACT): how results name a depth."""
        text = f"S{self.supervision_steps}-H{self.H_cycles}-L{self.L_cycles}"
        return text + (f"-t{self.halt_threshold:g}" if act else "")
