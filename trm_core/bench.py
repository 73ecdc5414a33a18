"""The benchmark behind `trm-tui bench`: training throughput, decode latency and eval throughput.

Everything is measured in one process, after warm-up, as the median of several repeats:

- train: the original notebook's step (eager fp32, full `logits()` + cross-entropy over B x T x V,
  plain AdamW) against the optimized one (bf16 autocast, regional `torch.compile`, chunked
  `model.loss`, fused AdamW), both on the same FIXED [B, T] batches of packed real tokens (the
  shape reference numbers are quoted at); plus the optimized step on length-bucketed real
  problems (`optimized_bucketed`, what the Trainer runs). tokens/s counts real tokens, never padding.
- decode: batch-1 ms/token through `Generator` (the product's own paths): full recompute per token
  (`kv_cache=False`), the static KV cache eagerly, with the one-token step in a CUDA graph, and
  with the step compiled before capture (`compile_step=True`). The greedy text must agree.
- eval: GSM8K test problems/s through `evaluate.evaluate` (greedy, calculator, up to 256 tokens).
Decode and eval run in the product's inference dtype (`--infer-dtype auto`: bf16 on CUDA).

FLOPs of one training step (one supervision pass), D = hidden, I = SwiGLU width, V = vocab:
    per layer pass and position: 2 * (3D^2 + D^2 + 3DI) = 8D^2 + 6DI        (qkv, o, gate/up, down)
                                 + 2 * T * D                                 (QK^T and AV, causal half)
    forward  = P * B * T * per_layer_pass     P = H * (L + 1) * layers (all passes, grad or not)
    backward = 2 * forward of the grad passes G = grad_cycles * (L + 1) * layers
    LM head  = 6 * D * V per supervised position (forward 2DV, backward 4DV)
over the executed shape [B, T] (padding inside a bucket included, as it is computed); MFU =
achieved / peak, peak = 989 TFLOP/s dense bf16 (H100 / H200 SXM); null where no peak is known.
"""

from __future__ import annotations

import contextlib
import datetime
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data import (
    IGNORE_INDEX,
    Batch,
    Example,
    format_completion,
    format_prompt,
    iterate_batches,
    load_examples,
    tokenize_examples,
)
from .errors import UserError
from .layers import swiglu_hidden_size
from .model import CausalLM, build_model
from .profile import ModelConfig, Profile

__all__ = [
    "BenchConfig",
    "PEAK_BF16_FLOPS",
    "run_bench",
    "train_step_flops",
    "layer_passes",
    "peak_flops",
    "loss_pair",
    "find_gsm8k",
]

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
    compile: str = "regions"  # "regions" | "model" | "off" (optimized train step)
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    decode_tokens: int = 128
    decode_steps: tuple[int, ...] = (1,)  # supervision steps to time decode at (first = headline)
    decode_compile: bool = True  # also time the step compiled before capture (CUDA only)
    eval_problems: int = 0  # 0 = the whole test split
    eval_batch_size: int = 256
    eval_max_tokens: int = 256
    eval_compile: bool = False  # compile the eval decode step before capture (opt-in, as in the Generator)
    infer_dtype: str = "auto"  # decode and eval: "auto" (bf16 on CUDA, as the product), "fp32", "bf16"
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30, "memory_kind": "cuda"}
    # ru_maxrss is KiB on Linux; it is the process's maximum so far, never reset
    return {
        "peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "memory_kind": "maxrss",
    }


def _median_time(
    fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int
) -> tuple[float, list[float]]:
    """(first warm-up seconds or 0, every timed repeat's seconds)."""
    first = 0.0
    for i in range(warmup):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, times


def find_gsm8k() -> Path | None:
    """A folder with GSM8K's train.jsonl and test.jsonl, if one is near (never downloaded)."""
    for place in GSM8K_PLACES:
        p = Path(place)
        if (p / "train.jsonl").is_file() and (p / "test.jsonl").is_file():
            return p
    return None


def _data_source(profile: Profile, requested: str) -> str:
    if requested:
        return requested
    src = profile.data.source
    if src.startswith("jsonl:") or src == "synthetic":
        return src
    found = find_gsm8k()  # hf: needs the hub: use a local GSM8K copy, else our own generator
    return f"jsonl:{found}" if found else "synthetic"


