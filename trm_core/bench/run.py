"""The whole benchmark: the model shape, then the selected sections, into one JSON-ready dict."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from trm_core.bench.common import BenchConfig, bench_examples, data_source, layer_passes
from trm_core.bench.decode import bench_decode
from trm_core.bench.evaluation import bench_eval
from trm_core.bench.train import bench_train
from trm_core.cpu_info import describe_cpu
from trm_core.data.sources import format_prompt
from trm_core.errors import UserError
from trm_core.model.lm import build_model
from trm_core.profile import Profile


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {describe_cpu()}, {torch.get_num_threads()} threads"


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
    from trm_core.data.tokenizers import build_tokenizer

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
    source = data_source(profile, cfg.data)
    test = bench_examples(profile, source, "test", max(cfg.eval_problems, 8))
    from trm_core.runs.inference import resolve_inference_dtype

    model.to(device, dtype=resolve_inference_dtype(cfg.dtype, device)).eval()
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
