"""`trm-tui bench`: training tokens/s and MFU, decode ms/token, eval problems/s, in one process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure training, decoding and eval throughput")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    p.add_argument(
        "--profile",
        default=None,
        help="profile name in profiles/ or a TOML file (default: gsm8k; quickstart with --quick)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny shapes, few repeats: well under a minute on CPU"
    )
    p.add_argument("--json", metavar="FILE", help="write every number to FILE as JSON")
    p.add_argument("--batch-size", type=int, metavar="B", help="training batch size (default: the profile's)")
    p.add_argument(
        "--seq-len", type=int, metavar="T", help="maximum training length (default: the profile's)"
    )
    p.add_argument("--sections", default="train,decode,eval", help="comma-separated: train,decode,eval")
    p.add_argument("--repeats", type=int, metavar="N", help="timed repeats (median reported)")
    p.add_argument("--data", default="", help="data source (default: a local GSM8K copy, else synthetic)")
    p.add_argument(
        "--train-compile",
        choices=["regions", "model", "off"],
        default=None,
        help="optimized train step's compile (default: regions; off with --quick on CPU)",
    )
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--decode-tokens", type=int, metavar="N", help="new tokens per decode timing")
    p.add_argument(
        "--decode-steps",
        default=None,
        help="supervision steps to decode at, e.g. 1,2 (default: 1 and the profile's)",
    )
    p.add_argument("--no-decode-compile", action="store_true", help="skip the compiled-step decode path")
    p.add_argument("--eval-problems", type=int, metavar="N", help="test problems to generate (0 = all)")
    p.add_argument("--eval-batch-size", type=int, metavar="B", help="rows decoded in lockstep")
    p.add_argument("--eval-max-tokens", type=int, metavar="N", help="new tokens per problem (default 256)")
    # the same names as `generate` and `eval`; the old spellings stay as hidden aliases
    p.add_argument(
        "--dtype",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="model dtype for decode and eval (auto: bf16 on CUDA, fp32 on CPU, as the product)",
    )
    p.add_argument(
        "--infer-dtype",
        choices=["auto", "fp32", "bf16"],
        dest="dtype",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile the eval decode step before capture (off by default, as in `generate`)",
    )
    p.add_argument(
        "--eval-compile",
        action=argparse.BooleanOptionalAction,
        dest="compile",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    p.add_argument("--skip-baseline", action="store_true", help="time only the optimized train step")
    p.set_defaults(run=run)


def _profile(name: str):
    from trm_core.errors import UserError
    from trm_core.profile import load_profile

    path = Path(name)
    if not path.suffix and not path.exists():
        for base in (Path("profiles"), Path(__file__).resolve().parents[2] / "profiles"):
            if (base / f"{name}.toml").is_file():
                path = base / f"{name}.toml"
                break
    if not path.is_file():
        raise UserError(f"no profile {name!r}: give a TOML file or a name from profiles/")
    return load_profile(path)


def build_config(args: argparse.Namespace, profile, device: str):
    from trm_core.bench.common import BenchConfig

    quick = args.quick
    steps = [1] if quick else sorted({1, profile.train.supervision_steps})
    if args.decode_steps:
        steps = [int(s) for s in args.decode_steps.split(",") if s.strip()]
    cfg = BenchConfig(
        device=device,
        sections=tuple(s.strip() for s in args.sections.split(",") if s.strip()),
        batch_size=args.batch_size or (8 if quick else profile.train.batch_size),
        seq_len=args.seq_len or profile.data.max_length,
        train_batches=2 if quick else 6,
        warmup=1,
        repeats=args.repeats or (2 if quick else 3),
        train_compile=args.train_compile or ("off" if quick and device == "cpu" else "regions"),
        compile_mode=args.compile_mode,
        decode_tokens=args.decode_tokens or (16 if quick else 128),
        decode_steps=tuple(steps),
        decode_compile=not args.no_decode_compile,
        eval_problems=args.eval_problems if args.eval_problems is not None else (8 if quick else 0),
        eval_batch_size=args.eval_batch_size or (4 if quick else 256),
        eval_max_tokens=args.eval_max_tokens or (16 if quick else 256),
        dtype=args.dtype,
        compile_step=args.compile,
        baseline=not args.skip_baseline,
        data=args.data,
    )
    return cfg


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from trm_core.bench.run import run_bench
    from trm_tui.commands.bench_report import results_table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    profile = _profile(args.profile or ("quickstart" if args.quick else "gsm8k"))
    cfg = build_config(args, profile, device)
    console = Console(width=None if sys.stdout.isatty() else 160)

    def save(result: dict) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")

    result = run_bench(profile, cfg, log=lambda m: console.print(f"[dim]{m}[/dim]"), on_section=save)
    console.print(results_table(result))
    save(result)
    if args.json:
        console.print(f"wrote {args.json}")
    if not result["ok"]:
        print("trm-tui: greedy tokens differ between decode paths (see the table)", file=sys.stderr)
        return 1
    return 0
