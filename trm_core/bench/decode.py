"""The decode section: batch-1 ms/token through the Generator's paths; the greedy text must agree."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from trm_core.bench.common import BenchConfig, make_generator, sync
from trm_core.model.lm import CausalLM


def _time_generate(
    gen: Any, prompt: str, n: int, kv_cache: bool, repeats: int, device: torch.device
) -> dict[str, Any]:
    kw = {"temperature": 0.0, "max_tokens": n, "calculator": False, "kv_cache": kv_cache, "stop": ()}
    text = gen.generate(prompt, **kw)  # warm-up (and CUDA-graph capture / compilation)
    per_token, first = [], gen.last_stats
    for _ in range(repeats):
        sync(device)
        out = gen.generate(prompt, **kw)
        sync(device)
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
                make_generator(model, tokenizer, S, device, False, False),
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
                make_generator(model, tokenizer, S, device, False, False), prompt, n, True, r, device
            ),
        ),
    ]
    cuda = device.type == "cuda"
    if cuda:
        paths.append(
            (
                "cuda_graph",
                lambda: _time_generate(
                    make_generator(model, tokenizer, S, device, True, False), prompt, n, True, r, device
                ),
            )
        )
    if cuda and cfg.decode_compile:

        def compiled() -> dict[str, Any]:
            t0 = time.perf_counter()  # the product's path: Generator(compile_step=True)
            res = _time_generate(
                make_generator(model, tokenizer, S, device, True, True), prompt, n, True, r, device
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