def _examples(profile: Profile, source: str, split: str, needed: int) -> list[Example]:
    d = profile.data
    size = max(needed, 256) if source == "synthetic" else d.synthetic_size
    return load_examples(
        source,
        split,
        synthetic_size=size,
        min_steps=d.synthetic_min_steps,
        max_steps=d.synthetic_max_steps,
        seed=d.seed,
    )


def _packed_batches(examples: Sequence[Example], tokenizer: Any, B: int, T: int, n: int) -> list[Batch]:
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


# ---------------------------------------------------------------------------- train


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
    if v.compile == "regions":
        model.compile_regions(**kwargs)
    elif v.compile == "model":
        step_model = torch.compile(model, **kwargs)
    extra = {"fused": True} if v.fused_adamw else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, **extra)
    on_device = [Batch(b.input_ids.to(device), b.labels.to(device), b.num_tokens) for b in batches]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if v.bf16 else contextlib.nullcontext()
    losses: list[torch.Tensor] = []

    def step(inp: torch.Tensor, lab: torch.Tensor, carry: Any) -> Any:
        with autocast:
            hidden, carry = step_model(inp, carry)
            if v.optimized:
                loss = model.loss(hidden, lab)
            else:  # the notebook: the whole [B, T, V] logits tensor, then cross-entropy
                logits = model.logits(hidden)
                loss = F.cross_entropy(
                    logits.float().view(-1, logits.shape[-1]), lab.view(-1), ignore_index=IGNORE_INDEX
                )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        return carry

    def one_pass() -> None:
        losses.clear()
        for b in on_device:
            carry = None
            for _ in range(supervision_steps):  # deep supervision: a step per pass, carry handed on
                carry = step(b.input_ids, b.labels, carry)

    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = v.tf32
    try:
        _reset_peak(device)
        first, times = _median_time(one_pass, device, cfg.warmup, cfg.repeats)
        mem = _peak_memory(device)
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
    source = _data_source(profile, cfg.data)
    B, T = cfg.batch_size, cfg.seq_len
    examples = _examples(profile, source, "train", B * cfg.train_batches * 4)
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
    packed = _packed_batches(examples, tokenizer, B, T, cfg.train_batches)
    S = profile.train.supervision_steps if profile.model.arch == "trm" else 1
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
                compile=cfg.compile if cuda else "off",
                compile_mode=cfg.compile_mode,
                tf32=cuda,
                fused_adamw=cuda,
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
        },
        "loss_check": {"full_ce": full, "chunked": chunked, "abs_diff": abs(full - chunked)},
        "flops_formula": (
            "per step: P*B*T*(8D^2+6DI+2TD) forward over all P=H(L+1)layers passes + "
            "2x that for the G=grad_cycles(L+1)layers grad passes + 6DV per supervised position"
        ),
        "peak_flops": peak,
    }
    for v in variants:
        batches = bucketed if v.name == "optimized_bucketed" else packed
        log(
            f"train: {v.name} ({len(batches)} batches x {S} passes, shapes {sorted({tuple(b.input_ids.shape) for b in batches})})"
        )
        out[v.name] = _train_variant(v, profile, tokenizer.vocab_size, init, batches, S, device, cfg, peak)
        log(
            f"train: {v.name}: {out[v.name]['tokens_per_s']:,.0f} tok/s, compile {out[v.name]['compile_s']:.1f} s"
        )
    out["speedup"] = (
        out["optimized"]["tokens_per_s"] / out["baseline"]["tokens_per_s"] if cfg.baseline else None
    )
    return out


# ---------------------------------------------------------------------------- decode


def _generator(
    model: CausalLM, tokenizer: Any, S: int, device: torch.device, cuda_graph: bool, compile_step: bool
) -> Any:
    from .generate import Generator

    return Generator(
        model, tokenizer, supervision_steps=S, device=device, cuda_graph=cuda_graph, compile_step=compile_step
    )


def _time_generate(
    gen: Any, prompt: str, n: int, kv_cache: bool, repeats: int, device: torch.device
) -> dict[str, Any]:
    kw = {"temperature": 0.0, "max_tokens": n, "calculator": False, "kv_cache": kv_cache, "stop": ()}
    text = gen.generate(prompt, **kw)  # warm-up (and CUDA-graph capture / compilation)
    per_token, first = [], gen.last_stats
    for _ in range(repeats):
        _sync(device)
        out = gen.generate(prompt, **kw)
        _sync(device)
        stats = gen.last_stats
        per_token.append(1000 * stats["seconds"] / max(1, stats["new_tokens"]))
        if out != text:
            raise RuntimeError("greedy decoding is not deterministic between repeats")
    return {
        "ms_per_token": statistics.median(per_token),
        "tokens_per_s": 1000 / statistics.median(per_token),
        "new_tokens": int(first["new_tokens"]),
        "text": text,
    }


