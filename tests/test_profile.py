"""Profiles: loading, validation messages, comment-preserving edits, graded diff, `trm-tui check`."""

from __future__ import annotations

import pytest

from trm_core.profile import (
    Profile,
    ProfileError,
    diff,
    load_profile,
    parse_profile,
    save_profile_text,
    set_value,
    worst,
)

# (TOML text, a fragment the error must contain)
BROKEN = [
    ("[model\nhidden_size = 64\n", "TOML syntax error"),
    ("[model]\nhidden_size = \n", "line 2"),
    ("[model]\nhiden_size = 64\n", "unknown key model.hiden_size (did you mean model.hidden_size?)"),
    ("[trian]\nlr = 0.1\n", "unknown key trian (did you mean train?)"),
    ('[model]\nhidden_size = "big"\n', "model.hidden_size must be an integer, got str 'big'"),
    ('[train]\nlr = "fast"\n', "train.lr must be a number"),
    ("[model]\nhidden_size = 0\n", "model.hidden_size must be greater than 0, got 0"),
    ("[model]\nnum_layers = -2\n", "model.num_layers must be greater than 0, got -2"),
    (
        "[model]\nhidden_size = 100\nnum_heads = 3\n",
        "model.hidden_size (100) must be divisible by model.num_heads (3)",
    ),
    ('[train]\nsupervision = "acumulate"\n', "did you mean 'accumulate'?"),
    ('[tokenizer]\nname = "gtp2"\n', "did you mean 'gpt2'?"),
    (
        '[data]\nsource = "s3://bucket"\n',
        "data.source must be 'synthetic', 'jsonl:<file-or-dir>' or 'hf:<dataset>'",
    ),
    ("[model]\nH_cycles = 2\ngrad_cycles = 3\n", "model.grad_cycles (3) cannot exceed model.H_cycles (2)"),
    ("[generate]\ntop_p = 1.5\n", "generate.top_p must be in (0, 1]"),
    ("[train]\nema = 1\n", "train.ema must be true or false"),
    ("model = 3\n", "[model] must be a table"),
    ('[model]\narch = "transformer"\n[train]\nsupervision_steps = 2\n', "supervision_steps must be 1"),
    ("[early_stopping]\npatience = 0\n", "early_stopping.patience must be greater than 0"),
    ("[data]\nsynthetic_min_steps = 3\nsynthetic_max_steps = 2\n", "cannot exceed data.synthetic_max_steps"),
]


@pytest.mark.parametrize("text,expected", BROKEN, ids=[e for _, e in BROKEN])
def test_broken_profiles_name_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "broken.toml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("broken.toml: ")
    assert "Traceback" not in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile("[model]\nhiden = 1\n[train]\nlr = 'x'\nbatch = 2\n", "p.toml")
    assert len(info.value.problems) == 3


def test_defaults_and_types() -> None:
    p = parse_profile("[train]\nlr = 1\n")
    assert isinstance(p.train.lr, float) and p.train.lr == 1.0
    assert p.model == Profile().model
    assert p.flat()["model.hidden_size"] == 128


def test_shipped_profiles_are_valid(repo) -> None:
    names = {}
    for path in sorted((repo / "profiles").glob("*.toml")):
        names[path.stem] = load_profile(path)
    assert {"quickstart", "gsm8k", "gsm8k-accumulate", "gsm8k-baseline"} <= set(names)
    q = names["quickstart"]
    assert q.tokenizer.name == "byte" and q.data.source == "synthetic"
    g = names["gsm8k"]
    assert (g.model.hidden_size, g.model.num_heads, g.model.num_layers) == (512, 8, 2)
    assert (g.model.H_cycles, g.model.L_cycles, g.tokenizer.name) == (3, 6, "gpt2")
    assert g.data.source == "hf:openai/gsm8k"
    assert names["gsm8k-accumulate"].train.supervision == "accumulate"
    assert names["gsm8k-baseline"].model.arch == "transformer"
    # the accumulate profile differs from gsm8k only where it should
    keys = {m.key for m in diff(g, names["gsm8k-accumulate"])}
    assert keys == {"name", "description", "train.supervision"}


def test_missing_file_is_one_sentence(tmp_path) -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProfileError, match="not a UTF-8 text file"):
        load_profile(tmp_path / "bin.toml")


def test_set_value_and_save_keep_comments(tmp_path) -> None:
    text = "# my notes\n[model]\nhidden_size = 64  # small\n\n[train]\nlr = 0.001 # keep\n"
    new = set_value(text, "train.lr", 0.002)
    assert "# my notes" in new and "# small" in new and "0.002" in new
    path = tmp_path / "p.toml"
    save_profile_text(path, new)
    assert path.read_text() == new
    assert load_profile(path).train.lr == 0.002
    with pytest.raises(ProfileError):
        save_profile_text(path, "[model\n")
    assert path.read_text() == new  # a refused save leaves the file alone


def test_to_toml_round_trips() -> None:
    p = parse_profile("# c\n[model]\nhidden_size = 64\n")
    assert p.to_toml() == p.text  # unchanged profile keeps the user's text
    p.train.lr = 0.123
    again = parse_profile(p.to_toml())
    assert again.to_dict() == p.to_dict()


def test_diff_grades_each_difference() -> None:
    saved = parse_profile("name = 'a'\n[model]\nhidden_size = 64\n")
    cur = parse_profile(
        "name = 'b'\n[model]\nhidden_size = 128\nL_cycles = 3\n[train]\nlr = 0.01\n[generate]\ntemperature = 0.5\n"
    )
    got = {m.key: m.severity for m in diff(saved, cur)}
    assert got == {
        "model.hidden_size": "incompatible",
        "model.L_cycles": "changes-training",
        "train.lr": "changes-training",
        "generate.temperature": "harmless",
        "name": "harmless",
    }
    assert worst(diff(saved, cur)) == "incompatible"
    assert diff(saved, saved) == [] and worst([]) is None
    tok = parse_profile("[tokenizer]\nname = 'gpt2'\n")
    assert worst(diff(saved, tok)) == "incompatible"
