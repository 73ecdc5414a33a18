"""The trm-tui app: four tabs (Profiles, Train, REPL, Runs), global keys, the command palette.

Everything that touches trm_core's heavy parts goes through `self.backend` (trm_tui/backend.py),
so tests run the real app on fakes. Tab panes stay mounted when hidden: training keeps going,
and its chart keeps its data, whichever tab is shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, TabbedContent, TabPane

from .backend import Backend
from .jobs import Jobs
from .messages import PaneRequest, QuitWanted, RunsChanged
from .panes.profiles import ProfilesPane
from .panes.repl import ReplPane
from .panes.runs import RunsPane
from .panes.train import TrainPane
from .screens.modals import ConfirmModal
from .screens.plot import PlotRequested, PlotScreen

TABS = {  # tab id -> (label, pane class, key)
    "profiles": ("Profiles", ProfilesPane, "f1"),
    "train": ("Train", TrainPane, "f2"),
    "repl": ("REPL", ReplPane, "f3"),
    "runs": ("Runs", RunsPane, "f4"),
}
FOCUS = {  # what gets the focus when a tab is shown (pane key bindings need focus inside the pane)
    "profiles": "#profile-list",
    "train": "#train-log",
    "repl": "#repl-prompt",
    "runs": "#runs-table",
}


class TrmApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "trm-tui"
    BINDINGS = [
        *(
            Binding(key, f"show_tab('{tab}')", label, id=f"app.{tab}", show=False)
            for tab, (label, _, key) in TABS.items()
        ),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("escape", "close_help", "Close keys", id="app.close_help", show=False),
    ]

    profile_path: reactive[Path | None] = reactive(None, always_update=True)

    def __init__(
        self,
        *,
        profiles_dir: str | Path = "profiles",
        runs_dir: str | Path = "runs",
        profile: str | None = None,
        backend: Backend | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.profiles_dir = Path(profiles_dir)
        self.runs_dir = Path(runs_dir)
        self.initial_profile = profile
        self.backend = backend or Backend()
        self.jobs = Jobs(self.backend, self.runs_dir)
        if theme:
            self.theme = theme
        if keymap:
            self.set_keymap(keymap)

    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs", initial="tab-profiles"):
            for tab, (label, pane_cls, key) in TABS.items():
                with TabPane(f"{key.upper()} {label}", id=f"tab-{tab}"):
                    yield pane_cls(id=f"{tab}-pane")
        yield self.jobs
        yield Footer()

    def on_mount(self) -> None:
        self._focus_tab("profiles")
        if not self.is_headless:
            from .hangup import watch_terminal

            watch_terminal(self, self.hang_up)

    @on(PaneRequest)
    def _deliver(self, msg: PaneRequest) -> None:
        """Panes never call each other: a pane posts a request, the app delivers it to the pane it names."""
        msg.stop()
        if msg.delivered:
            return
        if msg.SHOW:
            self.action_show_tab(msg.TO)
        self.query_one(f"#{msg.TO}-pane").post_message(replace(msg, delivered=True))

    def on_plot_requested(self, msg: PlotRequested) -> None:
        self.push_screen(PlotScreen(msg.runs, export_dir=self.runs_dir.parent / "plots"))

    # ------------------------------------------------------------------ tabs

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{tab}"
        self._focus_tab(tab)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = (event.pane.id or "").removeprefix("tab-")
        self._focus_tab(tab)

    def _focus_tab(self, tab: str) -> None:
        if tab in FOCUS:
            self._focus(tab)  # now, so a key pressed right after lands in the pane
            self.call_after_refresh(self._focus, tab)

    def _focus(self, tab: str) -> None:
        if len(self.screen_stack) != 1:  # never steal focus from a modal (nor during shutdown)
            return
        if self.query_one(TabbedContent).active != f"tab-{tab}":  # a stale activation
            return
        self.screen.set_focus(self.query_one(FOCUS[tab]))  # synchronous, unlike Widget.focus()

    def open_evaluation(self, run_dir: Path) -> None:
        """The evaluation screen of one run (F9 on Train, F8 on Runs)."""
        from .screens.evaluation import EvalScreen

        def closed(_: object) -> None:
            self.post_message(RunsChanged())  # the Runs table shows the new accuracy

        self.push_screen(EvalScreen(run_dir), closed)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_help":  # esc only while the keys panel is open
            return bool(self.screen.query("HelpPanel"))
        return super().check_action(action, parameters)

    def action_close_help(self) -> None:
        self.action_hide_help_panel()

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab, (label, _, key) in TABS.items():
            yield SystemCommand(
                f"Show {label}",
                f"Switch to the {label} tab ({key.upper()})",
                partial(self.action_show_tab, tab),
            )
        for tab, (label, pane_cls, _) in TABS.items():
            for b in pane_cls.BINDINGS:
                if not isinstance(b, Binding) or b.action.startswith("history"):
                    continue
                key = b.key.split(",")[0]
                yield SystemCommand(
                    f"{label}: {b.description or b.action}",
                    f"{b.tooltip or b.description} ({key})",
                    partial(self._run_pane_action, tab, b.action),
                )

    def _run_pane_action(self, tab: str, action: str) -> None:
        self.action_show_tab(tab)
        pane: Widget = self.query_one(f"#{tab}-pane")
        self.call_after_refresh(pane.run_action, action)

    # ------------------------------------------------------------------ quit

    terminal_gone = False

    def hang_up(self) -> None:
        """The terminal is gone (trm_tui/hangup.py): stop what runs, saving its checkpoint, and exit
        without asking, since nobody is there to answer."""
        self.terminal_gone = True
        self.jobs.hang_up()

    def exit(self, *args, **kwargs) -> None:
        if self.terminal_gone:
            # Textual's shutdown restores the terminal's modes by writing to it; with the terminal
            # gone that write can block forever (seen after a hang-up with its SIGHUP), holding the
            # run's lock. What runs has stopped and its files are flushed, so leave at once.
            os._exit(0)
        super().exit(*args, **kwargs)

    async def action_quit(self) -> None:
        busy = self.jobs.busy or self.jobs.evaluating
        if busy is None:
            self.post_message(QuitWanted())  # the Profiles tab asks about unsaved edits, then exits
            return
        question = {
            "sweep": "A sweep is running. Stop it (the run saves a checkpoint; F9 or `trm-tui sweep` resumes) and quit?",
            "training": "Training is running. Stop it (a checkpoint is saved) and quit?",
            "evaluation": "An evaluation is running. Stop it (nothing is written) and quit?",
            "depth study": "A depth study is running. Stop it (depth.json is not written) and quit?",
        }[busy]
        saving = ": saving a checkpoint," if busy in ("sweep", "training") else ","

        def decided(yes: bool | None) -> None:
            if yes:
                self.notify(f"Stopping the {busy}{saving} then quitting…", timeout=30)
                self.jobs.stop(quit_after=True)

        self.push_screen(ConfirmModal(question, yes="Stop and quit"), decided)
