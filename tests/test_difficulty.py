"""Direct-answer synthetic problems, harder held-out problems (`eval --synthetic-steps`) and
accuracy per number of steps (`by_steps`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from trm_core.data.sources import Example, load_examples
from trm_core.evaluation.difficulty import accuracy_by_steps, example_steps, parse_steps_range
from trm_core.profile import ProfileError, parse_profile
from trm_tui.__main__ import main


def digest(examples: list[Example]) -> str:
    return hashlib.sha256(json.dumps([[e.question, e.answer] for e in examples]).encode()).hexdigest()


def test_the_written_steps_format_is_unchanged() -> None:
    # sha256 of the same call on the code before `synthetic_answer` existed (main at 5fa1cc4)
    kw = {"synthetic_size": 500, "min_steps": 1, "max_steps": 4, "seed": 3}
    assert digest(load_examples("synthetic", "train", **kw)) == (
        "7a0436d8b48eb903b59079f1eee2ff2e9f66a70e2c2bbf1d0e9fcc9a6eb72865"
    )
    assert digest(load_examples("synthetic", "test", **kw)) == (
        "2d952b352de0ba13c0702eacaea09fe42ac25f0cc917df76a7ea3270bab05786"
    )


def test_direct_answers_are_the_same_problems_with_only_the_final_line() -> None:
    kw = {"synthetic_size": 300, "min_steps": 1, "max_steps": 4, "seed": 1}
    steps = load_examples("synthetic", "train", **kw)
    direct = load_examples("synthetic", "train", synthetic_answer="direct", **kw)
    assert [e.question for e in direct] == [e.question for e in steps]
    for s, d in zip(steps, direct, strict=True):
        assert d.answer == s.answer.split("\n")[-1] and d.answer.startswith("#### ")
        assert d.steps == s.steps == s.answer.count("<<")


def test_harder_test_problems_have_the_asked_steps_and_are_never_trained_on() -> None:
    kw = {"synthetic_size": 2000, "min_steps": 1, "max_steps": 2, "seed": 0, "synthetic_answer": "direct"}
    train = load_examples("synthetic", "train", **kw)
    hard = load_examples("synthetic", "test", synthetic_test_steps=(3, 4), **kw)
    easy = load_examples("synthetic", "test", synthetic_test_steps=(1, 2), **kw)
    assert {e.steps for e in hard} == {3, 4} and {e.steps for e in easy} == {1, 2}
    seen = {e.question for e in train}
    assert not seen & {e.question for e in hard + easy}
    one = {**kw, "synthetic_size": 5000, "max_steps": 1}  # one-step problems repeat: overlaps dropped
    assert len(load_examples("synthetic", "test", synthetic_test_steps=(1, 1), **one)) < 1000
    assert load_examples("synthetic", "test", synthetic_test_steps=(1, 2), **kw) == easy  # seeded


def test_direct_answers_are_refused_for_real_data() -> None:
    with pytest.raises(ProfileError, match="synthetic problems only"):
        parse_profile('[data]\nsource = "jsonl:x"\nsynthetic_answer = "direct"\n')
    with pytest.raises(ProfileError, match="synthetic_answer must be one of"):
        parse_profile('[data]\nsynthetic_answer = "short"\n')
    assert parse_profile('[data]\nsynthetic_answer = "direct"\n').data.synthetic_answer == "direct"


def test_steps_of_an_example_and_accuracy_by_steps() -> None:
    gsm = Example("q", "Natalia sold 48/2 = <<48/2=24>>24.\nShe sold 48+24 = <<48+24=72>>72.\n#### 72")
    assert example_steps(gsm) == 2
    assert example_steps(Example("q", "#### 7")) is None
    assert example_steps(Example("q", "#### 7", steps=3)) == 3
    samples = [{"steps": 3, "correct": True}, {"steps": 3, "correct": False}, {"steps": 1, "correct": True}]
    samples += [{"steps": 4, "correct": False}, {"steps": None, "correct": True}]
    assert accuracy_by_steps(samples) == {"1": 1.0, "3": 0.5, "4": 0.0}
    assert list(accuracy_by_steps(samples)) == ["1", "3", "4"]
    assert parse_steps_range("3-4", most=8) == (3, 4) and parse_steps_range("2", most=8) == (2, 2)
    for bad in ("4-3", "0-2", "a-b", "1-9", "1-2-3", ""):
        with pytest.raises(ValueError):
            parse_steps_range(bad, most=8)


DIRECT_PROFILE = """name = "tiny-direct"
[model]
hidden_size = 32
num_heads = 2
num_layers = 1
H_cycles = 1
L_cycles = 1
[data]
source = "synthetic"
synthetic_answer = "direct"
synthetic_size = 64
synthetic_max_steps = 2
val_size = 16
max_length = 160
bucket_multiple = 16
[train]
batch_size = 16
max_steps = 2
warmup_steps = 1
eval_every = 2
checkpoint_every = 2
log_every = 1
device = "cpu"
[generate]
max_tokens = 6
"""


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trm_core.training.trainer import Trainer

    run = tmp_path_factory.mktemp("direct") / "run"
    done = Trainer(parse_profile(DIRECT_PROFILE), run).run()
    assert done.reason == "finished", done.message
    return run


def test_eval_synthetic_steps_scores_harder_problems_by_steps(direct_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "hard.json"
    argv = ["eval", str(direct_run), "--limit", "12", "--synthetic-steps", "3-4", "--json", str(out)]
    assert main(argv) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert set(row["by_steps"]) == {"3", "4"}
    assert all(0.0 <= v <= 1.0 for v in row["by_steps"].values())
    samples = [json.loads(line) for line in (direct_run / "eval" / "test-step2-steps3-4.jsonl").open()]
    assert len(samples) == 12 and {s["steps"] for s in samples} == {3, 4}
    assert all(s["expected"] is not None for s in samples)
    assert not (direct_run / "eval" / "test-step2.json").exists()  # not the run's own test record


def test_plain_eval_and_depth_grids_carry_by_steps(direct_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "easy.json"
    assert main(["eval", str(direct_run), "--limit", "6", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert set(row["by_steps"]) <= {"1", "2"} and row["by_steps"]
    record = json.loads((direct_run / "eval" / "test-step2.json").read_text())
    assert record["by_steps"] == row["by_steps"]
    argv = ["eval", str(direct_run), "--limit", "4", "--H-cycles", "1,2", "--synthetic-steps", "3"]
    assert main([*argv, "--json", str(out), "--output", str(tmp_path / "s.jsonl")]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["H_cycles"] for r in rows] == [1, 2] and all(set(r["by_steps"]) == {"3"} for r in rows)


@pytest.mark.parametrize(
    "flags, phrase",
    [
        (["--synthetic-steps", "4-3"], "--synthetic-steps takes A-B"),
        (["--synthetic-steps", "3-4", "--split", "train"], "use split 'test'"),
        (["--synthetic-steps", "3-4", "--data", "jsonl:x"], "cannot be scored on data"),
    ],
)
def test_bad_synthetic_steps_are_one_sentence(
    direct_run: Path, flags: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(direct_run), "--limit", "1", *flags]) != 0
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err
