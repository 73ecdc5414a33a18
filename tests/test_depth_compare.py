"""`trm-tui compare PATH… --depth NAME`: accuracy against depth across seeds, from each run's
`trm-tui eval --json` file — the per-combination statistics, skipped runs, broken files, the outputs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from trm_core.errors import UserError
from trm_core.experiments.compare import t_critical
from trm_core.experiments.depth_compare import depth_compare, read_depth_file
from trm_tui.__main__ import main

from .cli_harness import CORPUS

GOOD = (CORPUS / "profiles" / "good.toml").read_text()

# accuracy per (hidden size, depth combination): one value per seed, None = that run lacks it
S1, S2, S2L3 = (1, 1, 1, 1.0), (2, 1, 1, 1.0), (2, 1, 3, 1.0)
ACCURACY: dict[int, dict[tuple[Any, ...], list[float | None]]] = {
    16: {S1: [0.10, 0.12, 0.11], S2: [0.50, 0.52, 0.51], S2L3: [0.30, 0.90, None]},
    32: {S1: [0.20, 0.40, 0.30], S2: [0.25, 0.35, 0.45]},
}
NO_CALC = {16: [0.05, None, 0.07], 32: [None, None, None]}  # measured in some runs only


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


def make_run(path: Path, hidden: int, seed: int) -> Path:
    """A run directory as `find_runs` sees it: its profile and a (here empty) metrics.jsonl."""
    path.mkdir(parents=True)
    text = GOOD.replace("hidden_size = 32", f"hidden_size = {hidden}").replace(
        "[train]", f"[train]\nseed = {seed}"
    )
    (path / "profile.toml").write_text(text)
    (path / "metrics.jsonl").write_text("")
    return path


def eval_row(combo: tuple[Any, ...], acc: float, no_calc: float | None) -> dict[str, Any]:
    """One result exactly as `trm-tui eval --json` writes it (`_row` in commands/eval.py)."""
    steps, H, L, thr = combo
    depth = steps * (0.75 if thr is not None else 1.0)
    return {
        "supervision_steps": steps,
        "H_cycles": H,
        "L_cycles": L,
        "halt_threshold": thr,
        "accuracy": acc,
        "accuracy_no_calculator": no_calc,
        "mean_depth": depth,
        "net_calls_per_token": depth * H * (L + 1),
        "seconds": 1.5,
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 groups (hidden size 16, 32) × 3 seeds with depth.json, and a fourth run without it."""
    root = tmp_path / "thinking"
    for hidden, combos in ACCURACY.items():
        for seed in range(3):
            run = make_run(root / f"h{hidden}_seed{seed}", hidden, seed)
            rows = [
                eval_row(c, accs[seed], NO_CALC[hidden][seed])
                for c, accs in combos.items()
                if accs[seed] is not None
            ]
            (run / "depth.json").write_text(json.dumps({"results": rows}, indent=1) + "\n")
    make_run(root / "h16_seed3", 16, 3)  # evaluated without --json: skipped
    return root


