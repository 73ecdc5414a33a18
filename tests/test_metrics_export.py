"""`trm-tui plot … --out` (CSV, PNG, SVG) and `trm-tui export-tb`: files written and read back."""

from __future__ import annotations

import csv
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from trm_core.events import AccuracyEvent, DoneEvent, EvalEvent, StartEvent, StepEvent
from trm_tui.__main__ import main


def close(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """TensorBoard stores float32: the same steps, the values to float32 precision."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx(
        [v for _, v in want], rel=1e-6
    )


def make_run(path: Path, grad: float, steps: int = 30) -> Path:
    """A run directory whose metrics.jsonl has steps (1,000 tokens each), evals and accuracy."""
    path.mkdir(parents=True)
    events = [StartEvent(str(path), path.name, 0, steps, False, "cpu", 10, time=1000.0)]
    for s in range(1, steps + 1):
        events.append(StepEvent(s, steps, 1, 3.0 / s, 1e-3, grad * s, 500.0, 2.0 * s, 0.0,
                                tokens=1000.0 * s, time=1000.0 + s))  # fmt: skip
        if s % 10 == 0:
            events.append(EvalEvent(s, 2.0 / s, 0.5, time=1000.0 + s))
            events.append(AccuracyEvent(s, s / 100, s, 100, time=1000.0 + s))
    events.append(DoneEvent("finished", steps, time=1000.0 + steps))
    (path / "metrics.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [make_run(tmp_path / "runs" / "a", 0.1), make_run(tmp_path / "runs" / "b", 0.2)]


def test_csv_has_every_point_of_every_run(runs, tmp_path, capsys):
    out = tmp_path / "gn.csv"
    assert main(["plot", *map(str, runs), "--metric", "grad_norm", "--x", "tokens", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 60 and rows[0] == {"run": "a", "tokens": "1000", "grad_norm": "0.1"}
    assert rows[-1] == {"run": "b", "tokens": "30000", "grad_norm": "6"}


def test_smoothed_accuracy_of_a_sweep_folder(runs, tmp_path):
    out = tmp_path / "acc.csv"
    assert main(["plot", str(runs[0].parent), "-m", "accuracy", "--smooth", "0.5", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["run"] for r in rows] == ["runs/a"] * 3 + ["runs/b"] * 3
    # debiased EMA of 0.1, 0.2, 0.3 with weight 0.5
    assert [float(r["accuracy_ema0.5"]) for r in rows[:3]] == pytest.approx([0.1, 0.25 / 1.5, 0.2125 / 0.875])


def test_png_and_svg_are_real_images(runs, tmp_path):
    pytest.importorskip("matplotlib", reason="the `plot` extra is not installed")
    png, svg = tmp_path / "p.png", tmp_path / "p.svg"
    assert main(["plot", *map(str, runs), "-m", "accuracy", "--x", "tokens", "-o", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 400 and height > 200
    assert main(["plot", *map(str, runs), "-m", "grad_norm", "--log", "-o", str(svg)]) == 0
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text()
    assert "grad norm vs step" in text or "grad" in text


def test_bad_requests_end_in_one_sentence(runs, tmp_path, capsys, monkeypatch):
    assert main(["plot", str(runs[0]), "-m", "memory", "-o", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no run logged 'memory'" in err and "grad_norm" in err
    assert main(["plot", str(runs[0]), "-o", str(tmp_path / "x.pdf")]) == 1
    assert ".csv, .png, .svg" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # the plot extra missing
    assert main(["plot", str(runs[0]), "-o", str(tmp_path / "x.png")]) == 1
    assert "pip install 'trm-tui[plot]'" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_terminal_chart_without_out(runs, capsys):
    assert main(["plot", *map(str, runs), "-m", "val_loss", "--x", "wall"]) == 0
    out = capsys.readouterr().out
    assert "val loss vs wall" in out and "wall 1:00" in out and "━ a" in out and "━ b" in out


def test_export_tb_round_trip(runs, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the `tensorboard` extra is not installed")
    from trm_core.metrics.tensorboard import read_scalars

    assert main(["export-tb", str(runs[1])]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    scalars = read_scalars(runs[1] / "tensorboard")
    assert close(scalars["train/grad_norm"], [(s, 0.2 * s) for s in range(1, 31)])
    assert close(scalars["val/accuracy"], [(10, 0.1), (20, 0.2), (30, 0.3)])
    assert main(["export-tb", str(runs[1])]) == 1  # never mixed into existing event files
    assert "already holds event files" in capsys.readouterr().err


def test_tensorboard_missing_is_one_sentence(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["export-tb", str(runs[0])]) == 1
    assert "pip install 'trm-tui[tensorboard]'" in capsys.readouterr().err
    assert not (runs[0] / "tensorboard").exists()
