"""Short run names in the Runs table (trm_tui.run_shelf.short_names)."""

from trm_tui.run_shelf import short_names


def test_grid_runs_are_named_by_the_keys_that_vary() -> None:
    runs = {
        "demo": [
            {
                "name": f"hidden_size-{h}_seed{s}",
                "overrides": {"model.hidden_size": h, "train.lr": 1e-3, "train.seed": s},
            }
            for h in (16, 32)
            for s in (0, 1)
        ]
    }
    names = short_names(runs)
    assert (
        names["demo/hidden_size-16_seed1"] == "demo/hidden_size=16 s1"
    )  # lr is the same everywhere: left out


def test_variant_runs_are_named_by_their_label_not_by_unset_keys() -> None:
    fixed = {"train.seed": 0}
    sampled = {"train.depth_sampling": "poisson-lognormal", "model.init_state": "noise", "train.seed": 0}
    runs = {
        "depth": [
            {"name": "fixed_seed0", "overrides": fixed},
            {"name": "sampled_seed0", "overrides": sampled},
            {"name": "sampled_seed1", "overrides": {**sampled, "train.seed": 1}},
        ]
    }
    names = short_names(runs)
    assert (
        names["depth/fixed_seed0"] == "depth/fixed s0"
    )  # was "depth/depth_sampling=None init_state=None s0"
    assert names["depth/sampled_seed1"] == "depth/sampled s1"
