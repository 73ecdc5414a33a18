"""`trm-tui compare --depth NAME --paired` and `--plot`: per-seed differences against the trained
depth with a t-interval (checked against numbers worked by hand), per difficulty, the messages
when seeds do not pair up, and the plot of accuracy against depth."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from trm_core.errors import UserError
from trm_core.experiments.depth_compare import depth_compare
from trm_tui.__main__ import main

from .test_depth_compare import make_run

# accuracy at H-cycles 1 (the trained depth of good.toml: S1-H1-L1), 2 and 4, per seed;
# by_steps: (1-step, 3-step) accuracies
FIXED = {1: [0.50, 0.60, 0.40], 2: [0.30, 0.50, 0.20], 4: [0.10, 0.10, 0.10]}
SAMPLED = {1: [0.20, 0.50, 0.35], 2: [0.40, 0.60, 0.45], 4: [0.50, 0.70, 0.60]}
STEPS = {1: [(0.6, 0.2), (0.7, 0.3), (0.5, 0.2)], 2: [(0.6, 0.4), (0.8, 0.4), (0.6, 0.3)]}


def row(H: int, acc: float, by_steps: dict[str, float] | None = None) -> dict[str, Any]:
    out = {
        "supervision_steps": 1, "H_cycles": H, "L_cycles": 1, "halt_threshold": None, "accuracy": acc,
        "accuracy_no_calculator": None, "mean_depth": 1.0, "net_calls_per_token": 2.0 * H, "seconds": 1.0,
    }  # fmt: skip
    return out if by_steps is None else {**out, "by_steps": by_steps}


def write(run: Path, rows: list[dict[str, Any]]) -> None:
    (run / "depth.json").write_text(json.dumps({"results": rows}))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Two recipes (hidden 16 'fixed', hidden 32 'sampled') × 3 seeds; the sampled one has by_steps."""
    root = tmp_path / "study"
    for seed in range(3):
        write(make_run(root / f"fixed_seed{seed}", 16, seed), [row(H, a[seed]) for H, a in FIXED.items()])
        rows = [
            row(H, a[seed], {"1": STEPS[H][seed][0], "3": STEPS[H][seed][1]} if H in STEPS else None)
            for H, a in SAMPLED.items()
        ]
        write(make_run(root / f"sampled_seed{seed}", 32, seed), rows)
    return root


