"""docs/profiles.md is generated from the profile schema (trm_core/profile_doc.py): every key has
a description beside its field, and the committed file is what the generator writes today."""

from __future__ import annotations

from trm_core import profile as schema
from trm_core.profile_doc import DOC_PATH, field_docs, main, missing_docs, render

REGENERATE = "run: python -m trm_core.profile_doc"


def test_every_profile_key_has_a_description() -> None:
    assert missing_docs() == [], "describe these keys beside their fields in trm_core/profile.py"


def test_profiles_reference_is_up_to_date() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), f"docs/profiles.md is out of date; {REGENERATE}"


def test_every_profile_key_is_in_the_reference() -> None:
    text = render()
    for key in schema.Profile().flat():
        section, _, name = key.rpartition(".")
        assert f"## [{section}]" in text or not section, key
        assert f"| `{name}` |" in text, key


def test_descriptions_come_from_the_comment_beside_or_above_a_field() -> None:
    source = """
from dataclasses import dataclass

@dataclass
class TrainConfig:
    lr: float = 3e-4  # the peak learning rate
    # passes over the data,
    # unless max_steps is set
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0  # fmt: skip
"""
    docs = field_docs(source)["TrainConfig"]
    assert docs == {"lr": "the peak learning rate", "epochs": "passes over the data, unless max_steps is set",
                    "batch_size": "", "seed": ""}  # fmt: skip
    missing = missing_docs(source)
    assert "train.batch_size" in missing and "train.seed" in missing and "train.lr" not in missing


def test_check_mode_fails_on_a_stale_file(tmp_path, capsys) -> None:
    out = tmp_path / "profiles.md"
    assert main(["--output", str(out)]) == 0
    assert main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text().replace("AdamW", "Adam"))
    assert main(["--check", "--output", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err