def bench_decode(
    model: CausalLM,
    tokenizer: Any,
    prompt: str,
    device: torch.device,
    cfg: BenchConfig,
    S: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    n, r = cfg.decode_tokens, cfg.repeats
    out: dict[str, Any] = {
        "supervision_steps": S,
        "new_tokens": n,
        "prompt_tokens": len(tokenizer.encode(prompt)),
    }
    paths: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "full_recompute",
            lambda: _time_generate(
                _generator(model, tokenizer, S, device, False, False),
                prompt,
                n,
                False,
                max(1, min(r, 2)),
                device,
            ),
        ),
        (
            "kv_cache",
            lambda: _time_generate(
                _generator(model, tokenizer, S, device, False, False), prompt, n, True, r, device
            ),
        ),
    ]
    cuda = device.type == "cuda"
    if cuda:
        paths.append(
            (
                "cuda_graph",
                lambda: _time_generate(
                    _generator(model, tokenizer, S, device, True, False), prompt, n, True, r, device
                ),
            )
        )
    if cuda and cfg.decode_compile:

        def compiled() -> dict[str, Any]:
            t0 = time.perf_counter()  # the product's path: Generator(compile_step=True)
            res = _time_generate(
                _generator(model, tokenizer, S, device, True, True), prompt, n, True, r, device
            )
            res["with_compile_s"] = time.perf_counter() - t0
            return res

        paths.append(("compiled_cuda_graph", compiled))
    reference = None
    for name, fn in paths:
        try:
            res = fn()
        except Exception as e:  # a path that cannot run here is reported, not fatal
            out[name] = {"ms_per_token": None, "error": f"{type(e).__name__}: {e}"[:300]}
            log(f"decode S={S}: {name} failed: {out[name]['error']}")
            continue
        text = res.pop("text")
        if reference is None:
            reference = text
        res["tokens_agree"] = text == reference
        if not res["tokens_agree"]:
            res["first_difference"] = next(
                (i for i, (a, b) in enumerate(zip(text, reference, strict=False)) if a != b),
                min(len(text), len(reference)),
            )
        out[name] = res
        log(f"decode S={S}: {name}: {res['ms_per_token']:.2f} ms/token, agree={res['tokens_agree']}")
    if not cuda:
        out["cuda_graph"] = {"ms_per_token": None}
    out["tokens_agree"] = all(v.get("tokens_agree", True) for v in out.values() if isinstance(v, dict))
    return out


# ---------------------------------------------------------------------------- eval


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
    from .evaluate import evaluate

    gen = _generator(model, tokenizer, S, device, True, bool(cfg.eval_compile))
    _sync(device)
    t0 = time.perf_counter()
    res = evaluate(gen, problems, batch_size=cfg.eval_batch_size, max_tokens=cfg.eval_max_tokens)
    _sync(device)
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
        **_peak_memory(device),
        "note": "random-init model: rows rarely emit EOS, so nearly every row runs to max tokens (worst case)",
    }


# ---------------------------------------------------------------------------- the whole benchmark


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    import platform

    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@dataclass
class _Shape:
    arch: str
    hidden_size: int
    num_heads: int
    num_layers: int
    H_cycles: int
    L_cycles: int
    layer_passes_per_token: int
    vocab_size: int
    tokenizer: str
    batch_size: int
    seq_len: int
    parameters: int
    extra: dict[str, Any] = field(default_factory=dict)


