"""A depth study from the app: the Evaluation screen's H-cycles list, F7, RUN/depth.json written as
`trm-tui eval --json` writes it, and the curve shown; the same file `compare --depth` reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from .cli_harness import CORPUS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trm_core.profile import parse_profile
    from trm_core.training.trainer import Trainer

    run = tmp_path_factory.mktemp("study") / "tiny"
    done = Trainer(parse_profile((CORPUS / "profiles" / "good.toml").read_text()), run).run()
    assert done.reason == "finished", done.message
    return run


async def until(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.anyio
async def test_a_depth_study_on_a_checkpoint_writes_depth_json_and_shows_its_curve(tiny_run: Path) -> None:
    from textual.widgets import Input, Static

    from trm_core.experiments.depth_compare import depth_compare
    from trm_tui.app import TrmApp
    from trm_tui.backend import Backend
    from trm_tui.screens.evaluation import EvalScreen

    notes: list[str] = []
    app = TrmApp(profiles_dir=tiny_run.parent / "profiles", runs_dir=tiny_run.parent, backend=Backend())
    app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_evaluation(tiny_run)
        await until(lambda: isinstance(app.screen, EvalScreen))
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        await pilot.pause()
        screen.query_one("#eval-limit", Input).value = "3"
        screen.query_one("#eval-H", Input).value = "x"
        notes.clear()
        await pilot.press("f7")
        assert notes == ["H-cycles takes numbers separated by commas, got 'x'"] and not screen.running
        screen.query_one("#eval-H", Input).value = "1, 2"
        await pilot.press("f7")
        await until(lambda: screen.has_class("depth-shown"))
        await until(lambda: "accuracy %" in str(screen.query_one("#eval-curve", Static).render()))
        curve = str(screen.query_one("#eval-curve", Static).render())
        assert "H-cycles" in curve
        assert "H1 " in str(screen.query_one("#eval-summary", Static).render())
    rows = json.loads((tiny_run / "depth.json").read_text())["results"]
    assert [(r["H_cycles"], r["L_cycles"], r["halt_threshold"]) for r in rows] == [(1, 1, None), (2, 1, None)]
    assert rows[1]["net_calls_per_token"] == 2 * rows[0]["net_calls_per_token"]
    assert [g["label"] for g in depth_compare([tiny_run], "depth.json")["depth_groups"]] == [
        "S1-H1-L1",
        "S1-H2-L1",
    ]
