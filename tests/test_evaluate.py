"""Evaluation scores final numbers exactly: a fake generator with fixed texts gives a known accuracy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from trm_core.data.sources import Example, format_prompt, load_examples
from trm_core.evaluation.evaluate import STOP, evaluate, write_samples
from trm_core.evaluation.scoring import extract_answer

ROWS = [
    {"question": "Tom has 3 boxes of 4 apples. How many apples?", "answer": "3*4=<<3*4=12>>12\n#### 12"},
    {
        "question": "A book costs $1,200 and a pen $5. Total?",
        "answer": "1200+5=<<1200+5=1205>>1205\n#### 1,205",
    },
    {"question": "Half of 9?", "answer": "9/2=<<9/2=4.5>>4.5\n#### 4.5"},
]


class FakeGenerator:
    """Answers by question text; records every call so the test can check what evaluate asked for."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def generate_batch(self, prompts: list[str], **kw: Any) -> list[str]:
        self.calls.append((prompts, kw))
        return [self.answers[p] for p in prompts]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_accuracy_is_exact_on_a_handmade_jsonl(jsonl: Path) -> None:
    examples = load_examples(f"jsonl:{jsonl}", "test")
    fake = FakeGenerator(
        {
            format_prompt(ROWS[0]["question"]): " 3*4=<<3*4=12>>12\n#### 12.0",  # right, written 12.0
            format_prompt(ROWS[1]["question"]): " <<1200+5=1205>>\n#### $1205",  # right, $ and no comma
            format_prompt(ROWS[2]["question"]): " <<9/2=4>>\n#### 4",  # wrong
        }
    )
    seen: list[tuple[int, int, int]] = []
    result = evaluate(
        fake, examples, batch_size=2, max_tokens=64, calculator=True, progress=lambda *a: seen.append(a)
    )
    assert (result.correct, result.total) == (2, 3)
    assert result.accuracy == pytest.approx(2 / 3)
    assert [s["correct"] for s in result.samples] == [True, True, False]
    assert [s["expected"] for s in result.samples] == ["12", "1205", "4.5"]
    assert [s["predicted"] for s in result.samples] == ["12", "1205", "4"]
    assert result.samples[0]["question"] == ROWS[0]["question"]
    assert seen[-1] == (3, 3, 2) and len(seen) == 2
    # greedy, the requested limits, and the stop at a new question
    for prompts, kw in fake.calls:
        assert kw["temperature"] == 0.0 and kw["max_tokens"] == 64 and kw["calculator"] is True
        assert tuple(kw["stop"]) == STOP
        assert 1 <= len(prompts) <= 2


def test_missing_answer_marker_is_wrong(jsonl: Path) -> None:
    examples = load_examples(f"jsonl:{jsonl}", "test")
    fake = FakeGenerator({format_prompt(r["question"]): " I think 12" for r in ROWS})
    result = evaluate(fake, examples, batch_size=8)
    assert result.correct == 0 and result.total == 3
    assert all(s["predicted"] is None for s in result.samples)


