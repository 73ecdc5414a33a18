"""The eval section: GSM8K test problems/s through the product's `evaluate.evaluate`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from trm_core.bench.common import BenchConfig, make_generator, peak_memory, sync
from trm_core.data.sources import Example
from trm_core.model.lm import CausalLM


def bench_eval(
    model: CausalLM,
    tokenizer: Any,
    problems: list[Example],
    device: torch.device,
    cfg: BenchConfig,
    S: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The product's eval (`evaluate.evaluate`: batched greedy, calculator on, stop strings)."""
    from trm_core.evaluation.evaluate import evaluate

    gen = make_generator(model, tokenizer, S, device, True, bool(cfg.compile_step))
    sync(device)
    t0 = time.perf_counter()
    res = evaluate(gen, problems, batch_size=cfg.eval_batch_size, max_tokens=cfg.eval_max_tokens)
    sync(device)
    seconds = time.perf_counter() - t0
    log(f"eval: {res.total} problems in {seconds:.1f} s")
    return {
        "problems": res.total,
        "seconds": seconds,
        "problems_per_s": res.total / seconds,
        "batch_size": cfg.eval_batch_size,
        "max_new_tokens": cfg.eval_max_tokens,
        "token_budget_per_s": res.total * cfg.eval_max_tokens / seconds,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "compile_step": gen.compile_step,
        "supervision_steps": S,
        "accuracy": res.accuracy,
        **peak_memory(device),
        "note": "random-init model: rows rarely emit EOS, so nearly every row runs to max tokens (worst case)",
    }
