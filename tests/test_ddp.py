"""Two CPU processes under torchrun (gloo): rank-sharded batches, DDP gradients, one writer.

Both ranks must end with identical parameters; only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trm_core.events import read_events
from trm_core.runs.read import read_state, resolve_checkpoint

from .test_train import tiny_text

REPO = Path(__file__).resolve().parents[1]

WORKER = """\
import json, os, sys
import torch
torch.set_num_threads(1)
from trm_core.profile import parse_profile
from trm_core.training.trainer import Trainer
profile = parse_profile(open(sys.argv[1]).read())
trainer = Trainer(profile, sys.argv[2], max_steps=int(sys.argv[4]))
done = trainer.run()
params = torch.cat([p.detach().double().flatten() for p in trainer.model.parameters()])
with open(os.path.join(sys.argv[3], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"reason": done.reason, "message": done.message, "step": done.step,
               "params": params.tolist()}, f)
"""


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.parametrize("supervision", ["accumulate", "deep"])
def test_two_ranks_end_identical(tmp_path, supervision):
    (tmp_path / "worker.py").write_text(WORKER)
    text = tiny_text(train__supervision=supervision, train__supervision_steps=2, train__eval_every=2)
    (tmp_path / "tiny.toml").write_text(text)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        *_torchrun(), "--standalone", "--nproc-per-node", "2", str(tmp_path / "worker.py"),
        str(tmp_path / "tiny.toml"), str(run), str(tmp_path), "3",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["reason"] == r1["reason"] == "finished", (r0["message"], r1["message"])
    assert r0["step"] == r1["step"] == 3
    assert r0["params"] == r1["params"]  # bit-identical after all-reduced gradients
    # one writer: a single metrics stream and checkpoints saved once
    events, _ = read_events(run / "metrics.jsonl")
    assert sum(e.kind == "start" for e in events) == 1
    state = read_state(resolve_checkpoint(run, "latest"))
    assert state["world_size"] == 2
    # deep, S=2, 3 steps: the run ends mid-batch, so each rank's carry was gathered into the checkpoint
    assert state["has_carry"] == (supervision == "deep")
