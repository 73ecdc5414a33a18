"""The train section: the notebook's step against the optimized one, on packed and bucketed batches."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from trm_core.bench.common import (
    BenchConfig,
    bench_examples,
    data_source,
    median_time,
    peak_flops,
    peak_memory,
    reset_peak,
    train_step_flops,
)
from trm_core.cpu_info import cpu_has_native_bf16
from trm_core.data.batches import IGNORE_INDEX, Batch, iterate_batches, tokenize_examples
from trm_core.data.sources import Example, format_completion, format_prompt
from trm_core.errors import UserError
from trm_core.model.attention_precision import cpu_attention
from trm_core.model.lm import CausalLM, build_model
from trm_core.profile import Profile
from trm_core.training.accel import compile_regions_for
from trm_core.training.step import Pass, supervision_step


def packed_batches(examples: Sequence[Example], tokenizer: Any, B: int, T: int, n: int) -> list[Batch]:
    """n batches of exactly [B, T] real tokens: prompt + answer + EOS of one problem after another,
    cut into rows of T + 1 (pretraining-style packing), every position supervised. This is the
    fixed shape that published tokens/s and MFU numbers are measured at."""
    stream: list[int] = []
    need = n * B * (T + 1)
    while len(stream) < need:
        for ex in examples:
            stream += tokenizer.encode(format_prompt(ex.question) + format_completion(ex.answer))
            stream.append(tokenizer.eos_id)
            if len(stream) >= need:
                break
    rows = torch.tensor(stream[:need], dtype=torch.long).view(n, B, T + 1)
    return [Batch(r[:, :-1].contiguous(), r[:, 1:].contiguous(), B * T) for r in rows]


def loss_pair(model: CausalLM, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(full-logits cross-entropy, chunked `model.loss`) of one forward pass, same weights and batch."""
    with torch.no_grad():
        hidden, _ = model(input_ids)
        full = F.cross_entropy(
            model.logits(hidden).float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        chunked = model.loss(hidden, labels, chunk_size=7)  # small chunks: several of them
    return float(full), float(chunked)


@dataclass
class _TrainVariant:
    name: str
    optimized: bool
    bf16: bool
    compile: str  # "off" | "regions" | "model"
    compile_mode: str | None = None
    tf32: bool = False
    fused_adamw: bool = False
    attention: str = "auto"  # CPU under bf16: "fp32" | "bf16" attention (model/attention_precision.py)


def _train_variant(
    v: _TrainVariant,
    profile: Profile,
    vocab_size: int,
    init_state: dict[str, torch.Tensor],
    batches: Sequence[Batch],
    supervision_steps: int,
    device: torch.device,
    cfg: BenchConfig,
    peak: float | None,
) -> dict[str, Any]:
    mcfg = profile.model
    model = build_model(mcfg, vocab_size)
    model.load_state_dict(init_state)
    model.to(device).train()
    step_model: Any = model
    kwargs = {"mode": v.compile_mode} if v.compile_mode else {}
    if v.compile != "off":
        # Forget the previous variant's graphs: the blocks share code objects, so a new shape would
        # otherwise be compiled as dynamic ("automatic dynamic shapes") and run slower.
        torch._dynamo.reset()
    if v.compile == "regions" and device.type == "cpu" and not kwargs:
        compile_regions_for([model], device)  # the Trainer's CPU path: dynamic lengths, cached on disk
    elif v.compile == "regions":
        model.compile_regions(**kwargs)
    elif v.compile == "model":
        step_model = torch.compile(model, **kwargs)
    extra = {"fused": True} if v.fused_adamw else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, **extra)
    on_device = [Batch(b.input_ids.to(device), b.labels.to(device), b.num_tokens) for b in batches]
    losses: list[torch.Tensor] = []

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if v.bf16 else contextlib.nullcontext()

    def full_logits_loss(hidden: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        # the notebook: the whole [B, T, V] logits tensor, then cross-entropy
        logits = model.logits(hidden)
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), lab.view(-1), ignore_index=IGNORE_INDEX
        )

    def optimizer_step(_: Pass) -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    def one_pass() -> None:
        losses.clear()
        for b in on_device:  # deep supervision: a step per pass, carry handed on
            r = supervision_step(
                model, b.input_ids, b.labels, S=supervision_steps, mode="deep", forward=step_model,
                autocast=autocast, loss_fn=None if v.optimized else full_logits_loss, after_pass=optimizer_step,
            )  # fmt: skip
            losses.extend(r.losses)

    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = v.tf32
    try:
        reset_peak(device)
        with cpu_attention(v.attention):
            first, times = median_time(one_pass, device, cfg.warmup, cfg.repeats)
        mem = peak_memory(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    seconds = statistics.median(times)
    steps = len(on_device) * supervision_steps
    tokens = sum(b.num_tokens for b in batches) * supervision_steps
    flops = supervision_steps * sum(
        train_step_flops(mcfg, vocab_size, *b.input_ids.shape, int((b.labels != IGNORE_INDEX).sum()))
        for b in batches
    )
    achieved = flops / seconds
    result = {
        "tokens_per_s": tokens / seconds,
        "step_ms": 1000 * seconds / steps,
        "tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else None,
        **mem,
        "warmup_s": first,
        "compile_s": max(0.0, first - seconds) if v.compile != "off" else 0.0,
        "final_loss": float(losses[-1]) if losses else None,
        "shapes": sorted({tuple(b.input_ids.shape) for b in batches}),
        "config": {k: val for k, val in asdict(v).items() if k != "name"},
        "repeat_s": times,
    }
    return result  # the model, optimizer and batches are freed with this frame


def bench_train(
    profile: Profile, tokenizer: Any, device: torch.device, cfg: BenchConfig, log: Callable[[str], None]
) -> dict[str, Any]:
    source = data_source(profile, cfg.data)
    B, T = cfg.batch_size, cfg.seq_len
    examples = bench_examples(profile, source, "train", B * cfg.train_batches * 4)
    ds = tokenize_examples(
        examples,
        tokenizer,
        max_length=T + 1,  # T input positions
        bucket_multiple=profile.data.bucket_multiple,
        loss_on=profile.data.loss_on,
    )
    it = iterate_batches(ds, B, seed=cfg.seed, epoch=0)
    bucketed = [b for b, _ in zip(it, range(cfg.train_batches), strict=False)]
    if not bucketed:
        raise UserError(f"no training example of {source} fits in --seq-len {T}; raise it")
    packed = packed_batches(examples, tokenizer, B, T, cfg.train_batches)
    S = profile.model.supervision_passes(profile.train.supervision_steps)
    torch.manual_seed(cfg.seed)
    init = build_model(profile.model, tokenizer.vocab_size).state_dict()
    peak = peak_flops(device)
    cuda = device.type == "cuda"

    # same weights, same first batch, fp32: the chunked loss must equal the full one
    check_model = build_model(profile.model, tokenizer.vocab_size)
    check_model.load_state_dict(init)
    b0 = bucketed[0]
    full, chunked = loss_pair(check_model, b0.input_ids[:2], b0.labels[:2])
    del check_model

    variants = [_TrainVariant("baseline", optimized=False, bf16=False, compile="off")] if cfg.baseline else []
    if cuda and cfg.baseline:
        variants.append(_TrainVariant("baseline_tf32", optimized=False, bf16=False, compile="off", tf32=True))
    for name in ("optimized", "optimized_bucketed"):
        variants.append(
            _TrainVariant(
                name,
                optimized=True,
                bf16=cuda,
                compile=cfg.train_compile,  # on CPU too: the Trainer compiles there (training/accel.py)
                compile_mode=cfg.compile_mode,
                tf32=cuda,
                fused_adamw=cuda,
            )
        )
    if not cuda and cpu_has_native_bf16():  # the CPU's bf16 step, with attention in each precision
        for attention in ("bf16", "fp32"):
            variants.append(
                _TrainVariant(
                    f"optimized_bf16_attn_{attention}",
                    optimized=True,
                    bf16=True,
                    compile=cfg.train_compile,
                    compile_mode=cfg.compile_mode,
                    attention=attention,
                )
            )
        # the Trainer's quickstart step on CPU: bf16, the measured attention precision, bucketed
        # real batches; eager (what compile = "auto" runs cold) against the compiled net (issue 29.2)
        variants.append(_TrainVariant("bf16_bucketed_eager", optimized=True, bf16=True, compile="off"))
        if cfg.train_compile != "off":
            variants.append(
                _TrainVariant(
                    "bf16_bucketed_compiled",
                    optimized=True,
                    bf16=True,
                    compile=cfg.train_compile,
                    compile_mode=cfg.compile_mode,
                )
            )
    out: dict[str, Any] = {
        "data": source,
        "supervision_steps": S,
        "batches": len(bucketed),
        "real_tokens_per_pass": sum(b.num_tokens for b in bucketed),
        "fixed_shape": [B, T],
        "rows": {
            "baseline, baseline_tf32, optimized": f"packed: {len(packed)} batches of exactly {B}x{T} real tokens",
            "optimized_bucketed": "real problems, length-bucketed, padding not counted",
            "bf16_bucketed_eager, bf16_bucketed_compiled": "CPU: the bucketed batches, bf16 autocast, "
            "attention in the measured precision; eager, and the shared net compiled as one graph",
        },
        "loss_check": {"full_ce": full, "chunked": chunked, "abs_diff": abs(full - chunked)},
        "flops_formula": (
            "per step: P*B*T*(8D^2+6DI+2TD) forward over all P=H(L+1)layers passes + "
            "2x that for the G=grad_cycles(L+1)layers grad passes + 6DV per supervised position"
        ),
        "peak_flops": peak,
    }
    for v in variants:
        batches = bucketed if "bucketed" in v.name else packed
        log(
            f"train: {v.name} ({len(batches)} batches x {S} passes, shapes {sorted({tuple(b.input_ids.shape) for b in batches})})"
        )
        out[v.name] = _train_variant(v, profile, tokenizer.vocab_size, init, batches, S, device, cfg, peak)
        log(
            f"train: {v.name}: {out[v.name]['tokens_per_s']:,.0f} tok/s, compile {out[v.name]['compile_s']:.1f} s"
        )
    if "bf16_bucketed_compiled" in out:
        out["compiled_step_speedup"] = (
            out["bf16_bucketed_compiled"]["tokens_per_s"] / out["bf16_bucketed_eager"]["tokens_per_s"]
        )
    out["speedup"] = (
        out["optimized"]["tokens_per_s"] / out["baseline"]["tokens_per_s"] if cfg.baseline else None
    )
    return out
