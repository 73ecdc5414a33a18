"""Choosing the sweep to run from the app: a sweep file from `profiles/sweeps/`, or a new one built
from the selected profile (keys and values, seeds), saved there before it runs."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from .modals import NAME_RE

BUILD = "__build__"


def sweep_files(profiles_dir: Path) -> list[Path]:
    return sorted((profiles_dir / "sweeps").glob("*.toml"))


def build_sweep_text(name: str, base: Path, grid_lines: str, seeds: str, eval_limit: str = "500") -> str:
    """A sweep file from `key = v1, v2` lines, `0, 1, 2` and how many test problems each run is
    evaluated on (empty: no evaluation); ValueError with a sentence when unreadable."""
    try:
        seed_list = tomllib.loads(f"s = [{seeds}]")["s"]
    except tomllib.TOMLDecodeError:
        raise ValueError(f"seeds must be integers separated by commas, got {seeds!r}") from None
    lines = [
        f'name = "{name}"',
        f"base = {str(base)!r}".replace("'", '"'),
        f"seeds = {seed_list}",
        "",
        "[grid]",
    ]
    fixed: list[str] = []
    for raw in grid_lines.splitlines():
        if not raw.strip():
            continue
        key, sep, values = raw.partition("=")
        if not sep:
            raise ValueError(f"write each grid line as `key = value, value`, got {raw.strip()!r}")
        try:
            parsed = tomllib.loads(f"v = [{values.strip()}]")["v"]
        except tomllib.TOMLDecodeError:
            raise ValueError(
                f'values of {key.strip()} must be TOML values ("text" in quotes), got {values.strip()!r}'
            ) from None
        if len(parsed) == 1:  # one value: set for every run, not a grid axis (names stay short)
            fixed.append(f'"{key.strip()}" = {_toml_list(parsed)[1:-1].strip()}')
        else:
            lines.append(f'"{key.strip()}" = {_toml_list(parsed)}')
    if fixed:
        lines += ["", "[set]", *fixed]
    limit = eval_limit.strip()
    if limit and not (limit.isdigit() and int(limit) > 0):
        raise ValueError(f"evaluate on a positive number of problems (or leave it empty), got {limit!r}")
    if limit:
        lines += ["", "[eval]", 'split = "test"', f"limit = {int(limit)}", "calculator = [true, false]"]
    lines.append("")
    return "\n".join(lines)


def base_for(profile: Path, sweeps_dir: Path) -> Path:
    """The base profile as the sweep file names it: relative to the sweep file when it can be
    (the sweep keeps working in a clone elsewhere), else absolute."""
    try:
        return Path(os.path.relpath(profile.resolve(), sweeps_dir.resolve()))
    except ValueError:  # another drive
        return profile.resolve()


def _toml_list(values: list) -> str:
    import tomlkit

    return tomlkit.dumps({"v": values}).partition("=")[2].strip()


class StopAtEnds(OptionList):
    """An option list that stops at its first and last option: ↓ past the end must not land on the
    first sweep (which enter would start)."""

    def action_cursor_down(self) -> None:
        if self.highlighted is None or self.highlighted < self.option_count - 1:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.highlighted is None or self.highlighted > 0:
            super().action_cursor_up()


class SweepPickModal(ModalScreen[Path | str | None]):
    """Dismisses with a sweep file, BUILD (build one from the profile), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def __init__(self, files: list[Path], profile: Path | None) -> None:
        super().__init__()
        self.files, self.profile = files, profile

    def compose(self) -> ComposeResult:
        options = [Option(p.stem, id=str(p)) for p in self.files]
        if self.profile is not None:
            options.append(Option(f"+ build a sweep from {self.profile.stem}…", id=BUILD))
        with Vertical(classes="dialog"):
            yield Label(
                "Run which sweep? (runs go to RUNS_DIR/<sweep>/; rerunning resumes)", classes="question"
            )
            yield StopAtEnds(*options, id="sweep-files")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        picked = event.option.id
        self.dismiss(BUILD if picked == BUILD else Path(str(picked)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SweepBuildModal(ModalScreen[Path | None]):
    """Keys and values (one `key = v1, v2` per line) and seeds; saves profiles/sweeps/<name>.toml."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="modal.cancel")]

    def __init__(self, profile: Path, profiles_dir: Path) -> None:
        super().__init__()
        self.profile, self.profiles_dir = profile, profiles_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"Sweep over {self.profile.stem}: one `key = value, value` per line (F7 selects all)",
                classes="question",
            )
            yield Input(value=f"{self.profile.stem}-sweep", id="sweep-name", placeholder="sweep name")
            yield TextArea("train.lr = 1e-3, 3e-3\n", id="sweep-grid")
            yield Label("seeds · test problems each run is evaluated on (empty: none)")
            with Horizontal(classes="fields"):
                yield Input(value="0, 1, 2", id="sweep-seeds", placeholder="seeds, e.g. 0, 1, 2")
                yield Input(value="500", id="sweep-eval", placeholder="none", type="integer")
            yield Static("", id="sweep-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save and run", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        grid = self.query_one("#sweep-grid", TextArea)
        grid.focus()
        grid.select_all()  # typing replaces the example

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "ok":
            self.dismiss(None)
            return
        name = self.query_one("#sweep-name", Input).value.strip()
        error = self.query_one("#sweep-error", Static)
        if not NAME_RE.match(name):
            error.update("The name may use letters, digits, '.', '_' or '-'.")
            return
        try:
            text = build_sweep_text(
                name,
                base_for(self.profile, self.profiles_dir / "sweeps"),
                self.query_one("#sweep-grid", TextArea).text,
                self.query_one("#sweep-seeds", Input).value,
                self.query_one("#sweep-eval", Input).value,
            )
        except ValueError as e:
            error.update(str(e))
            return
        path = self.profiles_dir / "sweeps" / f"{name}.toml"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            error.update(f"cannot save {path}: {e.strerror or e}")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
