"""ACT per token and test-time depth: exact KV-cached adaptive decoding, real skipped compute."""

from __future__ import annotations

import pytest
import torch

from tests.test_model import at
from trm_core.model.halting import exploration_min_depth, halt_logit, still_running
from trm_core.model.lm import CausalLM, build_model
from trm_core.profile import ModelConfig, Profile, ProfileError, diff, parse_profile

V = 37


def make(*, seed: int = 0, halting: str = "act", **kw) -> CausalLM:
    torch.manual_seed(seed)
    cfg = dict(hidden_size=32, num_heads=4, num_layers=2, H_cycles=2, L_cycles=2, halting=halting)
    model = build_model(ModelConfig(**(cfg | kw)), V).eval()
    if model.q_head is not None:
        # a trained-looking Q-head: logits spread around 0, so positions halt at different steps
        with torch.no_grad():
            model.q_head.weight.normal_(0, 1.0)
            model.q_head.bias.zero_()
            probe, _ = model.infer_depth(ids(2, 12, seed=9), at(model, 1))
            model.q_head.bias.fill_(-model.q_halt(probe).median().item())
    return model


def ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def decode_cached(model: CausalLM, x: torch.Tensor, prompt: int, S: int, *, one: bool = False, **kw):
    """Prefill `prompt` positions, then feed the rest one by one: (logits [B,T,V], depth [B,T])."""
    B, T = x.shape
    cache = model.new_cache(B, T + 3, at(model, S, **kw))
    out = [model.forward_step(x[:, :prompt], cache)]
    for t in range(prompt, T):
        step = model.decode_one if one else model.forward_step
        out.append(step(x[:, t : t + 1], cache))
        if one:
            cache.pos += 1  # decode_one advances pos_t only; the caller advances pos (sessions.py)
    return torch.cat(out, dim=1), cache.depths(0, T).clone()


@pytest.mark.parametrize("S,H,L", [(2, 1, 1), (3, 2, 1), (4, 1, 2)])
def test_cached_adaptive_decoding_equals_parallel_forward_with_the_same_halting(
    S: int, H: int, L: int
) -> None:
    model = make(H_cycles=H, L_cycles=L)
    x = ids(2, 11)
    cached, depth = decode_cached(model, x, 4, S)
    assert depth.min() >= 1 and depth.max() <= S
    assert len(set(depth.flatten().tolist())) > 1, "the test needs positions of different depths"
    parallel, _ = model.infer_depth(x, at(model, S), halt_steps=depth)
    assert (cached - model.logits(parallel)).abs().max() <= 1e-4
    # the parallel forward's own Q-head decisions are the cached decoder's
    hidden, own = model.infer_depth(x, at(model, S))
    assert torch.equal(own, depth)
    # decode_one (the CUDA-graph step: every step computed, halted positions masked) agrees
    graphable, depth_one = decode_cached(model, x, 4, S, one=True)
    assert torch.equal(depth_one, depth)
    assert (graphable - model.logits(hidden)).abs().max() <= 1e-4


def test_a_halted_position_is_not_a_key_of_later_steps() -> None:
    """Forcing one early position to halt at step 1 changes later positions' logits (it is no
    longer attended at steps 2..S), and the cache reproduces exactly that."""
    model = make(H_cycles=1, L_cycles=1)
    x = ids(1, 8)
    S = 3
    full = torch.full((1, 8), S)
    early = full.clone()
    early[0, 2] = 1
    a = model.logits(model.infer_depth(x, at(model, S), halt_steps=full)[0])
    b = model.logits(model.infer_depth(x, at(model, S), halt_steps=early)[0])
    assert torch.equal(a[:, :2], b[:, :2])  # causal: earlier positions untouched
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-3


def count_net_calls(model: CausalLM) -> list[int]:
    calls = [0]
    model.net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("threshold,steps_run", [(0.0, 1), (1.0, 3)])
