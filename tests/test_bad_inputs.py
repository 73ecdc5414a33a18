"""Every bad input in tests/bad_inputs/cases.toml, walked through the `trm-tui` CLI in a subprocess.

Each case must end with its expected exit code, ONE clear sentence on stderr (no traceback, no
exception class dump), and leave every file it could see byte-for-byte as it was. Inputs that are
legitimately usable (a huge prompt, control characters, undecodable bytes) must exit 0.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trm_core import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "bad_inputs"
CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))["case"]

# An exception class dumped the way Python prints it ("ValueError: …", "safetensors_rust.SafetensorError: …").
_CLASS_DUMP = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b:")


def cli_env(tmp: Path) -> dict[str, str]:
    """Offline, one thread, an empty Hugging Face cache (so 'hf:' sources are truly unreachable)."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_cli(
    args: list[str], *, cwd: Path, env: dict[str, str], stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """`python -m trm_tui ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "trm_tui", *args],
        cwd=cwd,
        env=env,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
    )


# Importing torch costs ~1.5 s per interpreter; 80 cases would spend minutes on it. This server
# imports it once, then forks one child per case, which runs `python -m trm_tui` (runpy, as the
# interpreter does) on its own cwd, stdin, stdout and stderr and exits with the CLI's own code.
# An uncaught exception is printed as the interpreter would print it, so tracebacks still show.
_SERVER = r"""
import io, json, os, runpy, select, sys, traceback
import torch, safetensors.torch, tomlkit, rich.console, rich.progress, rich.table  # the slow imports
import trm_core.checkpoint, trm_core.train, trm_core.generate, trm_core.evaluate, trm_core.model, trm_core.data
import trm_tui.commands.check, trm_tui.commands.train, trm_tui.commands.generate, trm_tui.commands.eval

# Warm up: the first training step and the first generation pay for lazy imports and kernel set-up
# (seconds); paid once here, never again by the forked children. One thread: nothing to fork badly.
torch.set_num_threads(1)
from trm_core.profile import load_profile
from trm_core.generate import Generator
warm = os.path.join(sys.argv[1], "warm-up-run")
trm_core.train.Trainer(load_profile(sys.argv[2]), warm).run()
Generator.from_checkpoint(warm, device="cpu").generate("What is 2+3?", max_tokens=4)

ENC = {n: (getattr(sys, n).encoding, getattr(sys, n).errors) for n in ("stdin", "stdout", "stderr")}

def readline(fd):  # byte by byte: nothing is read ahead of the request
    buf = b""
    while not buf.endswith(b"\n"):
        c = os.read(fd, 1)
        if not c:
            return None
        buf += c
    return buf

reply = os.fdopen(os.dup(1), "w")
requests = os.dup(0)
running = set()

def reap():  # children end in any order (two trainers at once): report each as it ends
    for pid in list(running):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            running.discard(pid)
            reply.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
            reply.flush()

while True:
    if not select.select([requests], [], [], 0.02)[0]:
        reap()
        continue
    line = readline(requests)
    if line is None:
        break
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(req["cwd"])
            for i, name in enumerate(("stdin", "stdout", "stderr")):
                fd = os.open(req[name], os.O_RDONLY if i == 0 else os.O_WRONLY)
                os.dup2(fd, i)
                os.close(fd)
                enc, err = ENC[name]
                mode = "rb" if i == 0 else "wb"
                setattr(sys, name, io.TextIOWrapper(open(i, mode, closefd=False), encoding=enc, errors=err))
            os.close(requests)
            reply.close()
            if req.get("hook"):  # test-only fault injection (tests/test_crash_safety.py)
                exec(req["hook"], {"__name__": "hook"})
            sys.argv = ["trm-tui", *req["args"]]  # surrogate escapes, as fsdecode(argv) gives
            code = 0
            try:
                runpy.run_module("trm_tui", run_name="__main__", alter_sys=True)
            except SystemExit as e:
                if e.code is None:
                    code = 0
                elif isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    running.add(pid)
    reply.write(json.dumps({"pid": pid}) + "\n")
    reply.flush()
while running:
    reap()
