"""ACT and test-time depth from the command line and in the REPL: flags, --show-depth, eval's
depth grid and --json, the depth report, the transcript's shading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trm_core.evaluation.depth import depth_report, token_regions
from trm_tui.__main__ import main

ACT_PROFILE = """name = "tiny-act"
[model]
hidden_size = 32
num_heads = 2
num_layers = 1
H_cycles = 1
L_cycles = 1
halting = "act"
[data]
source = "synthetic"
synthetic_size = 64
synthetic_max_steps = 1
val_size = 16
max_length = 160
bucket_multiple = 16
[train]
batch_size = 16
max_steps = 2
supervision_steps = 3
warmup_steps = 1
eval_every = 2
checkpoint_every = 2
log_every = 1
device = "cpu"
[generate]
max_tokens = 12
halt_threshold = 0.0
"""


@pytest.fixture(scope="module")
def act_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trm_core.profile import parse_profile
    from trm_core.training.trainer import Trainer

    run = tmp_path_factory.mktemp("act") / "run"
    done = Trainer(parse_profile(ACT_PROFILE), run).run()
    assert done.reason == "finished", done.message
    return run


def test_generate_show_depth_prints_a_line_of_depths_under_the_answer(
    act_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the profile's halt_threshold 0 halts every token after its first step
    assert main(["generate", str(act_run), "--prompt", "2+2?", "--show-depth", "--no-calculator"]) == 0
    out, err = capsys.readouterr()
    lines = out.rstrip("\n").split("\n")
    assert len(lines) % 2 == 0 and set("".join(lines[1::2])) <= {"1"}
    assert len(lines[1]) == len(lines[0])
    assert "mean depth 1.00 supervision steps · 2.0 net calls per token" in err
    # threshold 1 never halts early: every token thinks for all 3 steps
    assert main(["generate", str(act_run), "--prompt", "2+2?", "--show-depth", "--halt-threshold", "1"]) == 0
    out, err = capsys.readouterr()
    assert "mean depth 3.00" in err and "6.0 net calls per token" in err


def test_eval_runs_every_depth_combination_and_writes_the_json(
    act_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "depth.json"
    argv = ["eval", str(act_run), "--limit", "3", "--max-tokens", "8", "--output", str(tmp_path / "s.jsonl")]
    argv += ["--supervision-steps", "1,2", "--L-cycles", "1,3", "--halt-threshold", "1", "--json", str(out)]
    assert main(argv) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["supervision_steps"], r["L_cycles"]) for r in results] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    keys = {
        "supervision_steps", "H_cycles", "L_cycles", "halt_threshold", "accuracy",
        "accuracy_no_calculator", "mean_depth", "net_calls_per_token", "seconds", "by_steps",
    }  # fmt: skip
    for r in results:
        assert set(r) == keys
        assert r["halt_threshold"] == 1.0 and r["accuracy_no_calculator"] is None
        assert r["mean_depth"] == r["supervision_steps"]  # threshold 1: no early halting
        assert r["net_calls_per_token"] == r["mean_depth"] * r["H_cycles"] * (r["L_cycles"] + 1)
    printed = capsys.readouterr().out
    assert "accuracy against depth" in printed and "after ####" in printed
    assert len(list(tmp_path.glob("s-S*.jsonl"))) == 4


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--supervision-steps", "0"], "--supervision-steps must be between 1 and 256"),
        (["--halt-threshold", "2"], "--halt-threshold must be between 0 and 1"),
        (["--H-cycles", "x"], "--H-cycles takes a number or a comma list"),
    ],
)
def test_bad_depth_flags_are_one_sentence(
    act_run: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(act_run), "--limit", "1", *flags]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_token_regions_and_depth_report() -> None:
    text = "a <<2+2=4>>4 #### 42"
    offsets = list(range(len(text)))
    regions = token_regions(text, offsets)
    assert regions[text.index("<<")] == "calc" and regions[text.index(">>") + 1] == "calc"
    assert regions[text.index("42")] == "answer" and regions[0] == "other"
    samples = [
        {"generated": text, "correct": True, "token_depths": [(0, 1), (2, 3), (18, 2), (19, 2)]},
        {"generated": "x", "correct": False, "token_depths": [(0, 3)]},
    ]
    rep = depth_report(samples, 3)
    assert rep.region_depth == {"calc": 3.0, "answer": 2.0, "other": 2.0}
    assert rep.buckets == [
        {"depth": 2, "problems": 1, "accuracy": 1.0},
        {"depth": 3, "problems": 1, "accuracy": 0.0},
    ]
    assert rep.mean_depth == pytest.approx(11 / 5)


@pytest.mark.anyio
async def test_transcript_shades_tokens_by_depth() -> None:
    from textual.app import App

    from trm_tui.widgets.transcript import Transcript, depth_legend, depth_style

    class One(App):
        def compose(self):
            yield Transcript(id="t")

    async with One().run_test() as pilot:
        t = pilot.app.query_one(Transcript)
        t.append_pieces([("ab", "model", 1), ("c", "calculator"), ("d", "model", 3)])
        assert t.depth_spans == [(0, 2, 1), (3, 4, 3)]
        t.set_show_depth(True, 3)
        await pilot.pause()
        assert t.show_depth and t.steps == 3
    assert depth_style(1, 3) != depth_style(3, 3)
    assert depth_legend(3).plain == "depth  1  2  3 "


@pytest.mark.anyio
async def test_the_repl_depth_row_is_resolved_against_the_checkpoint_and_checked(
    act_run: Path, tmp_path: Path
) -> None:
    from textual.widgets import Input

    from tests.test_app import SIZE, make_app, wait_for
    from trm_core.generation.generator import Generator
    from trm_core.model.depth import Depth
    from trm_tui.panes.repl import ReplPane

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny-act.toml").write_text(ACT_PROFILE, encoding="utf-8")
    made: list[Generator] = []

    def factory(run_dir: Path, which: str) -> Generator:
        made.append(Generator.from_checkpoint(run_dir, which, device="cpu"))
        return made[-1]

    app = make_app((profiles, act_run.parent), generator=factory, profile="tiny-act")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(ReplPane)

        async def ask(steps: str, H: str) -> None:
            app.query_one("#repl-steps", Input).value = steps
            app.query_one("#repl-H", Input).value = H
            app.query_one("#repl-prompt", Input).value = "2+2"
            app.query_one("#repl-prompt", Input).focus()
            await pilot.press("enter")
            await pilot.pause(0.1)
            await wait_for(pilot, lambda: not pane.generating, timeout=60)

        await ask("1", "16")  # far beyond the trained H = 1; L and the threshold stay the checkpoint's
        assert made and made[0].depth == Depth(1, 16, 1, 0.0)
        await ask("", "")  # empty: back to the checkpoint's own depth
        assert made[0].depth == made[0].trained == Depth(3, 1, 1, 0.0)
        await ask("", "0")
        assert made[0].depth == made[0].trained and len(made) == 1
