"""Reliability round 2 (issue 16) below the CLI: profile limits, the memory estimate, non-finite
weights never saved, bounded reads, pointers confined to their run, escaping. The CLI side of each
class is in tests/bad_inputs/cases.toml."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tests.cli_harness import CliServer, copy_run, snapshot
from tests.test_train import tiny_profile, tiny_text, train
from trm_core.errors import UserError
from trm_core.limits import safe_name
from trm_core.model.memory import check_fits, estimate_memory
from trm_core.printable import printable
from trm_core.profile import SECTIONS, ProfileError, load_profile, parse_profile
from trm_core.runs.read import has_checkpoint, list_checkpoints, read_pointer, resolve_checkpoint
from trm_core.safe_read import FileProblem, read_bounded

FLOAT_KEYS = [
    f"{section}.{f.name}"
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if f.type == "float"
]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_nan_and_inf(key: str, value: str) -> None:
    section, name = key.split(".")
    with pytest.raises(ProfileError, match=rf"{section}\.{name} must be a finite number"):
        parse_profile(f"[{section}]\n{name} = {value}\n")


def test_float_keys_are_found() -> None:
    assert {"train.lr", "train.grad_clip", "generate.temperature", "model.rope_theta"} <= set(FLOAT_KEYS)


def test_profile_is_read_as_exact_bytes(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.toml"
    crlf.write_bytes(b'name = "ok"\r\n[model]\r\nhidden_size = 32\r\nnum_heads = 2\r\n')
    assert load_profile(crlf).model.hidden_size == 32  # CRLF is a TOML newline
    bare = tmp_path / "bare.toml"
    bare.write_bytes(b'name = "cr"\r[model]\rhidden_size = 32\r')  # a bare CR is not
    with pytest.raises(ProfileError, match="TOML syntax error"):
        load_profile(bare)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('description = "café"\n'.encode("latin-1"))
    with pytest.raises(ProfileError, match="not a UTF-8 text file"):
        load_profile(latin)


def test_a_stem_without_name_becomes_a_safe_name(tmp_path: Path) -> None:
    path = tmp_path / "my profile\u202e.toml"
    path.write_text("[model]\nhidden_size = 32\nnum_heads = 2\n")
    assert load_profile(path).name == "my-profile-"
    assert safe_name(".hidden") == "hidden" and safe_name("...") == "unnamed"


def test_memory_estimate_is_small_for_quickstart_and_refuses_the_absurd(repo: Path) -> None:
    quick = load_profile(repo / "profiles" / "quickstart.toml")
    est = estimate_memory(quick)
    assert 450_000 < est.params < 470_000  # 459,008 measured by the trainer
    assert est.total < 2**30
    check_fits(quick)  # fits
    huge = parse_profile(tiny_text(train__batch_size=1_000_000))
    with pytest.raises(UserError, match=r"training this profile needs at least [\d,.]+ GiB"):
        check_fits(huge)


def test_refused_profile_creates_no_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done, events, _ = train(tiny_profile(train__batch_size=1_000_000), run)
    assert done.reason == "error" and "needs at least" in done.message
    assert not run.exists()  # nothing was created: no run dir, no metrics.jsonl, no profile.toml


def test_non_finite_weights_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    real_step = torch.optim.AdamW.step

    def diverging_step(self, *a, **kw):  # what lr = inf did: an update that leaves weights non-finite
        out = real_step(self, *a, **kw)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", diverging_step)
    run = tmp_path / "run"
    done, _, _ = train(tiny_profile(train__checkpoint_every=1, train__max_steps=3), run)
    assert done.reason == "error", done
    assert "are not finite (NaN or inf), so no checkpoint was saved" in done.message
    assert not has_checkpoint(run) and not (run / "checkpoints" / "latest").exists()


def test_lr_beyond_float32_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"train\.lr must be at most 10, got 1e\+39"):
        parse_profile("[train]\nlr = 1e39\n")


def test_bounded_reads(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(FileProblem, match="is larger than"):
        read_bounded(tmp_path / "big", 1000)
    with pytest.raises(FileProblem, match="character device"):
        read_bounded("/dev/zero", 1000)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileProblem, match="FIFO"):
        read_bounded(tmp_path / "fifo", 1000)  # returns at once: no writer needed to refuse it
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(FileProblem, match="symlink loop"):
        read_bounded(tmp_path / "loop", 1000)
    inner = tmp_path / "root"
    inner.mkdir()
    os.symlink(tmp_path / "big", inner / "out")
    with pytest.raises(FileProblem, match="leads outside"):
        read_bounded(inner / "out", 10_000, root=inner)
    assert len(read_bounded(inner / "out", 10_000)) == 2000  # without a root, a link is followed


def test_pointers_stay_inside_their_run(trained_run: Path, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path / "run")
    other = copy_run(trained_run, tmp_path / "other")
    newest = list_checkpoints(run)[-1][1]
    best = run / "checkpoints" / "best"
    best.unlink()
    os.symlink(list_checkpoints(other)[0][1], best)  # into another run
    assert read_pointer(run, "best") is None
    assert resolve_checkpoint(run, "best").parent == run / "checkpoints"
    best.unlink()
    os.symlink("best", best)  # a loop
    assert read_pointer(run, "best") is None and resolve_checkpoint(run, "best") in (
        newest,
        run / "checkpoints" / "latest",
    )


def test_eval_with_best_in_another_run_writes_only_its_own_run(
    trained_run: Path, cli_server: CliServer, tmp_path: Path
) -> None:
    run = copy_run(trained_run, tmp_path / "run")
    other = copy_run(trained_run, tmp_path / "other")
    (run / "checkpoints" / "best").unlink()
    os.symlink(list_checkpoints(other)[-1][1], run / "checkpoints" / "best")
    before = snapshot(other)
    proc = cli_server.run(["eval", str(run), "--limit", "2", "--split", "train"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert snapshot(other) == before, "eval wrote into the run that `best` pointed at"
    written = list(run.glob("eval/train-step*.jsonl"))
    assert len(written) == 1 and all(
        "strict_match" in json.loads(line) for line in written[0].read_text().splitlines()
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("t\x1b]0;title\x07", "t\\x1b]0;title\\x07"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("line\nbreak\ttab", "line\\x0abreak\\x09tab"),
        ("surrogate\udcff", "surrogate\\udcff"),
        ("plain é ✓ 12", "plain é ✓ 12"),
    ],
)
def test_printable_escapes_what_drives_a_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text, keep_lines=True) == shown.replace("\\x0a", "\n").replace("\\x09", "\t")


def test_hostile_metrics_jsonl_never_hangs_or_breaks_a_reader(tmp_path: Path) -> None:
    from trm_core.events import DoneEvent, read_events
    from trm_core.runs.listing import list_runs

    fifo = tmp_path / "fifo-run"
    fifo.mkdir()
    os.mkfifo(fifo / "metrics.jsonl")  # opening it without O_NONBLOCK would wait for a writer forever
    zero = tmp_path / "zero-run"
    zero.mkdir()
    os.symlink("/dev/zero", zero / "metrics.jsonl")
    bad = tmp_path / "bad-run"
    bad.mkdir()
    rows = [
        "5",
        "[1]",
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"kind": "step", "step": "x"}),
        json.dumps({"kind": ["x"]}),
    ]
    (bad / "metrics.jsonl").write_text("\n".join(rows) + "\n" + DoneEvent("error", 3, "m").to_json() + "\n")
    assert read_events(fifo / "metrics.jsonl", 0) == ([], 0)
    assert read_events(zero / "metrics.jsonl", 0) == ([], 0)
    events, _ = read_events(bad / "metrics.jsonl", 0)
    assert [e.kind for e in events] == ["done"]
    assert {r.name: r.status for r in list_runs(tmp_path)} == {
        "fifo-run": "new",
        "zero-run": "new",
        "bad-run": "failed",
    }


def test_a_saved_profile_with_an_old_style_name_still_loads(trained_run: Path, tmp_path: Path) -> None:
    from trm_core.profile import set_value
    from trm_core.runs.read import saved_profile

    run = copy_run(trained_run, tmp_path / "run")
    for _, ckpt in list_checkpoints(run):  # names with spaces were allowed before the name rule
        text = (ckpt / "profile.toml").read_text()
        (ckpt / "profile.toml").write_text(set_value(text, "name", "my old run\x1b[31m"))
    assert saved_profile(run).name == "my-old-run-31m"
    with pytest.raises(ProfileError, match="name must be"):
        parse_profile('name = "my old run"\n')
