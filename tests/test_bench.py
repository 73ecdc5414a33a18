"""`trm-tui bench`: the JSON schema, greedy agreement of decode paths, chunked == full loss (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trm_core.bench.common import layer_passes, train_step_flops
from trm_core.bench.train import loss_pair
from trm_core.cpu_info import cpu_has_native_bf16
from trm_core.data.batches import IGNORE_INDEX
from trm_core.model.lm import build_model
from trm_core.profile import ModelConfig
from trm_tui.__main__ import main


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    rc = main(["bench", "--quick", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def test_quick_json_schema(quick_json: dict) -> None:
    d = quick_json
    assert d["device"].startswith("cpu")
    for key in ("hidden_size", "layer_passes_per_token", "vocab_size", "batch_size", "seq_len"):
        assert isinstance(d["shape"][key], int)
    assert d["train"]["fixed_shape"] == [d["shape"]["batch_size"], d["shape"]["seq_len"]]
    for variant in ("baseline", "optimized", "optimized_bucketed"):
        r = d["train"][variant]
        assert r["tokens_per_s"] > 0 and r["tflops"] > 0 and r["peak_memory_gib"] > 0
    assert d["train"]["optimized"]["mfu"] is None  # no measured CPU peak
    if cpu_has_native_bf16():  # the CPU's bf16 step with attention in both precisions (issue 29.1)
        rows = [d["train"][f"optimized_bf16_attn_{a}"] for a in ("bf16", "fp32")]
        assert [r["config"]["attention"] for r in rows] == ["bf16", "fp32"]
        assert all(r["tokens_per_s"] > 0 for r in rows)
        eager = d["train"]["bf16_bucketed_eager"]  # the compiled row needs a compile: not in --quick
        assert eager["config"]["compile"] == "off" and eager["tokens_per_s"] > 0
        assert "bf16_bucketed_compiled" not in d["train"]
    assert d["decode"]["full_recompute"]["ms_per_token"] > 0
    assert d["decode"]["kv_cache"]["ms_per_token"] > 0
    assert d["decode"]["cuda_graph"]["ms_per_token"] is None
    assert d["eval"]["problems_per_s"] > 0
    assert d["ok"] is True


def test_quick_greedy_tokens_agree(quick_json: dict) -> None:
    dec = quick_json["decode"]
    assert dec["full_recompute"]["tokens_agree"] and dec["kv_cache"]["tokens_agree"]
    assert dec["kv_cache"]["new_tokens"] == dec["full_recompute"]["new_tokens"] > 0


def test_quick_optimized_loss_equals_baseline(quick_json: dict) -> None:
    assert quick_json["train"]["loss_check"]["abs_diff"] < 1e-4


def test_chunked_loss_equals_full_cross_entropy() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, num_heads=4, num_layers=2, H_cycles=2, L_cycles=2)
    model = build_model(cfg, 97)
    ids = torch.randint(0, 97, (3, 20))
    labels = torch.randint(0, 97, (3, 20))
    labels[:, :6] = IGNORE_INDEX  # a masked prompt
    labels[2, 15:] = IGNORE_INDEX  # right padding
    full, chunked = loss_pair(model, ids, labels)
    assert chunked == pytest.approx(full, rel=1e-5, abs=1e-6)


def test_flop_formula_counts_every_pass() -> None:
    cfg = ModelConfig(hidden_size=512, num_heads=8, num_layers=2, H_cycles=3, L_cycles=6, grad_cycles=1)
    assert layer_passes(cfg) == (42, 14)
    D, inter, V, T = 512, 1408, 50257, 512  # SwiGLU width of hidden 512, expansion 4
    per = 8 * D * D + 6 * D * inter + 2 * T * D
    expect = (42 + 2 * 14) * 32 * T * per + 6 * D * V * 1000
    assert train_step_flops(cfg, V, 32, T, 1000) == expect


def test_unknown_section_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["bench", "--quick", "--device", "cpu", "--sections", "nope"])
    assert rc == 1
    assert "unknown bench section" in capsys.readouterr().err


def test_packed_batches_are_full_and_shifted() -> None:
    from trm_core.bench.train import packed_batches
    from trm_core.data.synthetic import generate_examples
    from trm_core.data.tokenizers import build_tokenizer

    tok = build_tokenizer("byte")
    batches = packed_batches(generate_examples(3, seed=0), tok, 2, 64, 3)  # few problems: cycled
    assert len(batches) == 3
    for b in batches:
        assert b.input_ids.shape == b.labels.shape == (2, 64) and b.num_tokens == 128
        assert (b.labels != IGNORE_INDEX).all()
        assert torch.equal(b.input_ids[:, 1:], b.labels[:, :-1])


def test_train_section_runs_act_models_with_halting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An ACT profile's train timing goes through `act_pass` (halting loss and decisions) on every
    pass of every timed batch, not through the fixed-depth forward."""
    import trm_core.training.step as step

    calls: list[int] = []
    real = step.act_pass

    def spy(*args, **kwargs):
        calls.append(args[4])  # the pass index
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "act_pass", spy)
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--device", "cpu", "--profile", "quickstart-act", "--sections", "train"]
    assert main([*argv, "--skip-baseline", "--repeats", "1", "--json", str(out)]) == 0
    train = json.loads(out.read_text())["train"]
    assert train["supervision_steps"] == 2
    assert calls and set(calls) == {0, 1}
    assert calls.count(0) == calls.count(1)
