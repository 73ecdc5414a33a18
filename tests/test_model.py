"""The causal TRM and the transformer baseline: causality, exact KV-cached decoding, gradients, loss."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from trm_core.model.depth import Depth
from trm_core.model.layers import Rotary, swiglu_hidden_size
from trm_core.model.lm import Carry, CausalLM, build_model, count_parameters
from trm_core.profile import ModelConfig, Profile

V = 37  # a fake vocabulary size


def at(model, S: int, *, cycles=None, halt_threshold=None):  # noqa: ANN001, ANN201
    """The resolved Depth of S supervision steps (cycles (H, L) and threshold: the model's own when None)."""
    H, L = cycles or (None, None)
    return Depth(S, H, L, halt_threshold).resolve(Depth.trained(model.cfg))


def make(arch: str = "trm", *, seed: int = 0, **kw) -> CausalLM:
    torch.manual_seed(seed)
    defaults = dict(
        arch=arch, hidden_size=32, num_heads=4, num_layers=2, H_cycles=2, L_cycles=2, grad_cycles=1
    )
    return build_model(ModelConfig(**(defaults | kw)), V)


def ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("arch", ["trm", "transformer"])
def test_changing_token_t_leaves_earlier_logits_unchanged(arch: str) -> None:
    model = make(arch, H_cycles=2, L_cycles=3).eval()
    a = ids(2, 12)
    b = a.clone()
    t = 7
    b[:, t] = (b[:, t] + 1) % V

    def two_steps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            hidden1, carry = model(x)
            hidden2, _ = model(x, carry)  # the second supervision step starts from the carry
        return model.logits(hidden1), model.logits(hidden2)

    for la, lb in zip(two_steps(a), two_steps(b), strict=True):
        assert torch.equal(la[:, :t], lb[:, :t])
        assert not torch.allclose(la[:, t], lb[:, t])


# --------------------------------------------------------------------------- KV-cached decoding


CACHE_SETTINGS = [
    # arch, H_cycles, L_cycles, supervision_steps, num_layers
    ("trm", 1, 1, 1, 1),
    ("trm", 2, 3, 2, 2),
    ("trm", 3, 2, 3, 1),
    ("transformer", 1, 1, 1, 3),
]


@pytest.mark.parametrize("arch,H,L,S,layers", CACHE_SETTINGS)
def test_cached_decoding_equals_parallel_infer(arch: str, H: int, L: int, S: int, layers: int) -> None:
    model = make(arch, H_cycles=H, L_cycles=L, num_layers=layers).eval()
    x = ids(2, 14)
    ref = model.infer(x, at(model, S))
    cache = model.new_cache(2, 16, at(model, S))
    for chunks in ([1] * 14, [5, 1, 3, 2, 1, 2]):
        cache.reset()
        out, start = [], 0
        for n in chunks:
            out.append(model.forward_step(x[:, start : start + n], cache))
            start += n
        assert cache.pos == 14
        assert (torch.cat(out, 1) - ref).abs().max() <= 1e-4, chunks


@pytest.mark.parametrize("arch", ["trm", "transformer"])
def test_decode_one_equals_forward_step(arch: str) -> None:
    model = make(arch).eval()
    x = ids(3, 10)
    ref = model.infer(x, at(model, 2))
    cache = model.new_cache(3, 12, at(model, 2))
    model.forward_step(x[:, :4], cache)
    out = [model.decode_one(x[:, t : t + 1], cache) for t in range(4, 10)]
    assert cache.pos == 4 and int(cache.pos_t) == 10  # decode_one leaves the host pos to the caller
    cache.pos += len(out)  # as the caller does (generation/sessions.py)
    assert (torch.cat(out, 1) - ref[:, 4:]).abs().max() <= 1e-4
    last = model.forward_step(x[:, :4], model.new_cache(3, 12, at(model, 2)), last_only=True)
    assert last.shape == (3, 1, V) and (last - ref[:, 3:4]).abs().max() <= 1e-4


def test_left_padded_batch_equals_unpadded_rows() -> None:
    model = make("trm", H_cycles=2, L_cycles=2).eval()
    S = 2
    prompts = [ids(1, 6, seed=3)[0], ids(1, 3, seed=4)[0]]
    cont = ids(2, 4, seed=5)  # tokens fed one by one after the prompts
    P = 6
    padded = torch.zeros(2, P, dtype=torch.long)
    pad_mask = torch.zeros(2, P + 4, dtype=torch.bool)
    for r, p in enumerate(prompts):
        padded[r, P - len(p) :] = p
        pad_mask[r, : P - len(p)] = True

    for decode in ("forward_step", "decode_one"):
        cache = model.new_cache(2, P + 4, at(model, S))
        prefill = model.forward_step(padded, cache, pad_mask)
        steps = [getattr(model, decode)(cont[:, t : t + 1], cache) for t in range(4)]
        for r, p in enumerate(prompts):
            ref = model.infer(torch.cat([p, cont[r]])[None], at(model, S))[0]
            got = torch.cat([prefill[r, P - len(p) :], torch.cat(steps, 1)[r]])
            assert (got - ref).abs().max() <= 1e-4, (decode, r)


def test_explicit_positions_match_derived_ones() -> None:
    model = make("trm").eval()
    x = ids(1, 5)
    ref = model.infer(x, at(model, 1))
    cache = model.new_cache(1, 8, at(model, 1))
    out = model.forward_step(x, cache, positions=torch.arange(5)[None])
    assert (out - ref).abs().max() <= 1e-4


def test_cache_overflow_raises() -> None:
    model = make("trm").eval()
    cache = model.new_cache(1, 4, at(model, 1))
    model.forward_step(ids(1, 3), cache)
    with pytest.raises(ValueError, match="KV cache full"):
        model.forward_step(ids(1, 2), cache)


def test_rope_far_positions() -> None:
    cos, sin = Rotary(8, 10000.0)(torch.tensor([0, 3000, 100_000]))
    assert cos.shape == (1, 1, 3, 8) and torch.isfinite(cos).all() and torch.isfinite(sin).all()
    assert torch.allclose(cos[0, 0, 0], torch.ones(8))
    # a sequence longer than anything seen before, and cached decoding at position 3000
    model = make("transformer", hidden_size=16, num_heads=2, num_layers=1).eval()
    x = ids(1, 3001)
    ref = model.infer(x, at(model, 1))
    assert torch.isfinite(ref).all()
    assert (ref[:, :8] - model.infer(x[:, :8], at(model, 1))).abs().max() <= 1e-4
    cache = model.new_cache(1, 3001, at(model, 1))
    model.forward_step(x[:, :3000], cache)
    assert (model.decode_one(x[:, 3000:], cache) - ref[:, 3000:]).abs().max() <= 1e-4


def test_rope_roll_form_equals_rotate_half_bit_for_bit() -> None:
    # apply_rope uses roll + a signed sine (fewer kernels per decode step); it must give exactly
    # the textbook rotate-half result, so old checkpoints decode the same.
    from trm_core.model.layers import apply_rope

    hd = 16
    positions = torch.tensor([[0, 1, 7, 4000], [3, 2, 1, 0]])
    cos, signed_sin = Rotary(hd, 10000.0)(positions)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    emb = (positions.float().unsqueeze(-1) * inv_freq).repeat(1, 1, 2).unsqueeze(1)
    x = torch.randn(2, 3, 4, hd)
    x1, x2 = x.chunk(2, dim=-1)
    expected = x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()
    assert torch.equal(apply_rope(x, (cos, signed_sin)), expected)
    # q and k stacked in front ([2, B, H, T, hd]) rotate like each alone
    qk = torch.randn(2, 2, 3, 4, hd)
    both = apply_rope(qk, (cos, signed_sin))
    assert torch.equal(both[0], apply_rope(qk[0], (cos, signed_sin)))
    assert torch.equal(both[1], apply_rope(qk[1], (cos, signed_sin)))


def test_bf16_model_cached_decoding_matches_its_own_recompute() -> None:
    # a model cast to bf16 (the default on CUDA) takes the additive-mask path in bf16
    model = make("trm").eval().to(torch.bfloat16)
    x = ids(2, 8)
    ref = model.infer(x, at(model, 2)).float()
    cache = model.new_cache(2, 8, at(model, 2))
    pad = torch.zeros(2, 8, dtype=torch.bool)
    out = [model.forward_step(x[:, :4], cache, pad)] + [
        model.decode_one(x[:, t : t + 1], cache) for t in range(4, 8)
    ]
    assert (torch.cat(out, 1).float() - ref).abs().max() < 0.1
    assert torch.equal(torch.cat(out, 1).argmax(-1), ref.argmax(-1))


# --------------------------------------------------------------------------- gradients and carry


def _grad_norms(model: CausalLM, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    hidden, _ = model(x)
    model.loss(hidden, x).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_grad_cycles_limits_the_graph_to_the_last_cycles() -> None:
    H, L = 3, 2
    model = make("trm", H_cycles=H, L_cycles=L, grad_cycles=1)
    with_grad: list[bool] = []
    model.net.register_forward_hook(lambda mod, args, out: with_grad.append(out.requires_grad))
    x = ids(2, 6)
    g1 = _grad_norms(model, x)
    assert with_grad == [False] * (2 * (L + 1)) + [True] * (L + 1)
    assert all(g.abs().sum() > 0 for g in g1)

    with_grad.clear()
    model.cfg.grad_cycles = H
    gH = _grad_norms(model, x)
    assert with_grad == [True] * (H * (L + 1))
    assert any(not torch.allclose(a, b) for a, b in zip(g1, gH, strict=True))


def test_detach_carry() -> None:
    model = make("trm")
    x = ids(2, 5)
    _, carry = model(x)
    assert isinstance(carry, Carry) and carry.z_H.shape == (2, 5, 32)
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad
    _, carry = model(x, detach_carry=False)
    assert carry.z_H.requires_grad and carry.z_L.requires_grad
    hidden, _ = model(x, carry)  # the carry comes in from the previous step
    assert hidden.shape == (2, 5, 32)
    assert make("transformer")(x)[1] is None


# --------------------------------------------------------------------------- loss


@pytest.mark.parametrize("tie", [True, False])
def test_chunked_loss_equals_full_cross_entropy(tie: bool) -> None:
    model = make("transformer", tie_embeddings=tie, num_layers=1)
    x = ids(3, 7)
    labels = ids(3, 7, seed=9)
    labels[0, :3] = -100
    labels[2, 5:] = -100
    hidden = model(x)[0]

    full = F.cross_entropy(model.logits(hidden).flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
    full_grads = torch.autograd.grad(full, list(model.parameters()), retain_graph=True)
    chunked = model.loss(hidden, labels, chunk_size=4)
    chunked_grads = torch.autograd.grad(chunked, list(model.parameters()))
    assert torch.allclose(chunked, full, atol=1e-5)
    for a, b in zip(chunked_grads, full_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_all_ignored_labels_give_zero_loss_with_grad() -> None:
    model = make("trm")
    hidden = model(ids(2, 4))[0]
    loss = model.loss(hidden, torch.full((2, 4), -100))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()


# --------------------------------------------------------------------------- init and training


def test_random_init_is_stable_through_deep_recursion() -> None:
    model = make("trm", hidden_size=64, H_cycles=3, L_cycles=6).eval()
    logits = model.infer(ids(2, 16), at(model, 2))
    assert torch.isfinite(logits).all()
    assert 0.2 < logits.std().item() < 5.0


@pytest.mark.parametrize("arch", ["trm", "transformer"])
def test_a_tiny_model_learns_a_repeated_sequence(arch: str) -> None:
    model = make(arch, H_cycles=2, L_cycles=2)
    x = torch.arange(12).repeat(2, 2) % V  # [2, 24], a repeated pattern
    labels = torch.cat([x[:, 1:], torch.full((2, 1), -100)], 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(model(x)[0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------- construction


def test_swiglu_hidden_size() -> None:
    assert swiglu_hidden_size(512, 4.0) == 1408  # round(1365.33) up to a multiple of 64
    assert swiglu_hidden_size(32, 4.0) == 88  # round(85.33) up to a multiple of 8


def test_build_model_and_count_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("trm_core.data.tokenizers")
    fake.build_tokenizer = lambda spec: types.SimpleNamespace(vocab_size=V)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trm_core.data.tokenizers", fake)
    profile = Profile()
    profile.model = ModelConfig(hidden_size=32, num_heads=4)
    tied = count_parameters(profile)
    assert tied == sum(p.numel() for p in build_model(profile.model, V).parameters())
    profile.model.tie_embeddings = False
    assert count_parameters(profile) == tied + V * 32
    with pytest.raises(ValueError):
        build_model(ModelConfig(arch="rnn"), V)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- GPU-readiness, checked on CPU


def test_decode_one_traces_as_one_graph() -> None:
    """No graph break (no .item(), no data-dependent shape): what CUDA-graph capture needs."""
    model = make("trm").eval()
    x = ids(2, 8)
    ref = model.infer(x, at(model, 2))
    cache = model.new_cache(2, 8, at(model, 2))
    model.forward_step(x[:, :5], cache)
    torch._dynamo.reset()
    compiled = torch.compile(model.decode_one, backend="eager", fullgraph=True)
    out = [compiled(x[:, t : t + 1], cache) for t in range(5, 8)]
    assert int(cache.pos_t) == 8
    assert (torch.cat(out, 1) - ref[:, 5:]).abs().max() <= 1e-4


def test_bf16_autocast_training_and_cached_decoding() -> None:
    model = make("trm")
    x = ids(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, carry = model(x)
        loss = model.loss(hidden, x)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model.infer(x, at(model, 2)).float()
        cache = model.new_cache(2, 8, at(model, 2), dtype=torch.bfloat16)
        out = [model.forward_step(x[:, :4], cache)] + [
            model.decode_one(x[:, t : t + 1], cache) for t in range(4, 8)
        ]
    assert (torch.cat(out, 1).float() - ref).abs().max() < 0.1


def test_cache_made_under_inference_mode_works_outside_it() -> None:
    model = make("trm").eval()
    x = ids(2, 6)
    ref = model.infer(x, at(model, 2))
    with torch.inference_mode():
        cache = model.new_cache(2, 6, at(model, 2))
        first = model.forward_step(x[:, :4], cache)
    rest = [model.decode_one(x[:, t : t + 1], cache) for t in range(4, 6)]
    assert (torch.cat([first, *rest], 1) - ref).abs().max() <= 1e-4
