"""Answer accuracy during training: a few validation problems decoded greedily at each evaluation.

`train.eval_accuracy_problems = N` (0 = off) takes the first N problems of the run's validation
slice (carved from *train*, never trained on: `evaluation.run_eval.held_out_examples`), decodes
them greedily with the profile's calculator setting and scores the final number, as `trm-tui eval`
does. The result is an `AccuracyEvent` in metrics.jsonl, plottable like any metric.

Nothing here may change the training: decoding is greedy, and the random number generators are
forked around it anyway, so a run's losses are the same with or without the probe (a test holds
it). Only the main process decodes (under DDP the other ranks never call the model here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trm_core.events import AccuracyEvent
from trm_core.profile import Profile

__all__ = ["AccuracyProbe"]


class AccuracyProbe:
    """`measure(model, step, emit)` emits an AccuracyEvent; nothing when off (or not the main process)."""

    def __init__(self, profile: Profile, tokenizer: Any, device: torch.device, *, is_main: bool = True):
        self.profile, self.tokenizer, self.device = profile, tokenizer, device
        self.n = profile.train.eval_accuracy_problems if is_main else 0
        self._examples: list[Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.n > 0

    def examples(self) -> list[Any]:
        if self._examples is None:  # read once, at the first evaluation
            from trm_core.evaluation.run_eval import held_out_examples

            self._examples = held_out_examples(self.profile, "val", self.n) if self.n else []
        return self._examples

    @torch.no_grad()
    def measure(
        self, model: torch.nn.Module, step: int, emit: Callable[[AccuracyEvent], None] | None = None
    ) -> AccuracyEvent | None:
        examples = self.examples() if self.enabled else []
        if not examples:
            return None
        from trm_core.evaluation.evaluate import evaluate
        from trm_core.generation.generator import Generator
        from trm_core.generation.sampling import SamplingOptions
        from trm_core.model.depth import Depth

        p = self.profile
        was_training = model.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            gen = Generator(
                model, self.tokenizer, depth=Depth.of_profile(p), device=self.device,
                cuda_graph=False, defaults=SamplingOptions.from_profile(p.generate),
                prompt_halts=p.data.loss_on == "all",
            )  # fmt: skip
            result = evaluate(
                gen, examples, max_tokens=p.generate.max_tokens, calculator=p.generate.calculator
            )
        model.train(was_training)
        event = AccuracyEvent(step, result.accuracy, result.correct, result.total)
        if emit is not None:
            emit(event)
        return event
