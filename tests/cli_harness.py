"""The CLI harness shared by test_bad_inputs, test_crash_safety and test_no_code_exec: run `trm-tui` in a
fresh interpreter or in forked children of one warm one, snapshot a tree of files and compare snapshots.

The `cli_server` and `trained_run` fixtures built on it live in tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "bad_inputs"

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
import trm_core.runs.checkpoint, trm_core.training.trainer, trm_core.generation.generator, trm_core.evaluation.evaluate, trm_core.model.lm, trm_core.data.batches
import trm_tui.commands.check, trm_tui.commands.train, trm_tui.commands.generate, trm_tui.commands.eval

# Warm up: the first training step and the first generation pay for lazy imports and kernel set-up
# (seconds); paid once here, never again by the forked children. One thread: nothing to fork badly.
torch.set_num_threads(1)
from trm_core.profile import load_profile
from trm_core.generation.generator import Generator
warm = os.path.join(sys.argv[1], "warm-up-run")
trm_core.training.trainer.Trainer(load_profile(sys.argv[2]), warm).run()
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
                resolved = Path(os.path.realpath(p))  # Path.resolve raises on a symlink loop
                what = "dangling"
                if resolved.is_char_device() or resolved.is_fifo():
                    what = "special"
                elif resolved.is_file():
                    what = hashlib.sha256(resolved.read_bytes()).hexdigest()
                elif resolved.is_dir():
                    what = "dir:" + ",".join(sorted(os.listdir(resolved)))
                out[rel] = f"link {target} {what}"
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def assert_one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr must be one line, got {len(lines)}:\n{stderr}"
    line = lines[0].strip()
    assert "Traceback" not in line and not _CLASS_DUMP.search(line), line
    assert len(line) >= 20 and line[-1] not in ":,;(", f"not a complete sentence: {line!r}"
    return line
