"""Sweeps, the queue, evaluation records and the comparison, end to end on a tiny model (byte tokenizer)."""

from __future__ import annotations

import json
import math
import shlex
import statistics
from pathlib import Path

import pytest

from .cli_harness import CORPUS

GOOD = CORPUS / "profiles" / "good.toml"

SWEEP = f"""
name = "tiny"
base = "{GOOD}"
seeds = [0, 1]
[set]
"train.max_steps" = 4
"train.ema" = false
"train.checkpoint_every" = 2
"train.eval_every" = 2
[grid]
"model.hidden_size" = [16, 32]
[eval]
split = "test"
limit = 2
calculator = [true, false]
max_tokens = 4
batch_size = 2
"""


def cli(*argv: object) -> int:
    from trm_tui.__main__ import main

    return main([str(a) for a in argv])


# --------------------------------------------------------------------------- records


def test_eval_records_round_trip_newest_first_and_skip_corrupt_files(tmp_path: Path) -> None:
    from trm_core.evaluation.record import EVAL_DIR, latest_eval, read_eval_records, write_eval_record

    assert read_eval_records(tmp_path) == [] and latest_eval(tmp_path) is None
    base = {"checkpoint": "best", "split": "test", "data": "synthetic", "limit": None, "n": 3}
    old = {**base, "step": 5, "accuracy": 0.5, "created": "2026-01-01T00:00:00+00:00"}
    new = {**base, "step": 9, "accuracy": 0.75, "created": "2026-01-02T00:00:00+00:00"}
    assert write_eval_record(tmp_path, new).name == "test-step9.json"
    write_eval_record(tmp_path, old)
    (tmp_path / EVAL_DIR / "test-step7.json").write_text('{"version": 1, "step": 7, "accur')  # torn
    (tmp_path / EVAL_DIR / "x.json").write_text("[1, 2]")  # not a record
    records = read_eval_records(tmp_path)
    assert [r["step"] for r in records] == [9, 5] and records[0]["version"] == 1
    assert latest_eval(tmp_path)["accuracy"] == 0.75


def test_train_with_eval_records_both_scores(tmp_path: Path) -> None:
    from trm_core.evaluation.record import latest_eval

    run = tmp_path / "run"
    assert cli("train", GOOD, "--run-dir", run, "--eval", "--eval-limit", "2") == 0
    rec = latest_eval(run)
    assert rec is not None and rec["n"] == 2 and rec["split"] == "test" and rec["step"] == 2
    assert rec["settings"]["calculator"] is True and rec["accuracy_no_calculator"] is not None
    assert (run / rec["samples"]).is_file()


# --------------------------------------------------------------------------- sweep files


def test_sweep_validation_reports_every_problem_at_once(tmp_path: Path) -> None:
    from trm_core.experiments.sweep import SweepError, parse_sweep

    bad = f"""
name = "a b"
base = "{GOOD}"
seeds = [0, 0]
colour = 1
[set]
"train.lr" = 0.1
"train.seed" = 3
[grid]
"model.hiden_size" = [16]
"train.lr" = [0.1, 0.2]
"model.arch" = []
[eval]
split = "dev"
limt = 5
"""
    with pytest.raises(SweepError) as e:
        parse_sweep(bad, tmp_path / "s.toml")
    text = "\n".join(e.value.problems)
    for needle in (
        "name must be a plain name",
        "seeds must not repeat",
        "unknown key 'colour'",
        "cannot set 'train.seed'",
        "did you mean 'model.hidden_size'",
        "'train.lr' is in both [set] and [grid]",
        "'model.arch' must be a non-empty list",
        "eval.split must be 'train' or 'test'",
        "did you mean 'limit'",
    ):
        assert needle in text, needle
    assert len(e.value.problems) == 9

    # every expanded profile is validated: 5 is no divisor of 32; nothing is started
    runs = tmp_path / "runs"
    sweep = tmp_path / "heads.toml"
    sweep.write_text(f'base = "{GOOD}"\nseeds = [0, 1]\n[grid]\n"model.num_heads" = [2, 5]\n')
    assert cli("sweep", sweep, "--runs-dir", runs) == 1
    assert not runs.exists()
    with pytest.raises(SweepError) as e:
        parse_sweep(sweep.read_text(), sweep)
    assert len(e.value.problems) == 2 and all("num_heads (5)" in p for p in e.value.problems)


