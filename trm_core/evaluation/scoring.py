"""Reading the final answer out of a GSM8K-style completion (the number after `####`)."""

from __future__ import annotations

import re

_ANSWER_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The final number after the last "####", normalised: "$1,234.00" -> "1234"; None if absent."""
    if "####" not in text:
        return None
    tail = text.rsplit("####", 1)[1].split("\n", 1)[0]
    tail = tail.replace(",", "").replace("$", "").replace(" ", "")
    m = _ANSWER_NUMBER.match(tail)
    if m is None:
        return None
    number = m.group(0)
    if "." in number:
        number = number.rstrip("0").rstrip(".")  # "72.0" and "72.00" -> "72", "2.50" -> "2.5"
    negative = number.startswith("-")
    whole, _, frac = number.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"  # "007" -> "7"
    number = whole + (f".{frac}" if frac else "")
    return f"-{number}" if negative and number != "0" else number