def half(diffs: list[float]) -> float:
    """The 95 % t-interval half-width of the mean of `diffs`, worked out without the code under test."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return {2: 12.706, 3: 4.303}[n] * sd / math.sqrt(n)


def test_paired_differences_against_the_trained_depth_are_worked_by_hand(study: Path) -> None:
    result = depth_compare([study], "depth.json", paired=True)
    got = {(r["key"]["model.hidden_size"], r["label"]): r for r in result["paired"]}
    assert set(got) == {(16, "S1-H2-L1"), (16, "S1-H4-L1"), (32, "S1-H2-L1"), (32, "S1-H4-L1")}
    assert {r["reference"] for r in result["paired"]} == {"S1-H1-L1"}  # good.toml's S1·H1·L1
    # fixed, H2: 0.3-0.5, 0.5-0.6, 0.2-0.4 = -0.2, -0.1, -0.2: mean -1/6, sd 0.057735
    d = got[(16, "S1-H2-L1")]["diff"]
    assert d["mean"] == pytest.approx(-1 / 6)
    assert d["std"] == pytest.approx(0.0577350, abs=1e-6)
    assert d["ci95"][1] - d["mean"] == pytest.approx(4.303 * 0.0577350 / math.sqrt(3), abs=1e-6)
    assert got[(16, "S1-H2-L1")]["resolved"] == "lower"  # [-0.310, -0.023]: below 0
    # sampled, H4: +0.3, +0.2, +0.25: mean 0.25, sd 0.05, half 4.303·0.05/√3 = 0.124217
    d = got[(32, "S1-H4-L1")]["diff"]
    assert d["mean"] == pytest.approx(0.25)
    assert d["ci95"] == pytest.approx([0.25 - 0.124217, 0.25 + 0.124217], abs=1e-6)
    assert got[(32, "S1-H4-L1")]["resolved"] == "higher"
    # sampled, H2: +0.2, +0.1, +0.1 -> mean 0.1333, half 0.1434: the interval straddles 0
    assert got[(32, "S1-H2-L1")]["diff"]["ci95"][0] < 0 < got[(32, "S1-H2-L1")]["diff"]["ci95"][1]
    assert got[(32, "S1-H2-L1")]["resolved"] is None
    # per difficulty: 3-step 0.4-0.2, 0.4-0.3, 0.3-0.2 = 0.2, 0.1, 0.1; 1-step 0, 0.1, 0.1
    steps = got[(32, "S1-H2-L1")]["by_steps"]
    assert steps["3"]["mean"] == pytest.approx(0.4 / 3)
    assert steps["3"]["ci95"][1] - steps["3"]["mean"] == pytest.approx(half([0.2, 0.1, 0.1]))
    assert steps["1"]["mean"] == pytest.approx(0.2 / 3)
    assert got[(32, "S1-H4-L1")]["by_steps"] == {}  # the H4 rows have no by_steps
    assert result["paired_notes"] == []
    assert not [r for r in result["paired"] if r["label"] == "S1-H1-L1"]  # the reference is not paired


def test_a_named_reference_and_what_cannot_be_paired(study: Path) -> None:
    write(study / "fixed_seed2", [row(1, 0.4), row(4, 0.1)])  # seed 2 lacks H2
    write(study / "sampled_seed1", [row(2, 0.6), row(4, 0.7)])  # seed 1 lacks H1
    result = depth_compare([study], "depth.json", paired=True, reference="S1-H4-L1")
    got = {(r["key"]["model.hidden_size"], r["label"]): r for r in result["paired"]}
    assert got[(16, "S1-H1-L1")]["diff"]["mean"] == pytest.approx((0.4 + 0.5 + 0.3) / 3)
    assert got[(16, "S1-H2-L1")]["seeds"] == [0, 1]
    assert got[(16, "S1-H2-L1")]["diff"]["mean"] == pytest.approx((0.2 + 0.4) / 2)
    assert got[(32, "S1-H1-L1")]["seeds"] == [0, 2]
    assert result["paired_notes"] == [
        "hidden_size=16 · S1-H2-L1: seed 2 not evaluated there, left out of the pair.",
        "hidden_size=32 · S1-H1-L1: seed 1 not evaluated there, left out of the pair.",
    ]
    result = depth_compare([study], "depth.json", paired=True)  # against H1, which seed 1 lacks
    assert (
        "hidden_size=32: seed 1 not evaluated at the reference S1-H1-L1, left out of every pair."
        in (result["paired_notes"])
    )


def test_seeds_that_do_not_pair_up_are_one_sentence(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(make_run(study / "fixed_again_seed0", 16, 0), [row(1, 0.5), row(2, 0.4)])
    with pytest.raises(UserError, match="two runs with train.seed 0, so its seeds do not pair up"):
        depth_compare([study], "depth.json", paired=True)
    assert main(["compare", str(study), "--depth", "depth.json", "--paired"]) == 1
    assert "do not pair up" in capsys.readouterr().err
    for argv, phrase in (
        (["--depth", "depth.json", "--reference", "S1-H1-L1"], "add --paired"),
        (["--paired"], "use them with --depth NAME"),
        (["--depth", "depth.json", "--paired", "--reference", "H4"], "--reference takes a depth like"),
    ):
        assert main(["compare", str(study / "fixed_seed0"), *argv]) != 0
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err


def test_paired_markdown_and_the_plot(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(study), "--depth", "depth.json", "--paired", "--markdown", "--plot"]) == 0
    out = capsys.readouterr().out
    assert "| group | depth | vs | n | Δ accuracy | Δ 1-step | Δ 3-step |" in out
    assert "| hidden_size=32 | S1-H4-L1 | S1-H1-L1 | 3 | **+25.0 ± 12.4 pts** | — | — |" in out
    assert "| hidden_size=16 | S1-H2-L1 | S1-H1-L1 | 3 | **-16.7 ± 14.3 pts** | — | — |" in out
    assert "± = 95% t-interval half-width of the mean paired difference" in out
    plots = out.split("accuracy % (")
    assert [p.split(")")[0] for p in plots[1:]] == ["all problems", "1-step problems", "3-step problems"]
    for p in plots[1:]:
        assert "H-cycles" in p and max(len(line) for line in p.splitlines()) <= 80
    assert "hidden_size=16" in plots[1] and "hidden_size=32" in plots[1]
    assert "hidden_size=16" not in plots[3]  # only the sampled recipe measured 3-step problems


def test_depth_plot_picks_its_axis() -> None:
    from trm_tui.depth_plot import depth_axis

    def r(S: int, H: int, L: int, t: float | None) -> dict[str, Any]:
        return {"depth": {"supervision_steps": S, "H_cycles": H, "L_cycles": L, "halt_threshold": t}}

    assert depth_axis([r(1, 1, 2, None), r(1, 4, 2, None)]) == ("H_cycles", "H-cycles")
    assert depth_axis([r(2, 1, 2, 0.3), r(2, 1, 2, 0.9)])[0] == "mean_depth"
    assert depth_axis([r(1, 1, 2, None), r(2, 4, 2, None)])[0] == "net_calls_per_token"


def test_plus_minus_is_the_95_percent_half_width_everywhere_and_identical_values_are_equal() -> None:
    from trm_core.experiments.compare import summarize
    from trm_core.experiments.depth_report import diff_cell
    from trm_core.experiments.report import cell, metric_verdicts

    s = summarize([0.10, 0.12, 0.11])  # sd 0.01; half-width 4.303 · 0.01 / √3 = 0.0248
    assert cell("exact_calculator", s) == "11.0% ± 2.5%"
    assert cell("exact_calculator", summarize([0.0, 0.336])) == "16.8% [0.0%, 100.0%]"  # not ± 185.5%
    assert cell("wall_seconds", summarize([1.0, 2.0, 1.5])) == "1.5 ± 1.2"
    assert cell("exact_calculator", summarize([0.4])) == "40.0%"  # one run: no interval
    assert diff_cell(summarize([0.3, 0.9])) == "+60.0 [-100.0, +100.0] pts"
    same = summarize([460_000.0, 460_000.0])
    result = {
        "groups": [{"key": {"model.arch": a}, "metrics": {"params": same}} for a in ("trm", "transformer")],
        "metrics": {"params": {"label": "params", "better": "lower"}},
        "resolved": [],
    }
    assert metric_verdicts(result) == ["params: equal in every group (0.46M)."]


@pytest.mark.anyio
async def test_the_compare_view_has_a_depth_mode(study: Path) -> None:
    import asyncio

    from textual.app import App
    from textual.widgets import DataTable, Static

    from trm_tui.screens.compare import CompareScreen

    for run in study.iterdir():  # the app's depth studies are RUN/depth.json, as here
        assert (run / "depth.json").is_file()
        shutil.copy(run / "depth.json", run / "depth-hard.json")  # and a sweep's, named by [[eval.depth]]
    runs = sorted(study.iterdir())
    screen = CompareScreen(runs)

    class One(App[None]):
        def on_mount(self) -> None:
            self.push_screen(screen)

    async def until(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.05)):
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out")

    async with One().run_test(size=(80, 24)) as pilot:
        await until(lambda: screen.result is not None)
        await pilot.press("f6")
        await until(lambda: screen.depth is not None)
        await pilot.pause()
        table = screen.query_one("#compare-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0] == ["hidden_size=16", "S1-H1-L1", "3", "50.0% ± 24.8%", "reference"]
        assert rows[2][1:] == ["S1-H4-L1", "3", "10.0% ± 0.0%", "-40.0 ± 24.8 pts"]
        assert rows[5][1:] == ["S1-H4-L1", "3", "60.0% ± 24.8%", "+25.0 ± 12.4 pts"]
        title = str(screen.query_one("#compare-title", Static).render())
        assert title.startswith("depth-hard.json · ± 95% CI") and "F6 next" in title and len(title) <= 80
        await until(lambda: "accuracy %" in str(screen.query_one("#compare-plot", Static).render()))
        plot = str(screen.query_one("#compare-plot", Static).render())
        assert "hidden_size=16" in plot and "H-cycles" in plot
        screen.depth = None
        await pilot.press("f6")  # the next study the runs hold (a sweep's [[eval.depth]] names them)
        await until(lambda: screen.depth is not None)
        title = str(screen.query_one("#compare-title", Static).render())
        assert title.startswith("depth.json") and "F6 next" not in title
        await pilot.press("f6")  # back to the runs' metrics
        await until(lambda: "best val" in [str(c.label) for c in table.columns.values()])