def test_run_names_are_readable_and_unique() -> None:
    from trm_core.experiments.sweep import run_name

    o = {"model.arch": "trm", "train.lr": 0.003, "train.seed": 2}
    assert run_name(o, ["model.arch", "train.lr"]) == "arch-trm_lr-0.003_seed2"
    o = {"model.seed": 1, "data.seed": 4, "train.seed": 0}
    assert run_name(o, ["model.seed", "data.seed"]) == "model-seed-1_data-seed-4_seed0"


# --------------------------------------------------------------------------- statistics


def test_t_interval_and_resolution_rule() -> None:
    from trm_core.experiments.compare import RunSummary, compare, summarize, t_critical

    assert t_critical(1) == 12.706 and t_critical(2) == 4.303 and t_critical(1000) == 1.96
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0
    assert s["ci95"] == pytest.approx([2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)])
    one = summarize([4.0])
    assert one["std"] is None and one["ci95"] is None

    def runs(arch: str, losses: list[float]) -> list[RunSummary]:
        cfg = lambda seed: {"model.arch": arch, "train.seed": seed, "name": f"{arch}{seed}"}  # noqa: E731
        return [RunSummary(Path(f"{arch}{i}"), cfg(i), {"best_val_loss": v}) for i, v in enumerate(losses)]

    far = compare(
        runs("trm", [0.10, 0.11, 0.12]) + runs("transformer", [0.50, 0.51, 0.52]), metrics=["best_val_loss"]
    )
    assert far["by"] == ["model.arch"] and [g["n"] for g in far["groups"]] == [3, 3]
    assert far["resolved"] == [{"metric": "best_val_loss", "a": 0, "b": 1, "better": 0}]
    near = compare(
        runs("trm", [0.10, 0.30, 0.20]) + runs("transformer", [0.25, 0.15, 0.35]), metrics=["best_val_loss"]
    )
    assert near["resolved"] == []
    single = compare(runs("trm", [0.1]) + runs("transformer", [0.9]), metrics=["best_val_loss"])
    assert single["resolved"] == []  # one seed each shows nothing


# --------------------------------------------------------------------------- the tiny sweep, end to end


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_swept(tmp_path_factory)


