"""No file and no model output ever runs code: pickles planted in a checkpoint are refused by the CLI
(and never unpickled), and the calculator never evaluates a name, imports or executes anything."""

from __future__ import annotations

import gc
import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trm_core.generation.calculator import safe_eval
from trm_core.runs.read import resolve_checkpoint

from .cli_harness import CORPUS, CliServer, assert_one_sentence, changes, copy_run, snapshot

# --------------------------------------------------------------------------- pickles in checkpoints


class _Touch:
    """Unpickling this creates `target` (pathlib.Path.touch)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.target),))


class _System:
    """Unpickling this runs a shell command that creates `target`."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self) -> Any:
        return (os.system, (f"touch '{self.target}'",))


class _Exec:
    """Unpickling this executes Python source that creates `target`."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self) -> Any:
        return (exec, (f"open({self.target!r}, 'w').close()",))


def plant(path: Path, payload_kind: str, marker: Path) -> None:
    """Write a malicious pickle to `path` in one of several containers torch.load understands."""
    evil = {"touch": _Touch, "system": _System, "exec": _Exec}[payload_kind.split("-")[0]](str(marker))
    payload = {"optimizer": evil, "rng": {}, "scheduler": {}}
    if payload_kind.endswith("-legacy"):
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif payload_kind.endswith("-raw"):
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)


# (file the pickle replaces, command that reads it, payload, state.json fields so the loader reads it)
CASES = [
    *[("optimizer.pt", "train", p, {}) for p in ("touch", "system", "exec", "touch-legacy", "exec-raw")],
    ("carry.safetensors", "train", "exec", {"has_carry": True, "pass_in_batch": 1}),
    ("model.safetensors", "train", "system", {}),
    ("ema.safetensors", "generate", "exec", {}),
    ("model.safetensors", "generate", "touch", {}),
]


@pytest.mark.parametrize(
    ("target", "command", "payload", "state"), CASES, ids=[f"{t}-{c}-{p}" for t, c, p, _ in CASES]
)
def test_planted_pickle_is_refused_and_never_runs(
    target: str,
    command: str,
    payload: str,
    state: dict[str, Any],
    trained_run: Path,
    cli_server: CliServer,
    tmp_path: Path,
) -> None:
    run = copy_run(trained_run, tmp_path / "run")
    latest = resolve_checkpoint(run, "latest")
    marker = tmp_path / "pwned"
    plant(latest / target, payload, marker)
    if state:
        s = json.loads((latest / "state.json").read_text())
        s.update(state)
        (latest / "state.json").write_text(json.dumps(s))
    if command == "train":
        args = ["train", str(CORPUS / "profiles" / "good.toml"), "--run-dir", str(run), "--resume"]
    else:
        args = ["generate", str(run), "--prompt", "What is 2+3?"]
        if target == "model.safetensors":
            args.append("--raw-weights")  # the EMA weights are the default
    before = snapshot(tmp_path)
    done = cli_server.run(args, cwd=tmp_path)
    err = done.stderr.decode("utf-8", "replace")
    assert not marker.exists(), "the pickle ran"
    assert done.returncode == 1, err
    line = assert_one_sentence(err)
    assert target in line and ("refusing to load" in line or "truncated or corrupted" in line), line
    assert changes(before, snapshot(tmp_path)) == []


def test_generate_never_reads_the_optimizer_state(
    trained_run: Path, cli_server: CliServer, tmp_path: Path
) -> None:
    """Inference needs weights only: a poisoned optimizer.pt is never opened (so it cannot run)."""
    run = copy_run(trained_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    plant(resolve_checkpoint(run, "latest") / "optimizer.pt", "exec", marker)
    done = cli_server.run(["generate", str(run), "--prompt", "What is 2+3?"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert not marker.exists()


# --------------------------------------------------------------------------- the calculator

_AUDIT = threading.local()
# Events that mean code ran or the world was touched. ("compile" is how ast.parse works: allowed.)
_FORBIDDEN = ("exec", "import", "os.", "subprocess.", "open", "builtins.input", "ctypes.", "socket.")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_AUDIT, "on", False) and event.startswith(_FORBIDDEN):
        _AUDIT.events.append(event)


sys.addaudithook(_audit)  # cannot be removed; it records only inside watched()


def watched(expr: str) -> tuple[Any, float, list[str]]:
    """safe_eval(expr), the CPU time it took (immune to the other processes on a busy machine), audit events.

    The garbage collector is off while it runs. On a fresh-clone CI run (session 7) one call that
    takes 0.0 s alone took 0.59 s of this thread's time once and never again; the likeliest cause is
    a full collection of the test worker's heap, which any allocation can trigger (not confirmed)."""
    _AUDIT.events, _AUDIT.on = [], True
    collecting = gc.isenabled()
    gc.disable()
    start = time.thread_time()
    try:
        result = safe_eval(expr)
    finally:
        elapsed = time.thread_time() - start
        _AUDIT.on = False
        if collecting:
            gc.enable()
    return result, elapsed, _AUDIT.events


# Fragments an attacker (or a confused model) would put between << and =.
_FRAGMENTS = [
    "__import__", "('os')", ".system", "('touch /tmp/x')", "__builtins__", "().__class__", ".__bases__",
    "[0]", ".__subclasses__()", "eval", "exec", "open", "lambda x:", "getattr", "globals()", "os",
    "9**9**9", "**", "10**10**10", "(", ")", "/0", "//0", "%0", "1e308*10", "-", "+", "*", "/",
    "1", "42", "0.5", "1,000", "$", " ", "\\x00", "'", '"', "[", "]", "{", "}", ":", ";", "=",
    "\n", "#", "@", "~", "<<", ">>", "if", "else", "not", "and", "True", "None", "x", "_",
]  # fmt: skip
_fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=40))
def test_hostile_fragments_never_raise_run_or_stall(parts: list[str]) -> None:
    expr = "".join(parts)
    result, elapsed, events = watched(expr)
    assert events == [], f"{expr!r} triggered {events}"
    assert elapsed < 0.05, f"{expr!r} took {elapsed * 1000:.0f} ms"
    assert result is None or (isinstance(result, (int, float)) and not isinstance(result, bool))
    names = ("__", "os", "eval", "exec", "open", "getattr", "globals", "lambda", "True", "None", "x")
    if any(n in expr for n in names) or "_" in expr:
        assert result is None, f"{expr!r} evaluated a name to {result!r}"


@_fast
@given(st.integers(1, 400), st.sampled_from(["(", "-(", "+(", "((-", "2**("]))
def test_deep_nesting_of_every_kind_is_refused_fast(depth: int, opener: str) -> None:
    closer = ")" * opener.count("(")
    expr = opener * depth + "1" + closer * depth
    result, elapsed, events = watched(expr)
    assert events == [] and elapsed < 0.05
    assert result is None or isinstance(result, (int, float))


@_fast
@given(
    st.integers(-(10**6), 10**6),
    st.integers(-(10**6), 10**6),
    st.sampled_from(["**", "*", "/", "//", "%", "**-", "*10**"]),
)
def test_huge_and_zero_operands_never_raise(a: int, b: int, op: str) -> None:
    for expr in (f"{a}{op}{b}", f"({a}){op}({b})", f"{a}{op}0", f"{a}**{b}**{b}"):
        result, elapsed, events = watched(expr)
        assert events == [] and elapsed < 0.05, expr
        if result is not None:
            assert abs(result) <= 1e15
