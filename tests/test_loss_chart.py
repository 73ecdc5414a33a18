"""The loss chart's axis (pure rendering, no app)."""

from __future__ import annotations

from trm_tui.widgets.loss_chart import render_chart


def _axis_labels(text: str) -> list[float]:
    return [float(line.split("┤")[0]) for line in text.splitlines() if "┤" in line]


def test_linear_axis_never_goes_below_zero_for_a_loss() -> None:
    # the quickstart curve: 5.9 down to 0.06; a 5% margin below would label the bottom row -0.011
    train = [(float(i), 5.9 * 0.93**i + 0.06) for i in range(0, 600, 5)]
    val = [(float(i), 5.9 * 0.93**i + 0.08) for i in range(50, 601, 50)]
    labels = _axis_labels(render_chart(train, val, 48, 14).plain)
    assert len(labels) >= 4  # issue 15.11: at least 4 labelled y ticks
    assert labels == sorted(labels, reverse=True)
    assert 0.0 <= labels[-1] < 0.5 and labels[0] > 5.5


def test_negative_values_keep_their_margin() -> None:
    pts = [(0.0, -1.0), (1.0, 1.0)]
    labels = _axis_labels(render_chart(pts, [], 48, 14).plain)
    assert labels[-1] < -0.9


def test_step_axis_has_labelled_ticks() -> None:
    """Issue 15.11: the x axis labels round step numbers between the ends, never a repeated one."""
    train = [(float(i), 1.0 / i) for i in range(1, 601)]
    axis = render_chart(train, [], 48, 14).plain.splitlines()[-1]
    numbers = [int(w) for w in axis.replace("└", " ").replace("─", " ").replace("step", " ").split()]
    assert numbers[0] == 1 and numbers[-1] == 600 and len(numbers) >= 4
    assert numbers == sorted(set(numbers))
    short = render_chart(train[:3], [], 70, 6).plain.splitlines()[-1]
    assert short.count("2") == 1


def test_a_flat_zero_series_is_not_drawn_below_zero() -> None:
    """An accuracy of 0 at every evaluation (an untrained model) drew a -0.528 label."""
    labels = _axis_labels(render_chart([(1.0, 0.0), (2.0, 0.0)], [], 48, 14).plain)
    assert 0.0 <= min(labels) < 0.05 and max(labels) > 0.4


def test_tokens_and_wall_time_axes() -> None:
    from trm_tui.widgets.loss_chart import x_axis

    tokens = x_axis(2048, 244_000, 60, "tokens")
    assert tokens.endswith("tokens 244k") and "50k" in tokens and "2.0k" in tokens
    wall = x_axis(0, 3725, 60, "wall")
    assert wall.endswith("wall 1:02:05") and "20:00" in wall  # whole minutes between the ends