def test_a_token_that_halts_at_step_one_costs_one_step_of_net_calls(threshold: float, steps_run: int) -> None:
    model = make(H_cycles=2, L_cycles=3)
    S = 3
    cache = model.new_cache(1, 16, at(model, S, halt_threshold=threshold))
    model.forward_step(ids(1, 5), cache)
    calls = count_net_calls(model)
    model.forward_step(ids(1, 1, seed=2), cache)
    assert cache.depths(5, 6).item() == steps_run
    assert calls[0] == steps_run * model.calls_for(model.trained_depth) == steps_run * 2 * (3 + 1)


def test_positions_that_may_not_halt_run_every_step() -> None:
    model = make()
    S = 3
    cache = model.new_cache(
        1, 16, at(model, S, halt_threshold=0.0)
    )  # everything that may halt, halts at once
    may_halt = torch.tensor([[False] * 5 + [True]])
    model.forward_step(ids(1, 6), cache, may_halt=may_halt)
    assert cache.depths(0, 6).tolist() == [[S] * 5 + [1]]
    _, depth = model.infer_depth(ids(1, 6), at(model, S, halt_threshold=0.0), may_halt=may_halt)
    assert depth.tolist() == [[S] * 5 + [1]]


def test_left_padded_adaptive_batch_equals_its_rows_alone() -> None:
    model = make()
    S = 3
    a, b = ids(1, 7, seed=3), ids(1, 4, seed=4)
    cache = model.new_cache(2, 16, at(model, S))
    pad = torch.zeros(2, 16, dtype=torch.bool)
    pad[1, :3] = True
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    logits = model.forward_step(batch, cache, pad)
    nxt = torch.tensor([[5], [6]])
    step = model.forward_step(nxt, cache)
    for row, (p, n) in enumerate([(a, 5), (b, 6)]):
        alone, _ = decode_cached(model, torch.cat([p, torch.tensor([[n]])], 1), p.shape[1], S)
        assert (logits[row, -p.shape[1] :] - alone[0, :-1]).abs().max() <= 1e-4
        assert (step[row] - alone[0, -1:]).abs().max() <= 1e-4


# --------------------------------------------------------------------------- test-time depth


@pytest.mark.parametrize("halting", ["none", "act"])
@pytest.mark.parametrize("S,cycles", [(1, (1, 1)), (3, (3, 1)), (2, (1, 4))])
def test_any_depth_at_inference_is_cached_exactly(halting: str, S: int, cycles: tuple[int, int]) -> None:
    model = make(halting=halting, H_cycles=2, L_cycles=2)
    x = ids(2, 9)
    cached, depth = decode_cached(model, x, 3, S, cycles=cycles)
    parallel, _ = model.infer_depth(x, at(model, S, cycles=cycles), halt_steps=depth)
    assert (cached - model.logits(parallel)).abs().max() <= 1e-4
    assert model.calls_for(at(model, S, cycles=cycles)) == cycles[0] * (cycles[1] + 1)
    if halting == "none":
        assert torch.equal(depth, torch.full_like(depth, S))
        # a different depth is a different computation
        trained = model.infer(x, at(model, S))
        assert (trained - model.logits(parallel)).abs().max() > 1e-4 or cycles == (2, 2)


def test_halting_none_builds_the_same_model_as_before() -> None:
    a, b = make(halting="none"), build_model(ModelConfig(hidden_size=32, num_heads=4, num_layers=2), V)
    assert a.q_head is None and "q_head.weight" not in a.state_dict()
    assert set(a.state_dict()) == set(b.state_dict())
    assert a.new_cache(1, 8, at(a, 2)).running is None


def test_act_q_head_starts_far_from_halting() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=32, num_heads=4, num_layers=2, halting="act"), V)
    q = model.q_halt(torch.randn(2, 3, 32))
    assert torch.allclose(q, torch.full_like(q, -5.0))


# --------------------------------------------------------------------------- halting rules


def halt_decisions(step: int, steps: int, q: torch.Tensor, running: torch.Tensor, **kw) -> torch.Tensor:
    """The running positions the policy halts after `step`: those running now and not next."""
    return running & ~still_running(step, steps, q, running, **kw)


