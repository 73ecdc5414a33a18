"""CPU attention precision under bf16 autocast (issue 29.1): fp32 attention is a speed choice, not
a numerical one. On a tiny model the loss and the gradients with fp32 attention equal those with
bf16 attention within bf16 rounding (each is as close to the fp32 reference as the other), and the
measured choice is cached per machine and overridable."""

from __future__ import annotations

import json

import pytest
import torch

from trm_core.model import attention_precision as ap
from trm_core.model.attention_precision import cpu_attention, cpu_attention_fp32
from trm_core.model.lm import build_model
from trm_core.profile import ModelConfig

BF16_LOSS_BOUND = 0.02  # relative |loss - fp32 loss| (bf16 keeps 8 mantissa bits)


def _loss_and_grads(model, ids, mode: str | None):
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode else torch.autocast("cpu", enabled=False)
    with ctx, cpu_attention(mode or "auto"):
        hidden, _ = model(ids)
        loss = model.loss(hidden, ids)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads


def test_fp32_attention_equals_bf16_attention_within_bf16_rounding():
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, num_heads=2, num_layers=1, H_cycles=1, L_cycles=2)
    model = build_model(cfg, 40)
    ids = torch.randint(0, 40, (4, 24))
    ref_loss, ref_g = _loss_and_grads(model, ids, None)  # everything fp32
    results = {mode: _loss_and_grads(model, ids, mode) for mode in ("fp32", "bf16")}
    for loss, g in results.values():
        assert abs(loss - ref_loss) / ref_loss < BF16_LOSS_BOUND
        assert torch.nn.functional.cosine_similarity(g, ref_g, dim=0) > 0.999
    (l32, g32), (l16, g16) = results["fp32"], results["bf16"]
    assert abs(l32 - l16) / ref_loss < BF16_LOSS_BOUND
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.999
    # and the override really switched the kernel's precision: the two runs are not bit-identical
    assert not torch.equal(g32, g16)


def test_choice_is_measured_once_cached_on_disk_and_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(ap.ENV, raising=False)
    monkeypatch.setattr(ap, "_chosen", {})
    calls = []

    def fake_measure(head_dim):  # bf16 1.5x slower: fp32 wins by more than the margin
        calls.append(head_dim)
        return {"bf16": 0.015, "fp32": 0.010}

    monkeypatch.setattr(ap, "measure", fake_measure)
    assert cpu_attention_fp32(32) and cpu_attention_fp32(32)
    assert calls == [32]  # once per process
    record = next(iter(json.loads(ap.cache_file().read_text()).values()))
    assert record["fp32"] is True and record["bf16_ms"] == pytest.approx(15.0)
    monkeypatch.setattr(ap, "_chosen", {})  # a new process on the same machine: read, not measured
    assert cpu_attention_fp32(32) and calls == [32]
    with cpu_attention("bf16"):
        assert not cpu_attention_fp32(32)
    monkeypatch.setenv(ap.ENV, "bf16")
    assert not cpu_attention_fp32(32)
    monkeypatch.setenv(ap.ENV, "auto")
    calls.clear()
    monkeypatch.setattr(ap, "measure", lambda hd: calls.append(hd) or {"bf16": 0.0105, "fp32": 0.010})
    assert not cpu_attention_fp32(64)  # within the margin: autocast's bf16 stays
    with pytest.raises(ValueError, match="one of auto, fp32, bf16"):
        with cpu_attention("fp16"):
            pass


def test_measure_times_both_precisions():
    t = ap.measure(16, rounds=1, batch_heads=2, length=16)
    assert set(t) == {"bf16", "fp32"} and all(v > 0 for v in t.values())
