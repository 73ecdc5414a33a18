"""Every bad input in tests/bad_inputs/cases.toml, walked through the `trm-tui` CLI in a subprocess.

Each case must end with its expected exit code, ONE clear sentence on stderr (no traceback, no
exception class dump), and leave every file it could see byte-for-byte as it was. Inputs that are
legitimately usable (a huge prompt, control characters, undecodable bytes) must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trm_core.runs.read import FORMAT_VERSION, list_checkpoints, resolve_checkpoint

from .cli_harness import CORPUS, CliServer, assert_one_sentence, changes, cli_env, copy_run, run_cli, snapshot

CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))["case"]


# --------------------------------------------------------------------------- damage done to a run


def _latest(run: Path) -> Path:
    return resolve_checkpoint(run, "latest")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _edit_state(run: Path, **changes: Any) -> None:
    path = _latest(run) / "state.json"
    state = json.loads(path.read_text())
    state.update(changes)
    path.write_text(json.dumps(state))


def _foreign_weights(run: Path, *, same_names: bool) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    for name in ("model.safetensors", "ema.safetensors"):
        path = _latest(run) / name
        if same_names:  # every tensor twice as wide: the same architecture at another size
            tensors = {k: torch.zeros(*(2 * s for s in v.shape)) for k, v in load_file(path).items()}
        else:  # another model's weights altogether
            tensors = {"encoder.layer.0.weight": torch.zeros(8, 8), "classifier.bias": torch.zeros(3)}
        save_file(tensors, str(path))


def _dangling_latest(run: Path) -> None:
    link = run / "checkpoints" / "latest"
    link.unlink()
    os.symlink("step-0000099", link)


def _dangling_nothing_left(run: Path) -> None:
    for _, p in list_checkpoints(run):
        shutil.rmtree(p)
    (run / "checkpoints" / "best").unlink()


def _checkpoints(run: Path) -> list[Path]:
    return [p for _, p in list_checkpoints(run)]


def _symlink(link: Path, target: str | Path) -> None:
    link.unlink(missing_ok=True)
    os.symlink(target, link)


def _pointer_loops(run: Path) -> None:
    for which in ("latest", "best"):
        _symlink(run / "checkpoints" / which, which)  # each points at itself


def _ckpt_profile(run: Path, **changes: Any) -> None:
    from trm_core.profile import set_value

    for ckpt in _checkpoints(run):
        text = (ckpt / "profile.toml").read_text()
        for key, value in changes.items():
            text = set_value(text, key.replace("__", "."), value)
        (ckpt / "profile.toml").write_text(text)


def _rewrite_safetensors(
    path: Path, edit: Callable[[dict[str, Any]], None], *, length: int | None = None
) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes((length if length is not None else len(raw)).to_bytes(8, "little") + raw + data[8 + n :])


def _every_weights_file(run: Path, edit: Callable[[dict[str, Any]], None], **kw: Any) -> None:
    for ckpt in _checkpoints(run):
        for name in ("model.safetensors", "ema.safetensors"):
            _rewrite_safetensors(ckpt / name, edit, **kw)


def _first_tensor_outside(header: dict[str, Any]) -> None:
    info = next(v for k, v in header.items() if k != "__metadata__")
    info["data_offsets"][1] += 10**6


def _optimizer(run: Path, wrong: str) -> None:
    import torch

    path = _latest(run) / "optimizer.pt"
    if wrong == "structure":
        torch.save({"optimizer": [1, 2, 3], "rng": {}}, path)
        return
    payload = torch.load(path, weights_only=True)
    for st in payload["optimizer"]["state"].values():
        st["exp_avg"] = torch.zeros(3)
        st["exp_avg_sq"] = torch.zeros(3)
    torch.save(payload, path)


def _best_into_other_run(run: Path, tmp: Path) -> None:
    other = copy_run(run, tmp / "other-run")
    _symlink(run / "checkpoints" / "best", _latest(other))


SETUPS: dict[str, Callable[[Path, Path], None]] = {
    "make_fifo": lambda run, tmp: os.mkfifo(tmp / "bad_inputs" / "data" / "fifo.jsonl"),
    "huge_profile": lambda run, tmp: (tmp / "bad_inputs" / "profiles" / "huge.toml").write_text(
        ("# " + "x" * 98 + "\n") * 11_000
    ),
    "profile_loop": lambda run, tmp: os.symlink("loop.toml", tmp / "bad_inputs" / "profiles" / "loop.toml"),
    "pointer_loops": lambda run, tmp: _pointer_loops(run),
    "ckpt_profile_dev_zero": lambda run, tmp: [
        _symlink(c / "profile.toml", "/dev/zero") for c in _checkpoints(run)
    ],
    "ckpt_profile_enormous": lambda run, tmp: _ckpt_profile(
        run, model__hidden_size=65536, model__num_heads=64, model__num_layers=64
    ),
    "aliases_list": lambda run, tmp: _every_weights_file(
        run, lambda h: h["__metadata__"].update(aliases="[1, 2]")
    ),
    "metadata_not_strings": lambda run, tmp: _every_weights_file(
        run, lambda h: h.update(__metadata__={"aliases": {"a": 1}})
    ),
    "offsets_outside": lambda run, tmp: _every_weights_file(run, _first_tensor_outside),
    "huge_header_length": lambda run, tmp: _every_weights_file(run, lambda h: None, length=2**62),
    "state_deep": lambda run, tmp: [
        (c / "state.json").write_text("[" * 100_000 + "]" * 100_000) for c in _checkpoints(run)
    ],
    "state_links_out": lambda run, tmp: _symlink(
        _latest(run) / "state.json", tmp / "bad_inputs" / "profiles" / "good.toml"
    ),
    "weights_link_out": lambda run, tmp: [
        _symlink(c / "model.safetensors", tmp / "bad_inputs" / "profiles" / "good.toml")
        for c in _checkpoints(run)
    ],
    "best_into_other_run": _best_into_other_run,
    "optimizer_wrong_structure": lambda run, tmp: _optimizer(run, "structure"),
    "optimizer_wrong_shapes": lambda run, tmp: _optimizer(run, "shapes"),
    "optimizer_fifo": lambda run, tmp: [
        (_latest(run) / "optimizer.pt").unlink(),
        os.mkfifo(_latest(run) / "optimizer.pt"),
    ],
    "lock_dir": lambda run, tmp: (run / ".lock").mkdir(),
    "empty_run_dir": lambda run, tmp: (tmp / "empty-run").mkdir(),
    "truncate_model": lambda run, tmp: _truncate(_latest(run) / "model.safetensors"),
    "truncate_ema": lambda run, tmp: _truncate(_latest(run) / "ema.safetensors"),
    "remove_model": lambda run, tmp: (_latest(run) / "model.safetensors").unlink(),
    "remove_state": lambda run, tmp: (_latest(run) / "state.json").unlink(),
    "state_not_json": lambda run, tmp: (_latest(run) / "state.json").write_text('{"format_version": 1, "st'),
    "state_is_list": lambda run, tmp: (_latest(run) / "state.json").write_text("[1, 2, 3]"),
    "state_wrong_types": lambda run, tmp: _edit_state(run, step="two", epoch=[0], batch_in_epoch=None),
    "state_wrong_fields": lambda run, tmp: _edit_state(run, epoch=[0], batch_in_epoch=None),
    "newer_format": lambda run, tmp: _edit_state(run, format_version=FORMAT_VERSION + 1),
    "vocab_changed": lambda run, tmp: _edit_state(run, vocab_size=999),
    "foreign_arch": lambda run, tmp: _foreign_weights(run, same_names=False),
    "foreign_shapes": lambda run, tmp: _foreign_weights(run, same_names=True),
    "optimizer_garbage": lambda run, tmp: (_latest(run) / "optimizer.pt").write_bytes(
        b"PK\x03\x04 not a zip"
    ),
    "ckpt_profile_broken": lambda run, tmp: (_latest(run) / "profile.toml").write_text("[model\nhidden"),
    "dangling_latest": lambda run, tmp: _dangling_latest(run),
    "dangling_nothing_left": lambda run, tmp: _dangling_nothing_left(run),
}


def expand(arg: str, values: dict[str, str], corpus: Path) -> str:
    def repl(m: re.Match[str]) -> str:
        key, _, param = m.group(1).partition(":")
        if key == "long":
            n = int(param)
            return ("What is 2+3? " * (n // 13 + 1))[:n]
        if key == "argfile":  # undecodable bytes travel through argv as surrogate escapes
            return os.fsdecode((corpus / param).read_bytes().rstrip(b"\n"))
        return values[key]

    return re.sub(r"\{(\w+(?::[^}]*)?)\}", repl, arg)


# --------------------------------------------------------------------------- the corpus

# These also run in a fresh `python -m trm_tui` interpreter, proving the forked runs behave the same.
PLAIN = {
    "profile-unknown-key",
    "train-missing-data-file",
    "generate-truncated-ema",
    "prompt-invalid-utf8-argv",
}


def test_corpus_is_big_and_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 30
    for c in CASES:
        assert c["command"] in ("check", "train", "generate", "eval", "sweep", "compare"), c["id"]
        assert c.get("setup") is None or c["setup"] in SETUPS, c["id"]
        assert isinstance(c["exit"], int) and isinstance(c["stderr"], str), c["id"]
    kinds = {c["command"] for c in CASES}
    assert kinds == {"check", "train", "generate", "eval", "sweep", "compare"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case: dict[str, Any], trained_run: Path, cli_server: CliServer, tmp_path: Path) -> None:
    work = tmp_path / "work"
    corpus = work / "bad_inputs"
    shutil.copytree(CORPUS, corpus, symlinks=True, ignore=shutil.ignore_patterns("cases.toml"))
    values = {"corpus": str(corpus), "runs": str(work / "a" / "runs"), "tmp": str(work), "run": ""}
    needs_run = any("{run}" in a or "{ckpt}" in a for a in case["args"])
    needs_run |= case.get("setup", "empty_run_dir") != "empty_run_dir"  # every other setup damages {run}
    if needs_run:
        run = copy_run(trained_run, work / "run")
        values["run"], values["ckpt"] = str(run), str(_latest(run))
    if case.get("setup"):
        SETUPS[case["setup"]](Path(values["run"]), work)
    args = [case["command"], *(expand(a, values, corpus) for a in case["args"])]
    stdin = (corpus / case["stdin"]).read_bytes() if case.get("stdin") else None
    for p in case.get("must_not_exist", []):
        assert not Path(p).exists(), f"{p} exists before the case ran"

    before = snapshot(work)
    if case["id"] in PLAIN:
        proc = run_cli(args, cwd=corpus, env=cli_env(tmp_path), stdin=stdin)
    else:
        proc = cli_server.run(args, cwd=corpus, stdin=stdin)
    after = snapshot(work)

    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, f"traceback:\n{err}"
    assert proc.returncode == case["exit"], f"exit {proc.returncode}, expected {case['exit']}\n{err}\n{out}"
    # nothing echoed may drive the terminal: paths, names and messages have their controls escaped
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", err.replace("\n", "")), (
        repr(err)
    )
    if case["exit"] != 0:
        line = assert_one_sentence(err)
        assert re.search(case["stderr"], line), f"{line!r} does not match {case['stderr']!r}"
    else:
        if case["stderr"]:
            assert re.search(case["stderr"], err), err
        else:
            assert not err.strip(), err
        # a prompt (or a model) must never reach the terminal with escape sequences
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out.replace("\n", "")), repr(out)
    assert changes(before, after) == [], "files changed"
    for p in case.get("must_not_exist", []):
        assert not Path(p).exists(), f"{p} was written outside the runs dir"