"""


class CliRun:
    """One forked CLI invocation: `pid` to signal, `wait()` for its CompletedProcess."""

    def __init__(self, server: CliServer, args: list[str], pid: int, files: dict[str, Path]):
        self.server, self.args, self.pid, self.files = server, args, pid, files
        self.result: subprocess.CompletedProcess[bytes] | None = None

    def wait(self) -> subprocess.CompletedProcess[bytes]:
        if self.result is None:
            while self.pid not in self.server.ended:
                msg = json.loads(self.server._readline())
                self.server.ended[msg["pid"]] = msg["returncode"]
            code = self.server.ended.pop(self.pid)
            out, err = self.files["stdout"].read_bytes(), self.files["stderr"].read_bytes()
            self.result = subprocess.CompletedProcess(["trm-tui", *self.args], code, out, err)
        return self.result

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""
        return (self.files["stdout"].read_bytes() + self.files["stderr"].read_bytes()).decode(
            "utf-8", "replace"
        )


class CliServer:
    """Runs CLI invocations in forked children of one warm interpreter (see _SERVER)."""

    def __init__(self, env: dict[str, str], scratch: Path):
        self.scratch = scratch
        self.n = 0
        self.ended: dict[int, int] = {}  # pid -> return code, as the server reports them
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(scratch), str(CORPUS / "profiles" / "good.toml")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def start(self, args: list[str], *, cwd: Path, stdin: bytes | None = None, hook: str = "") -> CliRun:
        """Fork a child running `trm-tui ARGS`; its pid is known at once (to signal it)."""
        assert self.proc.stdin is not None
        self.n += 1
        files = {k: self.scratch / f"{self.n}.{k}" for k in ("stdin", "stdout", "stderr")}
        files["stdin"].write_bytes(stdin or b"")
        files["stdout"].write_bytes(b"")
        files["stderr"].write_bytes(b"")
        # JSON escapes lone surrogates: undecodable argv bytes survive the trip
        req = {"cwd": str(cwd), "args": args, "hook": hook, **{k: str(v) for k, v in files.items()}}
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        self.proc.stdin.flush()
        while True:  # the next reply without a return code is our child's pid
            msg = json.loads(self._readline())
            if "returncode" in msg:
                self.ended[msg["pid"]] = msg["returncode"]
            else:
                return CliRun(self, args, msg["pid"], files)

    def run(
        self, args: list[str], *, cwd: Path, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return self.start(args, cwd=cwd, stdin=stdin).wait()

    def _readline(self) -> bytes:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the CLI server died")
        return line

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# Shared by test_bad_inputs, test_crash_safety and test_no_code_exec: one server and one trained run
# per process (a fixture imported into three modules would be built three times).
_SHARED: dict[str, Any] = {}


def shared_cli_server(factory: pytest.TempPathFactory) -> CliServer:
    if "server" not in _SHARED:
        base = factory.mktemp("cli-server")
        _SHARED["server"] = CliServer(cli_env(base), base)
        atexit.register(_SHARED["server"].close)
    return _SHARED["server"]


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> CliServer:
    return shared_cli_server(tmp_path_factory)


# --------------------------------------------------------------------------- a trained run, once


def shared_trained_run(factory: pytest.TempPathFactory) -> Path:
    """profiles/good.toml trained for 2 steps (checkpoints at 1 and 2, EMA on); copy it, never touch it."""
    if "run" not in _SHARED:
        from trm_core.profile import load_profile
        from trm_core.train import Trainer

        run = factory.mktemp("trained") / "run"
        done = Trainer(load_profile(CORPUS / "profiles" / "good.toml"), run).run()
        assert done.reason == "finished", done.message
        assert ckpt.resolve_checkpoint(run, "best") == ckpt.resolve_checkpoint(run, "latest")
        _SHARED["run"] = run
    return _SHARED["run"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_trained_run(tmp_path_factory)


def copy_run(trained: Path, dst: Path) -> Path:
    shutil.copytree(trained, dst, symlinks=True)
    return dst


# --------------------------------------------------------------------------- snapshots


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root: file contents hashed, symlinks by target (and the target's bytes), dirs by name."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        out[str(d.relative_to(root)) + "/"] = "dir"
        for name in dirnames + filenames:
            p = d / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                target = os.readlink(p)
                resolved = p.resolve()
                what = "dangling"
                if resolved.is_file():
                    what = hashlib.sha256(resolved.read_bytes()).hexdigest()
                elif resolved.is_dir():
                    what = "dir:" + ",".join(sorted(os.listdir(resolved)))
                out[rel] = f"link {target} {what}"
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --------------------------------------------------------------------------- damage done to a run


def _latest(run: Path) -> Path:
    return ckpt.resolve_checkpoint(run, "latest")


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
    for _, p in ckpt.list_checkpoints(run):
        shutil.rmtree(p)
    (run / "checkpoints" / "best").unlink()


SETUPS: dict[str, Callable[[Path, Path], None]] = {
    "empty_run_dir": lambda run, tmp: (tmp / "empty-run").mkdir(),
    "truncate_model": lambda run, tmp: _truncate(_latest(run) / "model.safetensors"),
    "truncate_ema": lambda run, tmp: _truncate(_latest(run) / "ema.safetensors"),
    "remove_model": lambda run, tmp: (_latest(run) / "model.safetensors").unlink(),
    "remove_state": lambda run, tmp: (_latest(run) / "state.json").unlink(),
    "state_not_json": lambda run, tmp: (_latest(run) / "state.json").write_text('{"format_version": 1, "st'),
    "state_is_list": lambda run, tmp: (_latest(run) / "state.json").write_text("[1, 2, 3]"),
    "state_wrong_types": lambda run, tmp: _edit_state(run, step="two", epoch=[0], batch_in_epoch=None),
    "state_wrong_fields": lambda run, tmp: _edit_state(run, epoch=[0], batch_in_epoch=None),
    "newer_format": lambda run, tmp: _edit_state(run, format_version=ckpt.FORMAT_VERSION + 1),
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


def assert_one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr must be one line, got {len(lines)}:\n{stderr}"
    line = lines[0].strip()
    assert "Traceback" not in line and not _CLASS_DUMP.search(line), line
    assert len(line) >= 20 and line[-1] not in ":,;(", f"not a complete sentence: {line!r}"
    return line


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
        assert c["command"] in ("check", "train", "generate", "eval"), c["id"]
        assert c.get("setup") is None or c["setup"] in SETUPS, c["id"]
        assert isinstance(c["exit"], int) and isinstance(c["stderr"], str), c["id"]
    kinds = {c["command"] for c in CASES}
    assert kinds == {"check", "train", "generate", "eval"}


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
