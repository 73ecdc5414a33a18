"""A safe arithmetic evaluator for calculator-assisted decoding (`<<48/2=` → `24`).

The model writes the expression; we compute the result. Nothing here may ever run code,
hang or blow up memory on whatever text the model (or a user) produces, so we parse with
`ast` and walk a whitelist of nodes: numbers, + - * / // %, unary + -, and `**` with a small
integer exponent and a bounded result. Everything else — names, calls, attributes, strings,
subscripts, comparisons, tuples — is "not computable" and returns None.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "MAX_MAGNITUDE",
    "complete_result",
    "format_result",
    "result_prefix",
    "result_spelled",
    "safe_eval",
]

MAX_LENGTH = 200  # characters of expression (GSM8K annotations are far shorter)
MAX_DEPTH = 32  # AST nesting (and parenthesis nesting, checked before parsing)
MAX_MAGNITUDE = 1e15  # any intermediate result beyond this is refused, not computed
MAX_EXPONENT = 64  # `**` only with an integer exponent in [-64, 64] and a bounded result

Number = int | float

_BINARY: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[Number], Number]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}

# "1,200" is a thousands separator in GSM8K; a bare "1,2" is left alone (it parses as a tuple → None).
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A character whitelist before parsing: cheap, and it keeps ast.parse away from strings, names,
# escapes and warnings altogether ("e" stays for 1e3; a lone "e" parses as a Name and is refused).
_ALLOWED = frozenset("0123456789.+-*/%() \teE")


class _Refuse(Exception):
    """Internal: the expression is not computable safely."""


def _check(x: Number) -> Number:
    if isinstance(x, float) and not math.isfinite(x):
        raise _Refuse
    if abs(x) > MAX_MAGNITUDE:
        raise _Refuse
    return x


def _power(base: Number, exp: Number) -> Number:
    # Only integer exponents: fractional powers give complex numbers or irrationals the
    # annotations never need, and a bound computed *before* the power keeps 9**9**9 instant.
    if isinstance(exp, float):
        if not exp.is_integer():
            raise _Refuse
        exp = int(exp)
    if abs(exp) > MAX_EXPONENT:
        raise _Refuse
    if base == 0 and exp < 0:
        raise _Refuse
    if abs(base) > 1 and abs(exp) * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise _Refuse
    return base**exp


def _eval(node: ast.AST, depth: int) -> Number:
    # Depth is checked before recursing, so no input can reach Python's recursion limit here.
    if depth > MAX_DEPTH:
        raise _Refuse
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Refuse
        return _check(v)
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _check(_power(left, right))
        op = _BINARY.get(type(node.op))
        if op is None:
            raise _Refuse  # bit ops, @, shifts: not arithmetic a word problem needs
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise _Refuse
        return _check(op(left, right))
    if isinstance(node, ast.UnaryOp):
        op = _UNARY.get(type(node.op))
        if op is None:
            raise _Refuse  # `not`, `~`
        return _check(op(_eval(node.operand, depth + 1)))
    raise _Refuse  # Name, Call, Attribute, Subscript, Tuple, Lambda, Compare, ...


def _max_paren_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch == "(":
            depth += 1
            best = max(best, depth)
        elif ch == ")":
            depth -= 1
    return best


def normalize(expr: str) -> str:
    """Strip what GSM8K annotations wrap around arithmetic: `<<`, a trailing `=`, `$`, thousands commas."""
    text = expr.strip()
    if text.startswith("<<"):
        text = text[2:]
    if text.endswith("="):
        text = text[:-1]
    text = text.replace("$", "")
    return _THOUSANDS.sub("", text).strip()


def safe_eval(expr: str) -> int | float | None:
    """The value of an arithmetic expression, or None when it is not computable safely.

    Whole results are ints (`6/3` → 2); others are rounded to 6 decimals. Never raises.
    """
    if not isinstance(expr, str) or len(expr) > MAX_LENGTH + 4:  # +4: room for "<<" and "="
        return None
    text = normalize(expr)
    if not text or len(text) > MAX_LENGTH or not _ALLOWED.issuperset(text):
        return None
    if _max_paren_depth(text) > MAX_DEPTH:
        return None
    try:
        tree = ast.parse(text, mode="eval")
        value = _eval(tree.body, 0)
    except (_Refuse, SyntaxError, ValueError, TypeError, OverflowError, ZeroDivisionError):
        return None
    except (RecursionError, MemoryError):  # belt and braces: the length/depth checks should prevent these
        return None
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        value = round(value, 6)
        return int(value) if value.is_integer() else value
    return value


def format_result(value: int | float) -> str:
    """The text the calculator writes after `=`: `14`, `2.5`, `-0.333333` (never `1e-05`)."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


# --------------------------------------------------------------------------- the model's spelling of a result

# GSM8K writes results its own way: `<<18*.5=9.00>>` keeps trailing zeros, `<<1/2=.5>>` drops the
# leading zero (823 of its 27,998 computable annotations differ from `format_result`'s text). As a
# verifier the calculator accepts any such spelling of the right value and corrects only what is wrong.
_SPELLING = re.compile(r"(-?)(\d*)(\.?)(\d*)")


def _canonical(value: int | float) -> tuple[str, str, str]:
    text = format_result(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    return sign, whole, frac


def result_prefix(text: str, value: int | float) -> bool:
    """Whether `text` can still grow into a spelling of `value` ("9", "9.0", "9.00"; ".5", "0.5")."""
    m = _SPELLING.fullmatch(text)
    if m is None:
        return False
    sign, whole, dot, frac = m.groups()
    c_sign, c_whole, c_frac = _canonical(value)
    if sign != c_sign and (sign or whole or dot):
        return False
    if not dot:
        return c_whole.startswith(whole)
    if whole != c_whole and not (whole == "" and c_whole == "0"):
        return False
    n = len(c_frac)  # trailing zeros are a spelling, but not endless ones (max 6 decimals in all)
    return c_frac.startswith(frac[:n]) and not frac[n:].strip("0") and len(frac) <= max(n, 6)


def result_spelled(text: str, value: int | float) -> bool:
    """Whether `text` is a whole spelling of `value` (not "9." and not "0.3" for 0.333333)."""
    if not text or not result_prefix(text, value):
        return False
    _, whole, dot, frac = _SPELLING.fullmatch(text).groups()  # type: ignore[union-attr]
    c_whole, c_frac = _canonical(value)[1:]
    if not dot:
        return whole == c_whole and not c_frac
    return bool(frac) and len(frac) >= len(c_frac)


def complete_result(text: str, value: int | float) -> str:
    """What to append to `text` (a `result_prefix` of `value`) to spell `value` whole."""
    sign, whole, dot, frac = _SPELLING.fullmatch(text).groups()  # type: ignore[union-attr]
    c_sign, c_whole, c_frac = _canonical(value)
    if not dot:
        return c_sign[len(sign) :] + c_whole[len(whole) :] + (f".{c_frac}" if c_frac else "")
    if len(frac) < len(c_frac):
        return c_frac[len(frac) :]
    return "" if frac else "0"