def test_statistics_per_group_and_combination_are_those_of_the_runs(sweep: Path) -> None:
    result = depth_compare([sweep], "depth.json")
    assert result["by"] == ["model.hidden_size"]
    assert result["skipped"] == [str(sweep / "h16_seed3")]
    rows = result["depth_groups"]
    assert [(r["key"]["model.hidden_size"], r["label"]) for r in rows] == [
        (16, "S1-H1-L1-t1"), (16, "S2-H1-L1-t1"), (16, "S2-H1-L3-t1"), (32, "S1-H1-L1-t1"), (32, "S2-H1-L1-t1"),
    ]  # fmt: skip
    for r in rows:
        hidden, d = r["key"]["model.hidden_size"], r["depth"]
        assert set(r) >= {"key", "depth", "n", "runs", "metrics"}
        assert set(d) == {"supervision_steps", "H_cycles", "L_cycles", "halt_threshold"}
        combo = (d["supervision_steps"], d["H_cycles"], d["L_cycles"], d["halt_threshold"])
        values = [v for v in ACCURACY[hidden][combo] if v is not None]
        assert r["n"] == len(values) == len(r["runs"])  # only the runs that have the combination
        acc = r["metrics"]["accuracy"]
        assert acc["values"] == values
        assert acc["mean"] == pytest.approx(statistics.fmean(values))
        assert acc["std"] == pytest.approx(statistics.stdev(values))
        half = t_critical(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        assert acc["ci95"] == pytest.approx([acc["mean"] - half, acc["mean"] + half])
        seeds = [i for i, v in enumerate(ACCURACY[hidden][combo]) if v is not None]
        no_calc = [NO_CALC[hidden][i] for i in seeds if NO_CALC[hidden][i] is not None]
        assert r["metrics"]["accuracy_no_calculator"]["values"] == no_calc  # None values left out
        assert r["metrics"]["mean_depth"]["mean"] == pytest.approx(0.75 * d["supervision_steps"])
        assert r["metrics"]["net_calls_per_token"]["std"] == pytest.approx(0.0)
    # hidden 16: S2 beats S1 with disjoint intervals; S2-L3 (two wide runs) overlaps both; 32: all overlap
    assert result["resolved"] == [{"metric": "accuracy", "group": 0, "a": 0, "b": 1, "better": 1}]


def test_markdown_has_a_row_per_group_and_combination_and_says_what_is_resolved(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("compare", sweep, "--depth", "depth.json", "--markdown") == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "skipped 1 run without depth.json" in err and "h16_seed3" in err
    table = [line for line in out.splitlines() if line.startswith("| hidden_size=")]
    assert len(table) == 5
    assert table[0].startswith("| hidden_size=16 | 1 | 1 | 1 | 1 | 3 | 0.75 ± 0.00 | 1.5 ± 0.0")
    # ± is the 95% CI half-width: t(0.975, 2)·std/√3 = 4.303 · 0.01 / √3 = 0.0248
    assert "| 11.0% ± 2.5% |" in table[0]
    assert "**51.0% ± 2.5%**" not in out  # S2-L3 overlaps it: not best of its group
    # S2-L3 has two seeds (0.30, 0.90): 60% ± 381% would pass 0 and 100%, so it is cut there
    assert "| 60.0% [0.0%, 100.0%] |" in out and "381" not in out
    assert "± 95% CI half-width" in out
    assert "| hidden_size=16 | 2 | 1 | 3 | 1 | 2 |" in out
    assert "95% t-interval across seeds" in out
    assert (
        "hidden_size=16 · exact, calculator: resolved S2-H1-L1-t1 > S1-H1-L1-t1; the other 2 pairs overlap."
        in out
    )
    assert "hidden_size=32 · exact, calculator: all 95% intervals overlap — nothing resolved." in out
    assert "hidden_size=32 · exact, none" not in out  # never measured in that group


def test_json_and_the_rich_table(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "depth-cmp.json"
    assert cli("compare", sweep, "--depth", "depth.json", "--json", out) == 0
    printed = capsys.readouterr().out
    assert "accuracy against depth: 6 runs" in printed and "S2-H1-L1-t1 > S1-H1-L1-t1" in printed
    result = json.loads(out.read_text())
    assert {"depth_groups", "interval", "resolved"} <= set(result)
    assert len(result["depth_groups"]) == 5
    for g in result["depth_groups"]:
        assert set(g["metrics"]) == {
            "accuracy",
            "accuracy_no_calculator",
            "mean_depth",
            "net_calls_per_token",
        }
        for s in g["metrics"].values():
            assert set(s) == {"mean", "std", "ci95", "values"}
    assert cli("compare", sweep, "--depth", "depth.json", "--json", "-", "--by", "train.seed") == 0
    by_seed = json.loads(capsys.readouterr().out)
    assert by_seed["by"] == ["train.seed"] and {g["n"] for g in by_seed["depth_groups"]} == {1, 2}


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"results": [{"supervision_st', "is not valid JSON (line 1)"),
        ('{"groups": [], "resolved": []}', "has no 'results' list"),  # a compare --json file
        ("[1, 2]", "has no 'results' list"),
        ('{"results": []}', "has an empty 'results' list"),
        ('{"results": [{"supervision_steps": 1}]}', "result 1 has no 'H_cycles'"),
        ('{"results": [7]}', "result 1 is not an object"),
    ],
)
def test_a_broken_or_foreign_file_is_one_sentence(
    sweep: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = sweep / "h32_seed1" / "depth.json"
    bad.write_text(content)
    assert cli("compare", sweep, "--depth", "depth.json") != 0
    err = capsys.readouterr().err
    assert message in err and str(bad) in err and "Traceback" not in err
    assert err.startswith("trm-tui: ") and err.count("\n") == 1  # one sentence, before any output


def test_bad_values_duplicates_and_no_file_anywhere(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = sweep / "h16_seed0" / "depth.json"
    rows = json.loads(file.read_text())["results"]
    for key, value, message in [
        ("accuracy", 1.5, "has accuracy 1.5, not a number between 0 and 1"),
        ("accuracy", True, "has accuracy True"),
        ("L_cycles", 0, "has L_cycles 0, not a whole number ≥ 1"),
        ("mean_depth", None, "has mean_depth None, not a number ≥ 0"),
    ]:
        file.write_text(json.dumps({"results": [{**rows[0], key: value}]}))
        with pytest.raises(UserError, match="result 1 " + message.replace("(", r"\(")):
            read_depth_file(file)
    file.write_text(json.dumps({"results": [rows[0], rows[0]]}))
    with pytest.raises(UserError, match="lists S1-H1-L1-t1 twice"):
        read_depth_file(file)
    assert cli("compare", sweep, "--depth", "nope.json") != 0
    err = capsys.readouterr().err
    assert "nope.json is not in any of the 7 runs" in err and "Traceback" not in err
    assert cli("compare", sweep, "--depth", "depth.json", "--metric", "params") == 1
    assert "leave out --metric and --log" in capsys.readouterr().err


def test_real_eval_json_files_go_through_depth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The files `trm-tui eval --json` really writes (two tiny ACT runs), so the format cannot drift."""
    from trm_core.profile import parse_profile
    from trm_core.training.trainer import Trainer

    from .test_act_cli import ACT_PROFILE

    root = tmp_path / "real"
    per_run = []
    for seed in (0, 1):
        run = root / f"act_seed{seed}"
        done = Trainer(parse_profile(ACT_PROFILE.replace("[train]", f"[train]\nseed = {seed}")), run).run()
        assert done.reason == "finished", done.message
        argv = ["eval", run, "--limit", "2", "--max-tokens", "4", "--output", tmp_path / f"s{seed}.jsonl"]
        assert (
            cli(*argv, "--supervision-steps", "1,2", "--halt-threshold", "1", "--json", run / "depth.json")
            == 0
        )
        per_run.append(json.loads((run / "depth.json").read_text())["results"])
    capsys.readouterr()
    assert cli("compare", root, "--depth", "depth.json", "--json", "-") == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["depth_groups"]
    assert [(r["key"], r["label"], r["n"]) for r in rows] == [({}, "S1-H1-L1-t1", 2), ({}, "S2-H1-L1-t1", 2)]
    for i, r in enumerate(rows):
        assert r["metrics"]["accuracy"]["values"] == [res[i]["accuracy"] for res in per_run]
        assert (
            r["metrics"]["mean_depth"]["mean"] == r["depth"]["supervision_steps"]
        )  # threshold 1: no halting
        assert r["metrics"]["accuracy_no_calculator"]["values"] == []
