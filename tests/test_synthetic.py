"""Synthetic GSM-style problems: deterministic, varied, and arithmetically right."""

from __future__ import annotations

import random
import re

import pytest

from trm_core.data.synthetic import generate_examples, generate_problem
from trm_core.evaluation.scoring import extract_answer

CALC = re.compile(r"<<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)")


def check(expr_a: str, op: str, expr_b: str) -> int:
    """A tiny exact integer calculator for `a op b`."""
    a, b = int(expr_a), int(expr_b)
    if op == "/":
        assert a % b == 0, f"{a}/{b} is not exact"
        return a // b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def test_deterministic_per_seed():
    assert generate_examples(50, seed=7) == generate_examples(50, seed=7)
    assert generate_examples(50, seed=7) != generate_examples(50, seed=8)


def test_mostly_unique():
    examples = generate_examples(2000, seed=0)
    assert len({ex.question for ex in examples}) >= 0.95 * len(examples)
    one_step = generate_examples(2000, seed=0, min_steps=1, max_steps=1)
    assert len({ex.question for ex in one_step}) >= 0.95 * len(one_step)


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_answers_are_correct(steps):
    rng = random.Random(steps)
    for _ in range(300):
        ex = generate_problem(rng, steps)
        lines = ex.answer.split("\n")
        assert lines[-1].startswith("#### ")
        calcs = [CALC.search(line) for line in lines[:-1]]
        assert len(calcs) == steps and all(calcs), ex.answer
        results = []
        for m in calcs:
            a, op, b, res, shown = m.groups()
            assert check(a, op, b) == int(res) == int(shown), ex.answer
            assert int(res) > 0
            results.append(int(res))
        assert extract_answer(ex.answer) == str(results[-1])
        # Every operand the answer uses comes from the question or an earlier step.
        known = set(re.findall(r"\d+", ex.question)) | {str(r) for r in results}
        for m in calcs:
            assert m.group(1) in known and m.group(3) in known, (ex.question, ex.answer)
        if steps == 1:
            assert results[-1] < 100  # one-step problems stay small and learnable


def test_step_range_and_style():
    examples = generate_examples(400, seed=3, min_steps=2, max_steps=3)
    counts = {ex.answer.count("<<") for ex in examples}
    assert counts == {2, 3}
    assert all(ex.question.endswith("?") and "  " not in ex.question for ex in examples)
    assert any("$" in ex.question for ex in examples) and any("$" not in ex.question for ex in examples)
    with pytest.raises(ValueError):
        generate_examples(1, seed=0, min_steps=3, max_steps=2)
