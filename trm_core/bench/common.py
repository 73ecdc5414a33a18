"""What every bench section shares: the config, the FLOP formula and peaks, timing, data and the Generator.

The FLOP formula is written out in the package docstring (`trm_core.bench`).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trm_core.data.sources import Example, load_examples
from trm_core.model.layers import swiglu_hidden_size
from trm_core.model.lm import CausalLM
from trm_core.profile import ModelConfig, Profile

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, SXM datasheets
GSM8K_PLACES = (".data/gsm8k", "../shared/gsm8k", "shared/gsm8k")


@dataclass
class BenchConfig:
    device: str = "cpu"
    sections: tuple[str, ...] = ("train", "decode", "eval")
    batch_size: int = 32
    seq_len: int = 512
    train_batches: int = 6  # distinct real batches per repeat (several bucket lengths)
    warmup: int = 1  # warm-up repeats (compilation happens here)
    repeats: int = 3
    train_compile: str = "regions"  # "regions" | "model" | "off" (optimized train step)
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    decode_tokens: int = 128
    decode_steps: tuple[int, ...] = (1,)  # supervision steps to time decode at (first = headline)
    decode_compile: bool = True  # also time the step compiled before capture (CUDA only)
    eval_problems: int = 0  # 0 = the whole test split
    eval_batch_size: int = 256
    eval_max_tokens: int = 256
    compile_step: bool = False  # compile the eval decode step before capture (opt-in, as in the Generator)
    dtype: str = "auto"  # decode and eval: "auto" (bf16 on CUDA, as the product), "fp32", "bf16"
    baseline: bool = True  # time the notebook's train step too (skip to save time on variants)
    data: str = ""  # data source; "" = the profile's if offline-usable, else GSM8K jsonl, else synthetic
    seed: int = 0


# ---------------------------------------------------------------------------- FLOPs and peaks


def layer_passes(cfg: ModelConfig) -> tuple[int, int]:
    """(layer passes per supervision step, those of them that get gradients)."""
    if cfg.arch == "trm":
        calls = cfg.H_cycles * (cfg.L_cycles + 1)
        grad_calls = min(cfg.grad_cycles, cfg.H_cycles) * (cfg.L_cycles + 1)
        return calls * cfg.num_layers, grad_calls * cfg.num_layers
    return cfg.num_layers, cfg.num_layers


def train_step_flops(cfg: ModelConfig, vocab_size: int, batch: int, seq: int, supervised: int) -> float:
    """Model FLOPs of one training step (one supervision pass) over an executed [batch, seq] shape."""
    D, V = cfg.hidden_size, vocab_size
    inter = swiglu_hidden_size(D, cfg.expansion)
    per_position = 8 * D * D + 6 * D * inter + 2 * seq * D  # matmuls + causal attention
    passes, grad_passes = layer_passes(cfg)
    forward = passes * batch * seq * per_position
    backward = 2 * grad_passes * batch * seq * per_position
    head = 6 * D * V * supervised
    return float(forward + backward + head)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None  # no measured CPU peak: MFU is reported as null
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


# ---------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30, "memory_kind": "cuda"}
    # ru_maxrss is KiB on Linux; it is the process's maximum so far, never reset
    return {
        "peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "memory_kind": "maxrss",
    }


def median_time(
    fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int
) -> tuple[float, list[float]]:
    """(first warm-up seconds or 0, every timed repeat's seconds)."""
    first = 0.0
    for i in range(warmup):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return first, times


def find_gsm8k() -> Path | None:
    """A folder with GSM8K's train.jsonl and test.jsonl, if one is near (never downloaded)."""
    for place in GSM8K_PLACES:
        p = Path(place)
        if (p / "train.jsonl").is_file() and (p / "test.jsonl").is_file():
            return p
    return None


def data_source(profile: Profile, requested: str) -> str:
    if requested:
        return requested
    src = profile.data.source
    if src.startswith("jsonl:") or src == "synthetic":
        return src
    found = find_gsm8k()  # hf: needs the hub: use a local GSM8K copy, else our own generator
    return f"jsonl:{found}" if found else "synthetic"


def bench_examples(profile: Profile, source: str, split: str, needed: int) -> list[Example]:
    d = profile.data
    size = max(needed, 256) if source == "synthetic" else d.synthetic_size
    return load_examples(
        source,
        split,
        synthetic_size=size,
        min_steps=d.synthetic_min_steps,
        max_steps=d.synthetic_max_steps,
        seed=d.seed,
        synthetic_answer=d.synthetic_answer,
    )


def make_generator(
    model: CausalLM, tokenizer: Any, S: int, device: torch.device, cuda_graph: bool, compile_step: bool
) -> Any:
    from trm_core.generation.generator import Generator
    from trm_core.model.depth import Depth

    return Generator(
        model, tokenizer, depth=Depth(S), device=device, cuda_graph=cuda_graph, compile_step=compile_step
    )
