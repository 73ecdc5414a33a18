"""The rich table of a bench result's headline numbers, with ratios."""

from __future__ import annotations

from typing import Any


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
        names = ("baseline", "baseline_tf32", "optimized", "optimized_bucketed")
        cpu_rows = (
            "optimized_bf16_attn_bf16",
            "optimized_bf16_attn_fp32",
            "bf16_bucketed_eager",
            "bf16_bucketed_compiled",
        )
        for name in (*names, *cpu_rows):
            if name not in tr:
                continue
            r = tr[name]
            mfu = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
            notes = f"{r['tflops']:.3g} TFLOP/s, MFU {mfu}, peak {r['peak_memory_gib']:.2f} GiB ({r['memory_kind']})"
            if r["compile_s"]:
                notes += f", compile {r['compile_s']:.0f} s"
            if name == "bf16_bucketed_compiled" and tr.get("compiled_step_speedup"):
                notes += f", {tr['compiled_step_speedup']:.2f}× the eager bf16 step"
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