def test_empty_examples() -> None:
    result = evaluate(FakeGenerator({}), [])
    assert (result.accuracy, result.correct, result.total) == (0.0, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 72", "72"),
        ("#### 1,234", "1234"),
        ("#### $5", "5"),
        ("#### 72.0", "72"),
        ("#### 72.50", "72.5"),
        ("#### -3", "-3"),
        ("steps #### 1 more #### 7\nQuestion: x", "7"),
        ("no marker 12", None),
        ("#### ", None),
    ],
)
def test_extract_normalisation(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_write_samples_round_trips(tmp_path: Path) -> None:
    samples = [{"question": "é?", "generated": "\ufffd x", "correct": False}]
    path = write_samples(tmp_path / "sub" / "eval.jsonl", samples)
    assert [json.loads(line) for line in path.read_text().splitlines()] == samples


def test_evaluate_with_a_real_tiny_generator(jsonl: Path) -> None:
    # The whole path with a real (random) model: runs, and agrees with its own one-by-one answers.
    from tests.test_generate import tiny_generator

    gen = tiny_generator("trm", 1)
    examples = load_examples(f"jsonl:{jsonl}", "test")
    result = evaluate(gen, examples, batch_size=2, max_tokens=6, calculator=True)
    assert result.total == 3 and 0 <= result.correct <= 3
    for ex, sample in zip(examples, result.samples, strict=True):
        one = gen.generate(format_prompt(ex.question), max_tokens=6, calculator=True, stop=STOP)
        assert sample["generated"] == one


def test_cli_eval_end_to_end(tmp_path: Path, jsonl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_generate import cli, make_checkpoint

    run = tmp_path / "runs" / "tiny"
    make_checkpoint(run, step=3)
    args = [
        "eval",
        run,
        "--data",
        f"jsonl:{jsonl}",
        "--batch-size",
        "2",
        "--max-tokens",
        "4",
        "--device",
        "cpu",
    ]
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "/ 3" in out
    rows = [json.loads(line) for line in (run / "eval" / "test-step3.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == [r["question"] for r in ROWS]
    assert {"question", "expected", "generated", "predicted", "correct"} <= set(rows[0])
    # a plain path as --data, an explicit --output and --limit
    assert (
        cli(*args[:3], str(jsonl), "--limit", "2", "--output", tmp_path / "o.jsonl", "--no-calculator") == 0
    )
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2
    assert "off" in capsys.readouterr().out
    # the default data source is the profile's (synthetic here)
    assert cli("eval", run, "--limit", "2", "--max-tokens", "2") == 0
    assert "synthetic test" in capsys.readouterr().out
    assert cli("eval", run, "--data", f"jsonl:{tmp_path / 'missing.jsonl'}") == 1
    assert capsys.readouterr().err.strip().startswith("trm-tui:")


def test_batches_have_one_size_and_every_problem_is_scored_once() -> None:
    from trm_core.evaluation.evaluate import default_batch_size, eval_batches

    order = list(range(11))
    batches = eval_batches(order, 4)  # 3 batches of 4 (not 4, 4, 3): one graph shape
    assert [len(b) for b in batches] == [4, 4, 4]
    assert [i for b in batches for i in dict.fromkeys(b)] == order
    assert eval_batches([], 4) == [] and eval_batches([5], 16) == [[5]]
    assert default_batch_size(torch.device("cuda")) == 256 and default_batch_size("cpu") == 16
    rows = [Example(f"q{i}", f"#### {i}") for i in range(5)]
    fake = FakeGenerator({format_prompt(f"q{i}"): f"#### {i}" for i in range(5)})
    result = evaluate(fake, rows, batch_size=2)
    assert (result.correct, result.total) == (5, 5)
    assert [len(p) for p, _ in fake.calls] == [2, 2, 2]
    assert evaluate(fake, rows).total == 5  # default batch size: 16 on a CPU generator


# --------------------------------------------------------------------------- reading the answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 3 4", None),  # two numbers: not 34
        ("#### 3,4", None),
        ("#### 1,2345", None),
        ("####\t18", "18"),
        ("#### .5", "0.5"),
        ("#### **18**", "18"),
        ("#### *18*", "18"),
        ("#### \u22127", "-7"),  # Unicode minus
        ("#### \u20137", "-7"),  # en dash used as a minus
        ("#### $-5", "-5"),
        ("#### -$5", "-5"),
        ("#### 18.", "18"),
        ("#### 18, so she pays 18", "18"),
        ("#### 1,234,567", "1234567"),
        ("#### -0", "0"),
        ("#### 5 apples", "5"),
        ("#### \x1b[31m5", None),
    ],
)
def test_extract_answer_tricky(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


REFERENCE = "She has 3*6=<<3*6=18>>18 eggs.\n#### 1,018"


@pytest.mark.parametrize(
    ("generated", "strict", "flexible", "ours"),
    [
        (" so <<3*6=18>>18\n#### 1,018", True, True, True),
        (" so <<3*6=18>>18\n#### 1018.", True, True, True),
        (" #### 1018.00", False, False, True),  # the harness compares strings: 1018.00 != 1018
        (" the answer is 1018", False, True, False),  # no ####: only flexible-extract finds it
        (" ####\t1018", False, True, True),  # strict-match wants exactly one space
        (" #### $1,018", False, True, True),  # strict's regex has no $: it finds nothing
        (" #### 1018\n#### 7", True, False, False),  # strict takes the first, flexible the last
        (" #### 10 18", False, False, False),  # strict reads "10", flexible "18", ours nothing
    ],
)
def test_harness_scores_follow_lm_evaluation_harness(
    generated: str, strict: bool, flexible: bool, ours: bool
) -> None:
    from trm_core.evaluation.scoring import harness_flexible, harness_match, harness_strict

    assert harness_match(harness_strict(generated), REFERENCE) is strict
    assert harness_match(harness_flexible(generated), REFERENCE) is flexible
    assert (extract_answer(generated) == extract_answer(REFERENCE)) is ours


def test_eval_reports_the_harness_scores(jsonl: Path) -> None:
    examples = load_examples(f"jsonl:{jsonl}", "test")
    fake = FakeGenerator(
        {
            format_prompt(ROWS[0]["question"]): " 12 apples\n#### 12",  # all three
            format_prompt(ROWS[1]["question"]): " it is 1205",  # flexible only
            format_prompt(ROWS[2]["question"]): " #### 4.50",  # ours only
        }
    )
    result = evaluate(fake, examples, batch_size=4)
    assert (result.correct, result.strict_correct, result.flexible_correct) == (2, 1, 2)
    assert result.strict_accuracy == pytest.approx(1 / 3) and result.flexible_accuracy == pytest.approx(2 / 3)
    assert [s["flexible_extract"] for s in result.samples] == ["12", "1205", "4.50"]


def test_evaluate_run_writes_a_record_the_runs_tab_reads(tmp_path: Path, trained_run: Path) -> None:
    """Issue 15.9 in the core: a real tiny run scored on its validation slice, with and without
    the calculator; the record and samples land in run/eval/, read back newest first."""
    from tests.cli_harness import copy_run
    from trm_core.evaluation.record import latest_eval, read_eval_records
    from trm_core.evaluation.run_eval import evaluate_held_out

    run = copy_run(trained_run, tmp_path / "run")
    seen: list[tuple[int, int]] = []
    record, samples = evaluate_held_out(
        run, split="val", limit=3, batch_size=2, progress=lambda d, t: seen.append((d, t))
    )
    assert record["n"] == 3 == len(samples) and seen[-1] == (6, 6)
    assert 0.0 <= record["accuracy"] <= 1.0 and record["accuracy_no_calculator"] is not None
    assert {"generated_no_calculator", "correct_no_calculator"} <= samples[0].keys()
    written = json.loads((run / "eval" / f"val-step{record['step']}.json").read_text())
    assert written == record and (run / record["samples"]).is_file()
    (run / "eval" / "broken.json").write_text("{not json")
    assert latest_eval(run) == record and read_eval_records(run) == [record]