def run_bench(
    profile: Profile,
    cfg: BenchConfig,
    log: Callable[[str], None] = print,
    on_section: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the selected sections; returns the nested results (JSON-ready).

    `on_section(result)` is called after each section (e.g. to save partial results).
    """
    done = on_section or (lambda r: None)
    from .tokenizer import build_tokenizer

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but CUDA is not available on this machine")
    device = torch.device(cfg.device)
    unknown = set(cfg.sections) - {"train", "decode", "eval"}
    if unknown:
        raise UserError(f"unknown bench section(s) {', '.join(sorted(unknown))}; use train, decode, eval")
    tokenizer = build_tokenizer(profile.tokenizer.name)
    m = profile.model
    passes, _ = layer_passes(m)
    torch.manual_seed(cfg.seed)
    model = build_model(m, tokenizer.vocab_size)
    shape = _Shape(
        m.arch, m.hidden_size, m.num_heads, m.num_layers, m.H_cycles, m.L_cycles, passes,
        tokenizer.vocab_size, profile.tokenizer.name, cfg.batch_size, cfg.seq_len,
        sum(p.numel() for p in model.parameters()),
    )  # fmt: skip
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": _device_name(device),
        "torch": torch.__version__,
        "profile": profile.name,
        "shape": asdict(shape),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "train": None,
        "decode": None,
        "eval": None,
    }
    if "train" in cfg.sections:
        result["train"] = bench_train(profile, tokenizer, device, cfg, log)
        done(result)
    source = _data_source(profile, cfg.data)
    test = _examples(profile, source, "test", max(cfg.eval_problems, 8))
    from .checkpoint import resolve_inference_dtype

    model.to(device, dtype=resolve_inference_dtype(cfg.infer_dtype, device)).eval()
    if "decode" in cfg.sections:
        prompt = format_prompt(test[0].question)
        runs = [bench_decode(model, tokenizer, prompt, device, cfg, S, log) for S in cfg.decode_steps]
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        result["decode"] = {**runs[0], "data": source, "dtype": dtype}
        if len(runs) > 1:
            result["decode"]["other_supervision_steps"] = runs[1:]
        done(result)
    if "eval" in cfg.sections:
        problems = test[: cfg.eval_problems] if cfg.eval_problems else test
        result["eval"] = {
            **bench_eval(model, tokenizer, problems, device, cfg, cfg.decode_steps[0], log),
            "data": source,
        }
    result["ok"] = result["decode"] is None or bool(result["decode"]["tokens_agree"])
    return result


def _fmt(x: Any, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}{unit}"
    return f"{x}{unit}"


def results_table(result: dict[str, Any]) -> Any:
    """A rich table of the headline numbers with ratios."""
    from rich.table import Table

    shape = result["shape"]
    table = Table(
        title=f"trm-tui bench — {result['device']} — {result['profile']} "
        f"(d={shape['hidden_size']}, {shape['layer_passes_per_token']} layer passes/token, "
        f"V={shape['vocab_size']}, B={shape['batch_size']}, T≤{shape['seq_len']})",
        title_justify="left",
    )
    for col, just in (
        ("section", "left"),
        ("path", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("ratio", "right"),
        ("notes", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    tr = result.get("train")
    if tr:
        base = tr.get("baseline", tr["optimized"])["tokens_per_s"]
        for name in ("baseline", "baseline_tf32", "optimized", "optimized_bucketed"):
            if name not in tr:
                continue
            r = tr[name]
            mfu = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
            notes = f"{r['tflops']:.3g} TFLOP/s, MFU {mfu}, peak {r['peak_memory_gib']:.2f} GiB ({r['memory_kind']})"
            if r["compile_s"]:
                notes += f", compile {r['compile_s']:.0f} s"
            table.add_row(
                "train",
                name,
                "tokens/s",
                _fmt(r["tokens_per_s"], digits=0),
                f"{r['tokens_per_s'] / base:.2f}×",
                notes,
            )
        lc = tr["loss_check"]
        table.add_row(
            "train", "loss check", "|full − chunked|", f"{lc['abs_diff']:.2e}", "", "fp32, same batch"
        )
    dec = result.get("decode")
    runs = [dec, *dec.get("other_supervision_steps", [])] if dec else []
    for d in runs:
        base = d.get("full_recompute", {}).get("ms_per_token")
        for name in ("full_recompute", "kv_cache", "cuda_graph", "compiled_cuda_graph"):
            r = d.get(name)
            if r is None:
                continue
            ms = r.get("ms_per_token")
            ratio = f"{base / ms:.1f}×" if ms and base else ""
            notes = r.get("error", "") or (
                "greedy tokens agree"
                if r.get("tokens_agree")
                else "greedy tokens DIFFER"
                if "tokens_agree" in r
                else "not available here"
            )
            table.add_row(
                f"decode S={d['supervision_steps']}", name, "ms/token", _fmt(ms, digits=2), ratio, notes
            )
    ev = result.get("eval")
    if ev:
        table.add_row(
            "eval", f"evaluate B={ev['batch_size']}", "problems/s", _fmt(ev["problems_per_s"], digits=2), "",
            f"{ev['problems']} problems × ≤{ev['max_new_tokens']} tokens in {ev['seconds']:.1f} s, {ev['dtype']}",
        )  # fmt: skip
    return table