def build_swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny sweep, stopped during its third run, then finished by rerunning the same command."""
    from trm_core.events import StartEvent, read_events
    from trm_core.experiments.manifest import read_manifest
    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import load_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    file = tmp / "tiny.toml"
    file.write_text(SWEEP)
    runs = tmp / "runs"
    queue: SweepQueue

    def on_event(item, ev) -> None:  # Ctrl+C as the CLI turns it: request_stop()
        if item.name == "hidden_size-32_seed0" and ev.kind == "step" and ev.step == 3:
            queue.request_stop()

    queue = SweepQueue(load_sweep(file), runs, on_event=on_event)
    assert queue.run() == 130
    states = {r["name"]: r["state"] for r in read_manifest(runs / "tiny")["runs"]}
    assert states == {
        "hidden_size-16_seed0": "done",
        "hidden_size-16_seed1": "done",
        "hidden_size-32_seed0": "stopped",
        "hidden_size-32_seed1": "queued",
    }
    done_before = (runs / "tiny" / "hidden_size-16_seed0" / "metrics.jsonl").read_bytes()
    from trm_core.experiments.compare import compare, find_runs, summarize_run
    from trm_core.experiments.report import verdicts

    partial = compare([summarize_run(p) for p in find_runs([runs / "tiny"])])  # mid-sweep
    stopped = str(runs / "tiny" / "hidden_size-32_seed0")
    assert [(g["unfinished"], g["unevaluated"]) for g in partial["groups"]] == [
        ([], []),
        ([stopped], [stopped]),
    ]
    assert verdicts(partial)[0] == "1 run not finished training (numbers partial): hidden_size-32_seed0."
    assert "no eval record" not in verdicts(partial)[1]  # said once for a run that is both

    assert cli("sweep", file, "--runs-dir", runs) == 0
    root = runs / "tiny"
    assert (root / "hidden_size-16_seed0" / "metrics.jsonl").read_bytes() == done_before  # skipped
    starts = [
        e
        for e in read_events(root / "hidden_size-32_seed0" / "metrics.jsonl")[0]
        if isinstance(e, StartEvent)
    ]
    assert [(s.resumed, s.step) for s in starts] == [(False, 0), (True, 3)]  # resumed where it stopped
    assert {r["state"] for r in read_manifest(root)["runs"]} == {"done"}
    return file, runs


def test_sweep_interrupt_resume_and_compare_json_is_the_mean_of_the_runs(
    swept: tuple[Path, Path], tmp_path: Path
) -> None:
    from trm_core.evaluation.record import latest_eval
    from trm_core.events import EvalEvent, read_events

    file, runs = swept
    out = tmp_path / "cmp.json"
    assert cli("compare", runs / "tiny", "--json", out, "--metric", "all") == 0
    result = json.loads(out.read_text())
    assert [g["key"] for g in result["groups"]] == [{"model.hidden_size": 16}, {"model.hidden_size": 32}]
    for g in result["groups"]:
        assert g["n"] == 2 and len(g["runs"]) == 2
        per_run_loss, per_run_calc, per_run_none = [], [], []
        for r in g["runs"]:
            evals = [
                e.val_loss for e in read_events(Path(r) / "metrics.jsonl")[0] if isinstance(e, EvalEvent)
            ]
            per_run_loss.append(min(evals))
            rec = latest_eval(Path(r))
            per_run_calc.append(rec["accuracy"])
            per_run_none.append(rec["accuracy_no_calculator"])
        m = g["metrics"]
        assert m["best_val_loss"]["mean"] == pytest.approx(statistics.fmean(per_run_loss))
        assert m["best_val_loss"]["std"] == pytest.approx(statistics.stdev(per_run_loss))
        assert m["exact_calculator"]["mean"] == pytest.approx(statistics.fmean(per_run_calc))
        assert m["exact_no_calculator"]["mean"] == pytest.approx(statistics.fmean(per_run_none))
        lo, hi = m["best_val_loss"]["ci95"]
        assert lo < m["best_val_loss"]["mean"] < hi
        assert set(m) == {
            "best_val_loss", "exact_calculator", "exact_no_calculator", "wall_seconds",
            "tokens_per_second", "params", "flops_per_token",
        }  # fmt: skip
        assert g["unfinished"] == [] and g["unevaluated"] == []  # resumed to the end and evaluated
    # bigger width: more parameters and FLOPs, resolved (deterministic, zero spread)
    assert {"metric": "params", "a": 0, "b": 1, "better": 0} in result["resolved"]


def test_compare_markdown_and_plot_fit_80_columns(
    swept: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, runs = swept
    assert cli("compare", runs / "tiny", "--markdown", "--plot") == 0
    out = capsys.readouterr().out
    assert "| hidden_size=16 | 2 |" in out and "| hidden_size=32 | 2 |" in out
    assert "nothing resolved" in out or "resolved" in out
    plot = out[out.index("validation loss (mean over seeds)") :]
    assert "hidden_size=16" in plot and "hidden_size=32" in plot  # the legend
    assert max(len(line) for line in plot.splitlines()) <= 80


def test_changed_sweep_gets_the_graded_safety_check(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file, runs = swept
    changed = tmp_path / "tiny.toml"
    # a training change: refused without --yes
    changed.write_text(SWEEP.replace('"train.max_steps" = 4', '"train.max_steps" = 6'))
    assert cli("sweep", changed, "--runs-dir", runs, "--dry-run") == 2
    out = capsys.readouterr().out
    assert "changes-training" in out and "--yes" in out
    assert cli("sweep", changed, "--runs-dir", runs, "--dry-run", "--yes") == 0
    # weights that cannot load: always refused
    changed.write_text(SWEEP.replace("[set]", '[set]\n"model.num_layers" = 2'))
    assert cli("sweep", changed, "--runs-dir", runs, "--yes") == 2
    out = capsys.readouterr().out
    assert "incompatible" in out and "refusing" in out
    # the same sweep again: nothing to do, nothing refused
    assert cli("sweep", file, "--runs-dir", runs, "--dry-run") == 0
    assert "done" in capsys.readouterr().out


def test_print_commands_writes_each_profile_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trm_core.profile import load_profile

    file = tmp_path / "tiny.toml"
    file.write_text(SWEEP)
    runs = tmp_path / "runs"
    assert cli("sweep", file, "--runs-dir", runs, "--print-commands") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8  # 4 runs × (train, eval)
    trains = [shlex.split(line) for line in lines if line.startswith("trm-tui train ")]
    evals = [shlex.split(line) for line in lines if line.startswith("trm-tui eval ")]
    assert len(trains) == len(evals) == 4
    for argv in trains:
        profile = load_profile(argv[2])  # exists on disk, valid
        assert argv[argv.index("--run-dir") + 1].endswith(profile.name)
    assert evals[0][evals[0].index("--limit") + 1] == "2" and "--both" in evals[0]


def test_compare_of_a_written_but_untrained_sweep_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "tiny.toml"
    file.write_text(SWEEP)
    runs = tmp_path / "runs"
    assert cli("sweep", file, "--runs-dir", runs, "--print-commands") == 0  # writes profiles only
    capsys.readouterr()
    for folder in (runs, runs / "tiny"):
        assert cli("compare", folder) == 1
        err = capsys.readouterr().err
        assert "holds 4 run(s) of a sweep, none trained yet" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert cli("compare", tmp_path / "empty") == 1
    assert "neither a run directory nor a folder of runs" in capsys.readouterr().err


def test_jobs_two_runs_the_printed_commands_as_child_processes(tmp_path: Path) -> None:
    from trm_core.evaluation.record import latest_eval
    from trm_core.experiments.manifest import read_manifest

    file = tmp_path / "two.toml"
    one_run = SWEEP.replace("seeds = [0, 1]", "seeds = [0]").replace("[16, 32]", "[16]")
    file.write_text(one_run.replace('"train.max_steps" = 4', '"train.max_steps" = 2'))
    runs = tmp_path / "runs"
    assert cli("sweep", file, "--runs-dir", runs, "--jobs", "2", "--device", "cpu") == 0
    root = runs / "tiny"
    assert {r["state"] for r in read_manifest(root)["runs"]} == {"done"}
    for name in ("hidden_size-16_seed0",):
        assert latest_eval(root / name)["n"] == 2
        assert (root / name / "sweep.log").is_file()  # the children's output


def test_child_queue_runs_train_then_eval_and_labels_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import parse_sweep

    class Exited:  # a child that has already ended well
        def poll(self) -> int:
            return 0

    for text, expected in ((SWEEP, ["train", "eval"]), (SWEEP[: SWEEP.index("[eval]")], ["train"])):
        seen: list[tuple[str, str]] = []
        spawned: list[str] = []
        sweep = parse_sweep(
            text.replace("seeds = [0, 1]", "seeds = [0]").replace("[16, 32]", "[16]"), tmp_path / "s.toml"
        )
        queue = SweepQueue(
            sweep,
            tmp_path / f"runs{len(expected)}",
            on_update=lambda q, i, seen=seen: seen.append((i.state, i.message)),
        )

        def spawn(
            argv: list[str], env: dict, item: object, queue: SweepQueue = queue, spawned: list = spawned
        ) -> Exited:
            spawned.append(argv[3])
            queue._children.append(child := Exited())
            return child

        monkeypatch.setattr(queue, "_spawn", spawn)
        assert queue.run(jobs=2) == 0
        assert spawned == expected
        labels = [m for s, m in seen if s == "running"]
        assert labels == ["training", "evaluating"][: len(expected)]
        assert seen[-1] == ("done", "")


def test_shipped_sweep_files_expand_to_valid_profiles() -> None:
    """Every sweep in profiles/sweeps/ parses, finds its base and expands to valid profiles (the
    tables in docs/results.md are made from them); the comparison sweeps share the pinned pre-#17 base."""
    from trm_core.experiments.sweep import expand, load_sweep

    repo = Path(__file__).resolve().parents[1]
    files = sorted((repo / "profiles" / "sweeps").glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        sweep = load_sweep(path, repo / "profiles")
        problems: list[str] = []
        runs = expand(sweep, problems)
        assert not problems, (path.name, problems)
        assert len(runs) == len(sweep.seeds) * max(1, len(sweep.variants)) * math.prod(
            len(v) for v in sweep.grid.values()
        ), path.name
        if path.stem.startswith(("arch", "cycles", "supervision")):
            assert sweep.base_path.name == "quickstart-1block.toml", path.name


def test_compare_names_partial_runs_once_each() -> None:
    """A run still training is named as partial (not again for its missing eval); a finished run
    without an eval record is named for that; complete runs are not named."""
    from trm_core.experiments.compare import RunSummary, compare
    from trm_core.experiments.report import caveats

    def run(name: str, width: int, *, finished: bool = True, evaluated: bool = True) -> RunSummary:
        metrics = {"best_val_loss": 1.0, "exact_calculator": 0.5 if evaluated else None}
        settings = {"n": 200} if evaluated else None
        return RunSummary(Path(name), {"model.hidden_size": width}, metrics, [], finished, settings)

    runs = [run("a0", 16), run("a1", 16, evaluated=False), run("b0", 32, finished=False, evaluated=False)]
    result = compare(runs, metrics=["best_val_loss", "exact_calculator"])
    assert [(g["unfinished"], g["unevaluated"]) for g in result["groups"]] == [([], ["a1"]), (["b0"], ["b0"])]
    assert caveats(result) == [
        "1 run not finished training (numbers partial): b0.",
        "1 run no eval record (no accuracy): a1.",
    ]
    assert caveats(compare(runs[:1] + [run("c0", 32)])) == []


def test_gsm8k_sweep_variants_are_the_shipped_gsm8k_profiles() -> None:
    """profiles/sweeps/gsm8k.toml says its variants are gsm8k.toml, gsm8k-baseline.toml and
    gsm8k-accumulate.toml: each expanded run differs from its profile in the name, description and
    seed only."""
    from trm_core.experiments.sweep import expand, load_sweep
    from trm_core.profile import diff, load_profile

    repo = Path(__file__).resolve().parents[1]
    sweep = load_sweep(repo / "profiles" / "sweeps" / "gsm8k.toml", repo / "profiles")
    problems: list[str] = []
    runs = {r.name: r.profile for r in expand(sweep, problems)}
    assert not problems
    for label, file in (
        ("trm-deep", "gsm8k"),
        ("transformer", "gsm8k-baseline"),
        ("trm-accumulate", "gsm8k-accumulate"),
    ):
        shipped = load_profile(repo / "profiles" / f"{file}.toml")
        for seed in (0, 1, 2):
            keys = {m.key for m in diff(shipped, runs[f"{label}_seed{seed}"])}
            assert keys <= {"name", "description", "train.seed"}, (label, keys)


def test_compare_says_when_accuracies_were_measured_differently(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A later `eval` with other settings replaces a sweep run's record (one per split and step);
    compare then names the runs measured differently instead of averaging them silently."""
    import shutil

    _, runs = swept
    copy = tmp_path / "tiny"
    shutil.copytree(runs / "tiny", copy)
    out = tmp_path / "same.json"
    assert cli("compare", copy, "--json", out) == 0
    assert json.loads(out.read_text())["eval_mismatch"] == []
    odd = copy / "hidden_size-16_seed1"
    assert cli("eval", odd, "--split", "test", "--limit", "3", "--max-tokens", "4", "--calculator") == 0
    capsys.readouterr()
    assert cli("compare", copy, "--json", out) == 0
    assert json.loads(out.read_text())["eval_mismatch"] == [
        {"settings": {"n": 3}, "runs": [str(odd)]},
        {
            "settings": {"n": 2},
            "runs": [str(copy / f"hidden_size-{w}_seed{i}") for w, i in ((16, 0), (32, 0), (32, 1))],
        },
    ]
    assert cli("compare", copy, "--markdown") == 0
    assert (
        "- Accuracies measured with different eval settings, not comparable: n=3 (hidden_size-16_seed1); n=2 (3 runs)."
        in capsys.readouterr().out
    )


def test_compare_says_a_run_whose_metrics_cannot_be_read_is_unreadable_not_unfinished(tmp_path: Path) -> None:
    """An unreadable metrics.jsonl (here a folder; a mode-000 file for a user who is not root) is
    named as unreadable, not as a run that has not finished training (issue 28.7)."""
    from trm_core.experiments.compare import compare, summarize_run
    from trm_core.experiments.report import caveats

    repo = Path(__file__).resolve().parents[1]
    run = tmp_path / "r0"
    run.mkdir()
    (run / "profile.toml").write_text((repo / "profiles" / "quickstart.toml").read_text())
    (run / "metrics.jsonl").mkdir()  # not a file: cannot be read
    summary = summarize_run(run)
    assert not summary.readable
    said = caveats(compare([summary], metrics=["best_val_loss"]))
    assert any("r0" in line and "cannot be read" in line for line in said), said
    assert not any("not finished training" in line for line in said), said
