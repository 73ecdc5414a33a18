"""Depth has one owner, and training for depth: the `Depth` object, the train.depth_* / backprop /
init_state / halt_bias_init keys, exact resume of a sampled depth, and exact decoding at depths a
randomized-depth model never trained at (tiny CPU models)."""

from __future__ import annotations

import pytest
import torch

from tests.test_model import at
from tests.test_train import of, tiny_profile, train
from trm_core.errors import UserError
from trm_core.model.depth import Depth
from trm_core.model.lm import build_model
from trm_core.profile import ModelConfig, ProfileError, parse_profile
from trm_core.training.depth_sampler import DepthSampler

V = 37


# --------------------------------------------------------------------------- the Depth object


def test_a_request_is_resolved_against_the_trained_depth_once() -> None:
    cfg = ModelConfig(H_cycles=2, L_cycles=3)
    trained = Depth.trained(cfg, supervision_steps=2, halt_threshold=0.7)
    assert trained == Depth(2, 2, 3, 0.7) and trained.complete
    assert Depth().resolve(trained) == trained
    assert Depth(H_cycles=16).resolve(trained) == Depth(2, 16, 3, 0.7)
    assert Depth(1, None, 1, 0.0).resolve(trained) == Depth(1, 2, 1, 0.0)
    # the baseline has no carry: one supervision step, whatever the profile says
    assert Depth.trained(ModelConfig(arch="transformer"), 4).supervision_steps == 1
    assert Depth(1, 8, 2, 0.5).label(act=True) == "S1-H8-L2-t0.5"


