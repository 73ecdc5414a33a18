"""Seeded GSM-style word problems from our own templates (never derived from any test set).

A problem follows one quantity (a person's marbles, cookies, dollars, ...) through `steps`
arithmetic steps. Each step is one sentence of the question and one line of the answer with a
GSM8K calculator annotation, e.g. "Mia has 12+5=<<12+5=17>>17 shells now.", and the answer ends
in "#### N". One-step problems stay regular with numbers below 100 so a tiny model can learn them.

Two answer formats (`data.synthetic_answer`): "steps" (the written steps above, GSM8K's form) and
"direct" (only "#### N": the model must do every step in its latent state, so test-time depth has
work to do). Both draw the same problems from the same seed; only the answer text differs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from trm_core.data.example import Example

ANSWER_FORMATS = ("steps", "direct")
SYNTHETIC_TEST_SIZE = 1000
SYNTHETIC_TEST_SEED_OFFSET = 1_000_003  # the synthetic "test" split draws from its own seed

NAMES_SHE = [
    "Mia", "Ava", "Lena", "Sofia", "Nora", "Priya", "Amara", "Hana", "Chloe", "Rosa", "Ines", "Yara",
    "Greta", "Maya", "Zoe", "Leila", "Tessa", "Olga", "Mei", "Fatima", "Ruth", "Ivy", "Keiko", "Lucia",
]  # fmt: skip
NAMES_HE = [
    "Leo", "Omar", "Ravi", "Tomas", "Ben", "Kenji", "Diego", "Sam", "Felix", "Hugo", "Arjun", "Noah",
    "Mateo", "Ezra", "Kofi", "Luca", "Ivan", "Jonah", "Malik", "Theo", "Oscar", "Pablo", "Yusuf", "Max",
]  # fmt: skip
FRIENDS = [
    "a friend",
    "a neighbor",
    "a classmate",
    "a cousin",
    "a teammate",
    "a coworker",
    "a brother",
    "a sister",
]


@dataclass(frozen=True)
class _Family:
    """One kind of story: what is counted and the phrases for each operation on it."""

    nouns: tuple[str, ...]
    start: tuple[str, ...]  # "{N} has {a} {noun}."
    start_product: tuple[str, ...]  # "{N} has {a} boxes with {b} {noun} in each box."
    add: tuple[str, ...]
    sub: tuple[str, ...]
    mul: tuple[str, ...]
    div: tuple[str, ...]
    question: tuple[str, ...]
    money: bool = False


FAMILIES = [
    _Family(
        nouns=(
            "marbles",
            "stickers",
            "stamps",
            "shells",
            "cards",
            "pencils",
            "beads",
            "buttons",
            "coins",
            "crayons",
            "rocks",
            "books",
            "toy cars",
            "balloons",
            "ribbons",
            "postcards",
            "feathers",
        ),  # fmt: skip
        start=("{N} has {a} {noun}.", "{N} owns {a} {noun}.", "{N} collects {a} {noun}."),
        start_product=(
            "{N} has {a} boxes with {b} {noun} in each box.",
            "{N} buys {a} packs of {noun} with {b} {noun} in each pack.",
            "{N} fills {a} bags with {b} {noun} each.",
        ),
        add=(
            "{P} buys {b} more {noun}.",
            "{P} finds {b} more {noun}.",
            "{F} gives {o} {b} more {noun}.",
            "{P} wins {b} more {noun} at a fair.",
        ),
        sub=(
            "{P} gives {b} {noun} to {F}.",
            "{P} loses {b} {noun}.",
            "{P} sells {b} {noun}.",
            "{P} uses {b} {noun} for a school project.",
        ),
        mul=(
            "Later, {p} has {k} times as many {noun} as before.",
            "By the end of the year, {poss} {noun} grow to {k} times as many.",
        ),
        div=(
            "{P} splits {poss} {noun} into {k} equal piles and keeps one pile.",
            "{P} shares {poss} {noun} equally among {k} boxes and keeps one box.",
        ),
        question=("How many {noun} does {N} have now?", "How many {noun} does {N} have at the end?"),
    ),
    _Family(
        nouns=(
            "cookies",
            "muffins",
            "cupcakes",
            "rolls",
            "pies",
            "tarts",
            "bagels",
            "pretzels",
            "biscuits",
            "dumplings",
        ),
        start=(
            "{N} bakes {a} {noun}.",
            "{N} makes {a} {noun} for a bake sale.",
            "{N} has {a} {noun} on a tray.",
        ),
        start_product=(
            "{N} bakes {a} trays of {noun} with {b} {noun} on each tray.",
            "{N} makes {a} batches of {noun} with {b} {noun} in each batch.",
        ),
        add=(
            "{P} bakes {b} more {noun}.",
            "{F} brings {o} {b} more {noun}.",
            "{P} makes another {b} {noun}.",
        ),
        sub=("{P} sells {b} {noun}.", "{P} eats {b} of the {noun}.", "{P} gives {b} {noun} to {F}."),
        mul=("For a party, {p} keeps baking until {p} has {k} times as many {noun}.",),
        div=("{P} packs the {noun} equally into {k} boxes and keeps one box.",),
        question=("How many {noun} does {N} have now?", "How many {noun} are left for {N}?"),
    ),
    _Family(
        nouns=("dollars",),
        start=("{N} has ${a}.", "{N} saves ${a}.", "{N} has ${a} in a piggy bank."),
        start_product=(
            "{N} earns ${b} an hour and works {a} hours.",
            "{N} sells {a} bracelets for ${b} each.",
            "{N} walks {a} dogs and gets ${b} for each dog.",
        ),
        add=("{P} earns ${b} more.", "{F} gives {o} ${b}.", "{P} finds ${b} in a coat pocket."),
        sub=("{P} spends ${b} on a book.", "{P} spends ${b} on lunch.", "{P} pays ${b} for a ticket."),
        mul=("After a year of saving, {p} has {k} times as much money as before.",),
        div=("{P} splits {poss} money equally among {k} envelopes and keeps one envelope.",),
        question=("How much money does {N} have now?", "How many dollars does {N} have at the end?"),
        money=True,
    ),
]

# Names are drawn from per-gender lists so pronouns always agree.
_PRONOUNS = {"she": ("She", "she", "her", "her"), "he": ("He", "he", "his", "him")}


def _fmt(money: bool, x: int) -> str:
    return f"${x}" if money else str(x)


def _step_line(money: bool, a: int, op: str, b: int, r: int, tail: str) -> str:
    """A GSM8K-style line: "<lead> 12*3=<<12*3=36>>36 <tail>." (money: "$12*3=$<<12*3=36>>36")."""
    shown = f"{_fmt(money, a)}{op}{b if op in '*/' else _fmt(money, b)}"
    return f"{shown}={'$' if money else ''}<<{a}{op}{b}={r}>>{r}{tail}"


def _choose_op(rng: random.Random, x: int, cap: int) -> tuple[str, int, int] | None:
    """An operation on x whose exact integer result stays in [1, cap]: (op, operand, result)."""
    options: list[tuple[str, int, int]] = []
    if x + 2 <= cap:  # operands of at least 2 keep every noun plural
        b = rng.randint(2, min(40, cap - x))
        options.append(("+", b, x + b))
    if x >= 3:
        b = rng.randint(2, min(40, x - 1))
        options.append(("-", b, x - b))
    if 2 * x <= cap:
        k = rng.randint(2, min(5, cap // x))
        options.append(("*", k, x * k))
    divisors = [k for k in range(2, 10) if x % k == 0 and x // k >= 2]
    if divisors:
        k = rng.choice(divisors)
        options.append(("/", k, x // k))
    return rng.choice(options) if options else None


def generate_problem(rng: random.Random, steps: int, answer: str = "steps") -> Example:
    """One word problem with exactly `steps` calculator steps, drawn from `rng`; `answer` "direct"
    keeps only the final "#### N" line (the same draws from `rng`, so the same problem)."""
    if answer not in ANSWER_FORMATS:
        raise ValueError(f"answer must be one of {ANSWER_FORMATS}, got {answer!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fam = rng.choice(FAMILIES)
    gender = rng.choice(("she", "he"))
    name = rng.choice(NAMES_SHE if gender == "she" else NAMES_HE)
    P, p, poss, obj = _PRONOUNS[gender]
    noun = rng.choice(fam.nouns)
    friend = rng.choice(FRIENDS)
    words = {"N": name, "P": P, "p": p, "poss": poss, "o": obj, "noun": noun}
    # One-step answers stay below 100; longer chains may grow to a few hundred.
    cap = 99 if steps == 1 else 400

    question: list[str] = []
    lines: list[str] = []
    remaining = steps
    if rng.random() < 0.35:  # the first step is a product: "a boxes with b in each"
        a = rng.randint(2, 9)
        b = rng.randint(2, min(12, cap // a))
        x = a * b
        question.append(rng.choice(fam.start_product).format(a=a, b=b, **words))
        lines.append(
            f"{name} has " + _step_line(fam.money, b, "*", a, x, "" if fam.money else f" {noun}") + "."
        )
        remaining -= 1
    else:
        x = rng.randint(2, 60 if steps == 1 else 80)
        question.append(rng.choice(fam.start).format(a=x, **words))

    connectors = ("", "", "Then ", "Next, ", "After that, ", "Later, ")
    for _ in range(remaining):
        choice = _choose_op(rng, x, cap)
        assert choice is not None  # x >= 3 always allows "-", smaller x allows "+"
        op, b, r = choice
        template = rng.choice(getattr(fam, {"+": "add", "-": "sub", "*": "mul", "/": "div"}[op]))
        sentence = template.format(b=b, k=b, F=friend, **words)
        lead = rng.choice(connectors) if template.startswith(("{P}", "{F}")) else ""
        sentence = lead + sentence[0].lower() + sentence[1:] if lead else sentence[0].upper() + sentence[1:]
        question.append(sentence)
        tail = "" if fam.money else f" {noun}"
        if op == "/":
            lines.append("One share is " + _step_line(fam.money, x, op, b, r, tail) + ".")
        elif op == "-":
            lines.append(f"{name} has " + _step_line(fam.money, x, op, b, r, tail) + " left.")
        else:
            lines.append(f"{name} has " + _step_line(fam.money, x, op, b, r, tail) + ".")
        x = r

    question.append(rng.choice(fam.question).format(**words))
    lines.append(f"#### {x}")
    text = "\n".join(lines) if answer == "steps" else lines[-1]
    return Example(question=" ".join(question), answer=text, steps=steps)


def generate_examples(
    n: int, *, seed: int, min_steps: int = 1, max_steps: int = 4, answer: str = "steps"
) -> list[Example]:
    """`n` problems, deterministic for `seed`, each with a step count drawn from [min_steps, max_steps]."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}..{max_steps}")
    rng = random.Random(seed)
    return [generate_problem(rng, rng.randint(min_steps, max_steps), answer) for _ in range(n)]


def synthetic_split(
    split: str,
    size: int,
    min_steps: int,
    max_steps: int,
    seed: int,
    *,
    answer: str = "steps",
    test_steps: tuple[int, int] | None = None,
) -> list[Example]:
    """The "train" split (`size` problems of min..max steps from `seed`) or the held-out "test"
    split: drawn from another seed, of `test_steps` (default: the training range) steps, with
    every question that also appears in train dropped, so a test problem is never trained on."""
    train = generate_examples(size, seed=seed, min_steps=min_steps, max_steps=max_steps, answer=answer)
    if split == "train":
        return train
    lo, hi = test_steps or (min_steps, max_steps)
    seen = {ex.question for ex in train}
    test = generate_examples(
        SYNTHETIC_TEST_SIZE, seed=seed + SYNTHETIC_TEST_SEED_OFFSET, min_steps=lo, max_steps=hi, answer=answer
    )
    return [ex for ex in test if ex.question not in seen]