def test_halt_decisions() -> None:
    q = torch.tensor([[-1.0, 0.5, 3.0]])
    running = torch.tensor([[True, True, False]])
    assert halt_decisions(0, 3, q, running, threshold=0.5).tolist() == [[False, True, False]]
    assert halt_decisions(2, 3, q, running).tolist() == [[True, True, False]]  # the last step
    assert halt_decisions(0, 3, q, running, threshold=0.0).tolist() == [[True, True, False]]
    assert halt_decisions(0, 3, q, running, threshold=1.0).tolist() == [[False, False, False]]
    assert halt_decisions(0, 3, q, running, min_depth=torch.tensor([[1, 2, 1]])).tolist() == [
        [False, False, False]
    ]
    assert halt_decisions(1, 3, q, running, min_depth=torch.tensor([[1, 2, 1]])).tolist() == [
        [False, True, False]
    ]
    assert halt_logit(0.5) == 0.0


def test_exploration_min_depth() -> None:
    torch.manual_seed(0)
    d = exploration_min_depth((1000,), 4, 0.3, device=torch.device("cpu"))
    assert d is not None and d.min() == 1 and d.max() == 4
    assert 0.2 < (d > 1).float().mean() < 0.4
    assert exploration_min_depth((10,), 4, 0.0, device=torch.device("cpu")) is None


# --------------------------------------------------------------------------- profile keys


def test_profile_keys_are_graded() -> None:
    base = Profile()
    act = parse_profile('[model]\nhalting = "act"\n[train]\nsupervision_steps = 3\n')
    grades = {m.key: m.severity for m in diff(base, act)}
    assert grades["model.halting"] == "incompatible"
    other = parse_profile("[train]\nhalt_exploration = 0.3\n[generate]\nhalt_threshold = 0.8\n")
    grades = {m.key: m.severity for m in diff(base, other)}
    assert grades == {"train.halt_exploration": "changes-training", "generate.halt_threshold": "harmless"}


@pytest.mark.parametrize(
    "text,problem",
    [
        ('[model]\nhalting = "yes"\n', "model.halting must be one of 'none', 'act'"),
        ("[train]\nhalt_exploration = 1.5\n", "train.halt_exploration must be between 0 and 1"),
        ("[generate]\nhalt_threshold = -0.1\n", "generate.halt_threshold must be between 0 and 1"),
        (
            '[model]\narch = "transformer"\nhalting = "act"\n',
            "model.halting = 'act' needs model.arch = 'trm'",
        ),
    ],
)
def test_bad_halting_keys_are_one_sentence(text: str, problem: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(text)
    assert problem in str(e.value)


# --------------------------------------------------------------------------- training


def test_act_pass_halts_only_labelled_positions_and_trains_the_q_head() -> None:
    from trm_core.training.act import act_pass, predictions_right

    model = make().train()
    x = ids(2, 10)
    lab = x.roll(-1, 1)
    lab[:, :4] = -100  # the prompt: no label
    S, carry, ran = 3, None, []
    for s in range(S):
        r = act_pass(model, x, lab, carry, s, S)
        r.loss.backward()
        assert r.halt_loss > 0 and r.lm_loss > 0
        assert r.carry.running is not None
        ran.append(r.ran)
        carry = r.carry
        if s < S - 1:
            assert r.carry.running[:, :4].all(), "unlabeled positions run every step"
    assert not carry.running.any()  # everything halts after the last step
    assert ran[0] == 12 and ran[1] < ran[0], "some labelled positions halted after step 1"
    assert model.q_head.weight.grad is not None and model.q_head.weight.grad.abs().sum() > 0
    right = predictions_right(model, torch.randn(2, 10, 32), lab)
    assert not right[:, :4].any()


def test_exploration_keeps_tokens_running() -> None:
    from trm_core.training.act import act_pass

    model = make()
    with torch.no_grad():
        model.q_head.bias.fill_(50.0)  # the Q-head wants every token to halt at once
    x = ids(4, 16)
    lab = x.roll(-1, 1)
    calm = act_pass(model, x, lab, None, 0, 4)
    assert not calm.carry.running.any()
    explored = act_pass(model, x, lab, None, 0, 4, exploration=0.5)
    share = explored.carry.running.float().mean().item()
    assert 0.3 < share < 0.7
