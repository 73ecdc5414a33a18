"""The calculator must compute GSM8K annotations and refuse everything else, quickly and without raising."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trm_core.generation.calculator import (
    complete_result,
    format_result,
    result_prefix,
    result_spelled,
    safe_eval,
)
from trm_core.generation.textstream import calculation_fix


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("<<2+3*4=", 14),
        ("2+3*4", 14),
        ("48/2", 24),  # whole float -> int
        ("7/2", 3.5),
        ("1/3", 0.333333),
        ("(5+3)*2", 16),
        ("-(3)", -3),
        ("+4", 4),
        ("10//3", 3),
        ("10%3", 1),
        ("1,200*3", 3600),
        ("$5*2", 10),
        ("2**10", 1024),
        ("0.1+0.2", 0.3),
        ("  12 * 0.25 ", 3),
        ("1,234,567+1", 1234568),
    ],
)
def test_computes(expr: str, expected: int | float) -> None:
    result = safe_eval(expr)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "9**9**9",
        "10**100",
        "2**0.5",
        "0**-1",
        "().__class__",
        "(1).__class__",
        "x+1",
        "'a'*3",
        "[1,2]",
        "1,2",
        "lambda: 1",
        "1 if 1 else 2",
        "1<2",
        "True+1",
        "5/0",
        "5//0",
        "5%0",
        "1e400",
        "1e16",
        "99999999*99999999",
        "~1",
        "1<<3",
        "",
        "=",
        "1+",
        "1" * 300,
        "\x00",
    ],
)
def test_refuses(expr: str) -> None:
    assert safe_eval(expr) is None


def test_deep_nesting_is_refused_fast() -> None:
    for text in [
        "(" * 10_000 + "1" + ")" * 10_000,
        "-" * 10_000 + "1",
        "(" * 33 + "1" + ")" * 33,
        "-" * 150 + "1",
    ]:
        start = time.perf_counter()
        assert safe_eval(text) is None
        assert time.perf_counter() - start < 0.05
    assert safe_eval("(" * 32 + "1" + ")" * 32) == 1  # the limit itself is fine


def test_each_refusal_is_fast() -> None:
    for text in ["9**9**9", "__import__('os')", "().__class__", "2**64**64", "(9**64)**64"]:
        start = time.perf_counter()
        assert safe_eval(text) is None
        assert time.perf_counter() - start < 0.05


def test_format_result() -> None:
    assert format_result(14) == "14"
    assert format_result(2.5) == "2.5"
    assert format_result(-0.333333) == "-0.333333"
    assert format_result(0.000001) == "0.000001"


_fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(st.text(max_size=400))
def test_random_text_never_raises_and_is_fast(text: str) -> None:
    start = time.perf_counter()
    result = safe_eval(text)
    assert time.perf_counter() - start < 0.05
    assert result is None or isinstance(result, (int, float))


_ARITH = st.text(alphabet="0123456789.+-*/%() e", max_size=200)


@_fast
@given(_ARITH)
def test_arithmetic_alphabet_never_raises(text: str) -> None:
    start = time.perf_counter()
    result = safe_eval(text)
    assert time.perf_counter() - start < 0.05
    if result is not None:
        assert abs(result) <= 1e15
        assert not isinstance(result, bool)


_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_TOKEN = st.one_of(_IDENT, st.integers(0, 999).map(str), st.sampled_from(list("+-*/%()") + ["**", "//", "."]))


@_fast
@given(st.lists(_TOKEN, min_size=1, max_size=30), st.data())
def test_any_name_means_none(tokens: list[str], data: st.DataObject) -> None:
    # Force at least one identifier into the expression: no name is ever looked up or evaluated.
    name = data.draw(_IDENT)
    tokens.insert(data.draw(st.integers(0, len(tokens))), name)
    assert safe_eval(" ".join(tokens)) is None


@_fast
@given(st.integers(-10_000, 10_000), st.integers(-10_000, 10_000), st.sampled_from("+-*"))
def test_agrees_with_python_on_integers(a: int, b: int, op: str) -> None:
    expected = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert safe_eval(f"{a} {op} ({b})") == expected


# --------------------------------------------------------------------------- the calculator as a verifier


@pytest.mark.parametrize(
    ("text", "value", "prefix", "whole"),
    [
        ("9.00", 9, True, True),  # GSM8K keeps trailing zeros
        ("9.", 9, True, False),
        (".5", 0.5, True, True),  # and drops leading ones
        ("0.5", 0.5, True, True),
        ("", -3, True, False),  # the calculator's completion starts with the sign
        ("-", -3, True, False),
        ("-3", -3, True, True),
        ("3", -3, False, False),
        ("13", 12, False, False),
        ("0.3333", 1 / 3, True, False),
        ("0.3333331", 0.333333, False, False),
        ("9.0000000", 9, False, False),  # zeros without end are not a spelling
        ("00", 0, False, False),
        ("1,200", 1200, False, False),
    ],
)
def test_result_spellings(text: str, value: float, prefix: bool, whole: bool) -> None:
    assert result_prefix(text, value) is prefix
    assert result_spelled(text, value) is whole
    if prefix:
        assert result_spelled(text + complete_result(text, value), value)


@pytest.mark.parametrize(
    ("context", "proposed", "fix"),
    [
        ("so <<18*.5=", "9", None),
        ("so <<18*.5=9.0", "0>>", None),
        ("so <<18*.5=9.00", ">", None),
        ("so <<18*.5=9.00>", ">", None),
        ("so <<18*.5=9.00>", " ", ">"),  # half a closing bracket: the calculator closes it
        ("so <<18*.5=", "8", "9>>"),
        ("has 5-7=<<5-7=", "2", "-2>>"),  # found by eval: the sign was lost
        ("so <<18*.5=9", "0", ">>"),  # "90" is not 9
        ("so <<18*.5=", "", "9>>"),  # the model wanted to stop mid-result
        ("so <<1/2=", ".5>>", None),
        ("so <<1/2=", ".6>>", "0.5>>"),
        ("<<a+b=", "4", None),  # not computable: the model's text stands
        ("no calculation", "4", None),
        ("<<3*4=12>> done", "x", None),
    ],
)
def test_calculation_fix(context: str, proposed: str, fix: str | None) -> None:
    assert calculation_fix(context, proposed) == fix


def test_calculation_fix_write_mode_writes_every_result() -> None:
    assert calculation_fix("so <<18*.5=", "9", verify=False) == "9>>"
    assert calculation_fix("so <<1/2=", ".5>>", verify=False) == "0.5>>"
    assert calculation_fix("so <<1/2=.", "5", verify=False) is None  # written already (by a prompt)


def test_verifier_keeps_gsm8ks_own_spelling(gsm8k_dir) -> None:  # noqa: ANN001 (fixture path)
    """Fed GSM8K's annotations character by character, the verifier corrects none whose value is right
    (the calculator's own text differs from 823 of them: `9.00`, `.5`)."""
    import json
    import re

    kept = differ = total = 0
    for split in ("train", "test"):
        for line in (gsm8k_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            for expr, result in re.findall(r"<<([^<>=]*)=([^<>]*)>>", json.loads(line)["answer"]):
                value = safe_eval(expr)
                if value is None:
                    continue
                total += 1
                differ += format_result(value) != result
                context = f"<<{expr}="
                for ch in result + ">>":
                    if calculation_fix(context, ch) is not None:
                        break
                    context += ch
                else:
                    kept += 1
    assert total == 27_998 and differ == 823
    assert kept == total - 1  # the one: `<<3/4=3/4>>`, a result written as a fraction
