"""ACT (`model.halting = "act"`) under DDP: two CPU processes under torchrun (gloo), as test_ddp.

The Q-head runs outside the DDP-wrapped forward (on its output), so these check that its gradients
are still all-reduced: replicas end bit-identical with a trained Q-head, and one DDP backward gives
every rank the mean of the gradients each rank's batch gives a plain single-process model. With
`train.compile = "on"` the warm-up backward before the first step must reach the Q-head as well.
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

TRAIN_WORKER = """\
import json, os, sys
import torch
torch.set_num_threads(1)
from trm_core.profile import parse_profile
from trm_core.training import accel
from trm_core.training.trainer import Trainer
if sys.argv[5] == "warmup":  # compile's warm-up forward/backward through DDP, without inductor
    accel.cpu_compiler_available = lambda: True
    accel.compile_regions_for = lambda models, device: None
profile = parse_profile(open(sys.argv[1]).read())
trainer = Trainer(profile, sys.argv[2], max_steps=int(sys.argv[4]))
done = trainer.run()
params = {n: p.detach().double().flatten().tolist() for n, p in trainer.model.named_parameters()}
with open(os.path.join(sys.argv[3], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"reason": done.reason, "message": done.message, "step": done.step, "params": params}, f)
"""

# One batch per rank (different data), the ACT supervision step through DDP, against the same step
# run on a plain copy of the model (no DDP) per rank: DDP's gradients must be the ranks' mean.
GRAD_WORKER = """\
import copy, json, os, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
torch.set_num_threads(1)
from trm_core.model.lm import build_model
from trm_core.profile import ModelConfig
from trm_core.training.step import supervision_step
mode = sys.argv[2]
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
cfg = ModelConfig(hidden_size=32, num_heads=2, num_layers=1, H_cycles=2, L_cycles=1, halting="act")
model = build_model(cfg, 29)
with torch.no_grad():  # a Q-head that halts some tokens after the first pass
    model.q_head.weight.normal_(0, 0.5)
    model.q_head.bias.zero_()
plain = copy.deepcopy(model)
ddp = DDP(model, find_unused_parameters=False)
g = torch.Generator().manual_seed(100 + rank)
ids = torch.randint(0, 29, (4, 12), generator=g)
labels = ids.roll(-1, 1)
labels[:, :3] = -100  # a prompt: never halts early
labels[:, -1] = -100

def grads(m):
    out = {n: (p.grad.clone() if p.grad is not None else None) for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    return out

def run(m, fwd):
    per_pass, running = [], []
    def forward(x, carry, **kw):  # records which positions run each pass
        running.append(None if carry is None else carry.running.clone())
        return fwd(x, carry, **kw)
    after = (lambda _: per_pass.append(grads(m))) if mode == "deep" else None
    supervision_step(m, ids, labels, S=2, mode=mode, detach_carry=False, forward=forward,
                     after_pass=after, halt_exploration=0.0)
    if mode == "accumulate":
        per_pass.append(grads(m))
    return per_pass, running[1]

got, running = run(model, ddp)
local, running_plain = run(plain, plain)
assert torch.equal(running, running_plain)
halted = int((~running).sum())  # positions that halted after the first pass: the second is masked
worst = 0.0
for got_p, local_p in zip(got, local, strict=True):
    for name, g_ddp in got_p.items():
        assert g_ddp is not None, name
        mean = local_p[name].clone()
        dist.all_reduce(mean)
        mean /= world
        worst = max(worst, float((g_ddp - mean).abs().max() / mean.abs().max().clamp_min(1e-12)))
q_grad = float(got[0]["q_head.weight"].abs().max())
with open(os.path.join(sys.argv[1], f"grad{rank}.json"), "w") as f:
    json.dump({"worst": worst, "q_grad": q_grad, "passes": len(got), "halted": halted}, f)
del ddp
dist.barrier()  # no rank tears gloo down while the other still talks to it
dist.destroy_process_group()
"""


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _launch(tmp_path: Path, script: str, *args: str) -> None:
    (tmp_path / "worker.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [*torchrun(), "--standalone", "--nproc-per-node", "2", str(tmp_path / "worker.py"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# ("deep", "warmup"): train.compile = "on" (the default on CUDA) runs a warm-up forward and backward
# through DDP before the first step; it must reach the Q-head too, or DDP's next forward raises.
@pytest.mark.parametrize(
    "supervision,warmup",
    [("accumulate", "eager"), ("deep", "warmup")],  # deep eager: as warmup, minus the warm-up
)
def test_act_two_ranks_end_identical_with_a_trained_q_head(tmp_path, supervision, warmup):
    text = tiny_text(
        model__halting="act", train__supervision=supervision, train__supervision_steps=2, train__eval_every=2,
        train__compile="on" if warmup == "warmup" else "off",
    )  # fmt: skip
    (tmp_path / "tiny.toml").write_text(text)
    run = tmp_path / "run"
    _launch(tmp_path, TRAIN_WORKER, str(tmp_path / "tiny.toml"), str(run), str(tmp_path), "3", warmup)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["reason"] == r1["reason"] == "finished", (r0["message"], r1["message"])
    assert r0["step"] == r1["step"] == 3
    assert r0["params"] == r1["params"]  # bit-identical after all-reduced gradients, Q-head included
    w, b = r0["params"]["q_head.weight"], r0["params"]["q_head.bias"]
    assert any(x != 0.0 for x in w) and b != [-5.0]  # trained: moved from its init (0, -5)
    events, _ = read_events(run / "metrics.jsonl")
    assert sum(e.kind == "start" for e in events) == 1
    assert any(e.kind == "phase" and e.phase == "compiling" for e in events) == (warmup == "warmup")
    state = read_state(resolve_checkpoint(run, "latest"))
    assert state["world_size"] == 2
    assert state["has_carry"] == (supervision == "deep")  # deep: ends mid-batch, ACT's carry gathered


@pytest.mark.parametrize("mode", ["accumulate", "deep"])
def test_act_ddp_gradients_are_the_mean_of_single_process_gradients(tmp_path, mode):
    _launch(tmp_path, GRAD_WORKER, str(tmp_path), mode)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"grad{rank}.json").read_text())
        assert r["passes"] == (2 if mode == "deep" else 1)
        assert r["q_grad"] > 0.0
        assert 0 < r["halted"] < 4 * 8  # some labelled positions (8 a row) halted after pass 1
        assert r["worst"] <= 1e-5, r  # every parameter's gradient, the Q-head's included
