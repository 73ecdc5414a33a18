"""`trm-tui check PROFILE...`: validate profiles and summarise them."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate profiles and print a summary of each")
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help="TOML profile files")
    p.set_defaults(run=run)


def summary(profile) -> str:
    from trm_core.model.lm import count_parameters
    from trm_core.model.memory import check_fits

    m, t, d = profile.model, profile.train, profile.data
    device = "cpu"
    if t.device == "cuda" or t.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_fits(profile, device)  # UserError: what training it would need, before building anything
    try:
        params = f"{count_parameters(profile) / 1e6:.2f}M params"
    except Exception as e:  # tokenizer not buildable (e.g. hf: offline) — still summarise
        params = f"params unknown ({e})"
    shape = f"{m.arch} d={m.hidden_size} heads={m.num_heads} layers={m.num_layers}"
    if m.arch == "trm":
        shape += f" H={m.H_cycles} L={m.L_cycles} grad_cycles={m.grad_cycles}"
        if m.halting != "none":
            shape += f" halting={m.halting}"
    return (
        f"{profile.name}: {shape}, {params}; tokenizer {profile.tokenizer.name}; data {d.source}; "
        f"supervision {t.supervision} x{t.supervision_steps}; batch {t.batch_size}, lr {t.lr:g}"
    )


def run(args: argparse.Namespace) -> int:
    from trm_core.errors import UserError
    from trm_core.printable import printable
    from trm_core.profile import ProfileError, load_profile

    failed = 0
    for path in args.profiles:
        try:
            profile = load_profile(path)
        except ProfileError as e:
            failed += 1
            for problem in e.problems:
                print(printable(problem), file=sys.stderr)
            continue
        try:
            print(f"ok  {printable(path)}  {printable(summary(profile))}")
        except UserError as e:
            failed += 1
            print(f"{printable(path)}: {printable(str(e))}", file=sys.stderr)
    return 1 if failed else 0