@pytest.mark.parametrize(
    "depth,arch,message",
    [
        (Depth(H_cycles=0), "trm", "--H-cycles must be between 1 and 256, got 0"),
        (Depth(L_cycles=257), "trm", "--L-cycles must be between 1 and 256, got 257"),
        (Depth(supervision_steps=0), "trm", "--supervision-steps must be between 1 and 256"),
        (Depth(halt_threshold=1.5), "trm", "--halt-threshold must be between 0 and 1"),
        (Depth(H_cycles=2), "transformer", "apply to TRM checkpoints only"),
    ],
)
def test_a_bad_depth_is_one_sentence(depth: Depth, arch: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        depth.check(arch)


def test_test_time_H_cycles_go_far_beyond_the_trained_value() -> None:
    assert Depth(H_cycles=16).check() == Depth(H_cycles=16)
    assert Depth(H_cycles=256, L_cycles=256).check()


# --------------------------------------------------------------------------- profile keys


@pytest.mark.parametrize(
    "text,message",
    [
        ('[train]\ndepth_sampling = "gauss"\n', "train.depth_sampling must be one of"),
        ("[train]\ndepth_min = 5\ndepth_max = 3\n", "train.depth_min (5) cannot exceed train.depth_max (3)"),
        ("[train]\ndepth_min = 0\n", "train.depth_min must be greater than 0"),
        ("[train]\ndepth_max = 1000\n", "train.depth_max must be at most 256"),
        ("[train]\ndepth_sigma = -1\n", "train.depth_sigma must be 0 or more"),
        (
            '[train]\ndepth_sampling = "poisson-lognormal"\ndepth_mean = 0.5\n',
            "train.depth_mean must be at least 1",
        ),
        ("[train]\nbackprop_depth = -1\n", "train.backprop_depth must be 0 or more"),
        ('[model]\ninit_state = "zeros"\n', "model.init_state must be one of 'learned', 'noise'"),
        ("[model]\nhalt_bias_init = 1e9\n", "model.halt_bias_init must be between -100 and 100"),
        (
            '[model]\narch = "transformer"\n[train]\ndepth_sampling = "uniform"\n',
            "train.depth_sampling needs model.arch = 'trm'",
        ),
    ],
)
def test_depth_keys_are_validated_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(text)
    assert len(e.value.problems) == 1 and message in e.value.problems[0]


def test_defaults_keep_todays_training() -> None:
    p = parse_profile("")
    t, m = p.train, p.model
    assert (t.depth_sampling, t.backprop_depth, m.init_state, m.halt_bias_init) == (
        "fixed",
        0,
        "learned",
        -5.0,
    )
    assert DepthSampler(t, m).depth(0) is None  # fixed: the model runs its own depth, as before


def test_sampled_depths_follow_their_distribution_and_are_seeded() -> None:
    p = parse_profile(
        '[model]\nH_cycles = 2\n[train]\ndepth_sampling = "poisson-lognormal"\ndepth_mean = 3\n'
    )
    s = DepthSampler(p.train, p.model)
    draws = [s.H_cycles(i) for i in range(2000)]
    assert draws == [DepthSampler(p.train, p.model).H_cycles(i) for i in range(2000)]  # a pure function
    assert 3.7 < sum(draws) / len(draws) < 4.2  # 1 + Poisson(λ), E[λ] = depth_mean (Huginn)
    assert min(draws) >= 1 and max(draws) <= 16 and max(draws) >= 9  # heavy tail, clipped
    other = DepthSampler(parse_profile(p.text.replace("[train]", "[train]\nseed = 1")).train, p.model)
    assert [other.H_cycles(i) for i in range(50)] != draws[:50]
    u = parse_profile('[train]\ndepth_sampling = "uniform"\ndepth_min = 2\ndepth_max = 5\n')
    us = [DepthSampler(u.train, u.model).H_cycles(i) for i in range(400)]
    assert set(us) == {2, 3, 4, 5}
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    s.H_cycles(7)
    assert torch.equal(torch.rand(1), before)  # its own generator: the global stream is untouched


def test_halt_bias_init_sets_the_q_heads_bias() -> None:
    for bias in (-5.0, -3.0):
        m = build_model(ModelConfig(hidden_size=32, num_heads=4, halting="act", halt_bias_init=bias), V)
        assert m.q_head is not None and torch.all(m.q_head.bias == bias)


def test_backprop_depth_builds_a_graph_through_the_last_k_cycles_only() -> None:
    model = build_model(ModelConfig(hidden_size=32, num_heads=4, num_layers=1, H_cycles=2, L_cycles=1), V)
    with_grad: list[bool] = []
    model.net.register_forward_hook(lambda mod, args, out: with_grad.append(out.requires_grad))
    x = torch.randint(0, V, (2, 6))
    model(x, depth=at(model, 1, cycles=(5, 1)), grad_cycles=2)
    assert with_grad == [False] * 6 + [True] * 4  # 5 H-cycles of 2 calls, the last 2 with grad


# --------------------------------------------------------------------------- training for depth


def _sampled(**changes: object):
    base = dict(
        train__depth_sampling="poisson-lognormal", train__depth_mean=2.0, train__depth_max=4,
        train__backprop_depth=1, model__init_state="noise", model__H_cycles=1,
    )  # fmt: skip
    return tiny_profile(**(base | changes))


def _record_depths(monkeypatch) -> list[int]:
    import trm_core.model.lm as lm

    seen: list[int] = []
    real = lm.CausalLM.forward

    def forward(self, *a, depth=None, **kw):
        if self.training:
            seen.append((depth or self.trained_depth).H_cycles)
        return real(self, *a, depth=depth, **kw)

    monkeypatch.setattr(lm.CausalLM, "forward", forward)
    return seen


@pytest.mark.parametrize("supervision,S,stop", [("accumulate", 1, 3), ("deep", 2, 5)])
def test_sampled_depth_trains_and_resumes_exactly(tmp_path, monkeypatch, supervision, S, stop) -> None:
    seen = _record_depths(monkeypatch)
    p = _sampled(
        train__supervision=supervision, train__supervision_steps=S, train__max_steps=8, train__eval_every=4
    )
    done_a, ev_a, _ = train(p, tmp_path / "a")
    assert done_a.reason == "finished", done_a.message
    depths_a = list(seen)
    assert len(set(depths_a)) > 1, "the test needs steps of different depths"
    seen.clear()
    done_b1, ev_b1, _ = train(p, tmp_path / "b", stop_at=stop)
    assert done_b1.step == stop
    done_b2, ev_b2, _ = train(p, tmp_path / "b")
    assert done_b2.reason == "finished" and of(ev_b2, "start")[0].resumed
    assert seen == depths_a  # the sampled sequence, again, across the resume
    la = [e.loss for e in of(ev_a, "step")]
    lb = [e.loss for e in of(ev_b1, "step") + of(ev_b2, "step")]
    assert len(la) == 8 and la == pytest.approx(lb, abs=1e-6)
    assert all(x == x for x in la)  # finite


# --------------------------------------------------------------------------- exact decoding at unseen depths


@pytest.fixture(scope="module")
def randomized_depth_model(tmp_path_factory):
    from trm_core.runs.inference import load_for_inference

    run = tmp_path_factory.mktemp("sampled") / "run"
    p = _sampled(train__max_steps=6, train__eval_every=100, train__depth_min=1, train__depth_max=2)
    done, _, _ = train(p, run)
    assert done.reason == "finished", done.message
    return load_for_inference(run, "latest", device="cpu", dtype="fp32").model.eval()


def _cached(model, x: torch.Tensor, prompt: int, depth: Depth, seed) -> torch.Tensor:
    cache = model.new_cache(x.shape[0], x.shape[1] + 2, depth, init_seed=seed)
    out = [model.forward_step(x[:, :prompt], cache)]
    out += [model.forward_step(x[:, t : t + 1], cache) for t in range(prompt, x.shape[1])]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("H", [1, 3, 8])
def test_a_randomized_depth_model_decodes_exactly_at_depths_it_never_trained_at(
    randomized_depth_model, H
) -> None:
    model = randomized_depth_model
    assert model.cfg.init_state == "noise"
    x = torch.randint(0, model.vocab_size, (2, 10), generator=torch.Generator().manual_seed(3))
    depth = at(model, 2, cycles=(H, 2))
    seeds = torch.tensor([5, 11])
    parallel = model.infer(x, depth, init_seed=seeds)
    assert (_cached(model, x, 4, depth, seeds) - parallel).abs().max() <= 1e-4
    # one token at a time through decode_one too (the CUDA-graph step)
    cache = model.new_cache(2, 12, depth, init_seed=seeds)
    model.forward_step(x[:, :4], cache)
    for t in range(4, 10):
        step = model.decode_one(x[:, t : t + 1], cache)
        assert (step[:, 0] - parallel[:, t]).abs().max() <= 1e-4
    # the noise start is the seed's: another seed is another computation
    assert (model.infer(x, depth, init_seed=seeds + 1) - parallel).abs().max() > 1e-3


def test_noise_of_a_position_does_not_depend_on_the_sequence_length() -> None:
    from trm_core.model.init_state import position_noise

    seeds = torch.tensor([0, 7])
    long = position_noise(seeds, torch.arange(40), 16, 0)
    assert torch.equal(position_noise(seeds, torch.arange(10), 16, 0), long[:, :10])
    assert torch.equal(position_noise(seeds, torch.tensor([[12], [12]]), 16, 0), long[:, 12:13])
    assert abs(float(long.mean())) < 0.15 and 0.85 < float(long.std()) < 1.15
    assert not torch.equal(long, position_noise(seeds, torch.arange(40), 16, 1))
