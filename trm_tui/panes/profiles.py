"""The Profiles tab: the profiles/*.toml list with key facts, and the TOML editor.

Parameter counts build a tokenizer and a model, so they are computed in a worker after the list
is shown; the list opens instantly with "… params" and fills in.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from trm_core.atomic import write_text_atomic
from trm_core.printable import printable
from trm_core.profile import Profile, ProfileError, load_profile, save_profile_text, set_value

from ..messages import ParamsCounted, QuitWanted, TrainSettled, TrainWanted
from ..screens.modals import ChoiceModal, ConfirmModal, NameModal
from ..widgets.profile_editor import ProfileEditor
from .base import Pane
from .profile_template import TEMPLATE


def fmt_params(params: int | None) -> str:
    if params is None:
        return "…"
    if params < 0:
        return "? params"
    return f"{params / 1e6:.2f}M" if params >= 10_000 else f"{params:,}"


def facts(profile: Profile | None, error: str = "") -> str:
    """One short line: tokenizer · data · supervision mode×passes."""
    if profile is None:
        return error or "invalid"
    src = profile.data.source.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1]
    t = profile.train
    return f"{profile.tokenizer.name} · {src} · {t.supervision}×{t.supervision_steps}"


RESCAN_S = 3.0


class ProfilesPane(Pane):
    # priority: the editor's TextArea binds f6/f7 (select line/all) itself
    BINDINGS = [
        Binding(
            "ctrl+s",
            "save",
            "Save",
            id="profiles.save",
            priority=True,
            tooltip="Save the profile (refused while invalid)",
        ),
        Binding(
            "f5", "new", "New", id="profiles.new", priority=True, tooltip="New profile from the template"
        ),
        Binding(
            "f6",
            "duplicate",
            "Duplicate",
            id="profiles.duplicate",
            priority=True,
            tooltip="Duplicate the profile",
        ),
        Binding("f7", "rename", "Rename", id="profiles.rename", priority=True, tooltip="Rename the profile"),
        Binding("f8", "delete", "Delete", id="profiles.delete", priority=True, tooltip="Delete the profile"),
        Binding("ctrl+g", "goto_problem", "Go to error", id="profiles.goto_problem", show=False),
        Binding(
            "ctrl+r",
            "rescan",
            "Refresh",
            id="profiles.refresh",
            show=False,
            tooltip="Re-read the profiles directory (also done every few seconds)",
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.paths: list[Path] = []
        self.profiles: dict[Path, Profile | None] = {}
        self.errors: dict[Path, str] = {}
        self.params: dict[Path, int | None] = {}
        self.current: Path | None = None
        self.live_params: int | None = None  # of the editor's unsaved text
        self._restoring = False
        self._stamps: dict[Path, float] = {}

    @property
    def editor(self) -> ProfileEditor:
        return self.query_one(ProfileEditor)

    def compose(self) -> ComposeResult:
        yield OptionList(id="profile-list")
        with Vertical(id="profile-right"):
            yield Static(id="profile-title")
            yield ProfileEditor(id="profile-editor")

    def on_mount(self) -> None:
        self.query_one("#profile-list").border_title = "Profiles"
        self.reload(select=self.tapp.initial_profile)
        wanted = self.tapp.initial_profile
        if wanted and (self.current is None or self._find(wanted) is None):
            self.app.notify(f"No profile named {wanted} in {self.tapp.profiles_dir}.", severity="warning")
        self.set_interval(RESCAN_S, self.action_rescan)

    def on_show(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        """Profiles added, removed or changed on disk appear without a restart."""
        d = self.tapp.profiles_dir
        paths = sorted(d.glob("*.toml")) if d.is_dir() else []
        if paths != self.paths or any(self._stamp(p) != self._stamps.get(p) for p in paths):
            self.reload(select=self.current)

    # ------------------------------------------------------------------ list

    def reload(self, select: str | Path | None = None) -> None:
        d = self.tapp.profiles_dir
        self.paths = sorted(d.glob("*.toml")) if d.is_dir() else []
        self._stamps = {p: self._stamp(p) for p in self.paths}
        self.profiles.clear()
        self.errors.clear()
        for p in self.paths:
            try:
                self.profiles[p] = load_profile(p)
            except ProfileError as e:
                self.profiles[p] = None
                self.errors[p] = "invalid: " + (e.problems[0].split(": ", 1)[-1] if e.problems else "")
        ol = self.query_one("#profile-list", OptionList)
        ol.clear_options()
        ol.add_options([Option(self._prompt(p), id=str(p)) for p in self.paths])
        if not self.paths:
            self._open(None)
            self.query_one("#profile-title", Static).update(
                Text(f"No profiles in {d}. F5 creates one.", style="yellow")
            )
        target = self._find(select) if select is not None else None
        if target is None and self.current in self.paths:
            target = self.current
        if target is None and self.paths:
            target = self.paths[0]
        if target is not None:
            self._restoring = True
            ol.highlighted = self.paths.index(target)
            self._restoring = False
            if not (target == self.current and self.editor.dirty):  # never drop unsaved edits
                self._open(target)
        self._count_params([p for p in self.paths if self.profiles.get(p) and p not in self.params])

    @staticmethod
    def _stamp(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    def _find(self, select: str | Path) -> Path | None:
        for p in self.paths:
            if str(select) in (str(p), p.name, p.stem) or (
                self.profiles.get(p) and self.profiles[p].name == select
            ):
                return p
        return None

    def _prompt(self, path: Path) -> Text:
        profile = self.profiles.get(path)
        t = Text(printable(path.stem), style="bold" if profile else "bold red")
        if profile is not None:
            t.append(f"  {fmt_params(self.params.get(path))}", style="cyan")
        t.append("\n")
        t.append(printable(facts(profile, self.errors.get(path, ""))), style="dim" if profile else "red")
        return t

    @work(thread=True, exclusive=True, group="params", exit_on_error=False)
    def _count_params(self, paths: list[Path]) -> None:
        count = self.tapp.backend.count_parameters
        for p in paths:
            profile = self.profiles.get(p)
            if profile is None:
                continue
            try:
                self.post_message(ParamsCounted(p, count(profile)))
            except Exception as e:  # noqa: BLE001 — e.g. hf: tokenizer offline; shown, not fatal
                self.post_message(ParamsCounted(p, None, str(e)))

    @on(ParamsCounted)
    def _on_params(self, msg: ParamsCounted) -> None:
        if msg.live:
            if msg.path == self.current and self.editor.dirty:
                self.live_params = msg.params
                self._title()
            return
        self.params[msg.path] = msg.params if msg.params is not None else -1
        if msg.path in self.paths:
            self.query_one("#profile-list", OptionList).replace_option_prompt(
                str(msg.path), self._prompt(msg.path)
            )
        if msg.path == self.current:
            self._title()

    @on(OptionList.OptionHighlighted, "#profile-list")
    def _on_highlight(self, event: OptionList.OptionHighlighted) -> None:
        if self._restoring or event.option.id is None:
            return
        path = Path(event.option.id)
        if path == self.current:
            return
        if self.current is not None and self.editor.dirty:
            previous = self.current

            def decided(discard: bool | None) -> None:
                if discard:
                    self._open(path)
                else:
                    self._restoring = True
                    self.query_one("#profile-list", OptionList).highlighted = self.paths.index(previous)
                    self._restoring = False

            self.app.push_screen(
                ConfirmModal(f"Discard unsaved changes to {previous.name}?", yes="Discard", danger=True),
                decided,
            )
            return
        self._open(path)

    @on(OptionList.OptionSelected, "#profile-list")
    def _on_select(self, event: OptionList.OptionSelected) -> None:
        self.editor.text_area.focus()

    def _open(self, path: Path | None) -> None:
        self.current, self.live_params = path, None
        if path is None:
            self.editor.load("", "<none>")
            self.tapp.profile_path = None
            return
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            text = f"# cannot read {path}: {e.strerror}\n"
        self.editor.load(text, path.name)
        self.tapp.profile_path = path
        self._title()

    def _title(self) -> None:
        if self.current is None:
            return
        t = Text(printable(self.current.name), style="bold")
        params = self.params.get(self.current)
        if self.live_params is not None and self.editor.dirty:
            t.append(f"  {self.live_params:,} params (as edited)", style="yellow")
        elif params is not None and params >= 0:
            t.append(f"  {params:,} params", style="dim")
        t.append("  F2 trains it", style="dim")
        self.query_one("#profile-title", Static).update(t)

    @on(ProfileEditor.Validated)
    def _on_validated(self, event: ProfileEditor.Validated) -> None:
        """While typing: the parameter count of what the editor holds (a valid profile only)."""
        if event.result.ok and self.current is not None and self.editor.dirty:
            self._count_live(self.current, event.result.profile)
        elif self.live_params is not None:
            self.live_params = None
            self._title()

    @work(thread=True, exclusive=True, group="live-params", exit_on_error=False)
    def _count_live(self, path: Path, profile: Profile) -> None:
        try:
            self.post_message(ParamsCounted(path, self.tapp.backend.count_parameters(profile), live=True))
        except Exception as e:  # noqa: BLE001 — e.g. hf: tokenizer offline; shown, not fatal
            self.post_message(ParamsCounted(path, None, str(e), live=True))

    # ------------------------------------------------------------------ actions

    def action_goto_problem(self) -> None:
        self.editor.goto_problem()

    def action_save(self) -> bool:
        """Save the editor's text (refused while invalid); True when saved."""
        if self.current is None:
            self.app.notify("No profile open.", severity="warning")
            return False
        result = self.editor.validate_now()
        if not result.ok:
            where = f"line {result.line + 1}: " if result.line is not None else ""
            self.app.notify(
                printable(f"Not saved: {where}{result.problem}"),
                title="Invalid profile",
                severity="error",
                markup=False,
            )
            return False
        try:
            save_profile_text(self.current, self.editor.text)
        except (ProfileError, OSError) as e:
            self.app.notify(printable(f"Not saved: {e}"), severity="error", markup=False)
            return False
        self.editor.mark_saved()
        self.params.pop(self.current, None)
        self.app.notify(printable(f"Saved {self.current.name}"), markup=False)
        self.reload(select=self.current)
        self.tapp.profile_path = self.current  # always_update: the Train tab reloads the saved file
        return True

    def _taken(self) -> set[str]:
        return {p.stem for p in self.paths}

    def _write_new(self, name: str, text: str) -> None:
        # a template or copy that is invalid still gets written: the user fixes it in the editor
        try:
            text = set_value(text, "name", name)
        except Exception:  # noqa: BLE001 — tomlkit cannot parse broken TOML; keep the text as is
            pass
        path = self.tapp.profiles_dir / f"{name}.toml"
        self.tapp.profiles_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
        self.reload(select=path)
        self.editor.text_area.focus()

    def action_new(self) -> None:
        templates = [("defaults only (commented)", "")] + [(p.stem, str(p)) for p in self.paths]
        modal = NameModal("New profile name", "my-profile", self._taken(), templates=templates)

        def named(name: str | None) -> None:
            if not name:
                return
            text = TEMPLATE
            if modal.template:
                try:
                    text = Path(modal.template).read_text(encoding="utf-8")
                except OSError as e:
                    self.app.notify(f"Cannot read {modal.template}: {e.strerror}", severity="error")
                    return
            self._write_new(name, text)

        self.app.push_screen(modal, named)

    def action_duplicate(self) -> None:
        if self.current is None:
            return
        source_text = self.editor.text

        def named(name: str | None) -> None:
            if name:
                self._write_new(name, source_text)

        self.app.push_screen(
            NameModal(f"Duplicate {self.current.stem} as", f"{self.current.stem}-copy", self._taken()), named
        )

    def action_rename(self) -> None:
        if self.current is None:
            return
        old = self.current

        def named(name: str | None) -> None:
            if not name:
                return
            new = old.with_name(f"{name}.toml")
            text = self.editor.text
            try:
                text = set_value(text, "name", name)
            except Exception:  # noqa: BLE001 — broken TOML: rename the file only
                pass
            write_text_atomic(new, text)
            old.unlink()
            self.params.pop(old, None)
            self.current = None
            self.reload(select=new)

        self.app.push_screen(NameModal(f"Rename {old.stem} to", old.stem, self._taken() - {old.stem}), named)

    def action_delete(self) -> None:
        if self.current is None:
            return
        path = self.current

        def decided(yes: bool | None) -> None:
            if yes:
                path.unlink(missing_ok=True)
                self.current = None
                self.reload()
                self.app.notify(printable(f"Deleted {path.name}"), markup=False)

        self.app.push_screen(
            ConfirmModal(f"Delete {path.name}? Runs trained from it are kept.", yes="Delete", danger=True),
            decided,
        )

    # ------------------------------------------------------------------ requests from other tabs

    @on(TrainWanted)
    def _train_wanted(self, msg: TrainWanted) -> None:
        """Training reads the saved file: with unsaved edits to it, ask first (save, or train the saved one)."""
        path, fresh = msg.path, msg.fresh
        if self.current != path or not self.editor.dirty:
            self.post_message(TrainSettled(path, fresh, go=True))
            return
        result = self.editor.validate_now()
        refused = {} if result.ok else {"save": f"Cannot save: {result.problem}"}

        def chosen(choice: str | None) -> None:
            if choice == "save":
                if self.action_save():
                    self.post_message(
                        TrainSettled(path, fresh, True, f"saved {path.name}; training it", "cyan")
                    )
                return
            if choice == "saved":
                note = f"training the saved {path.name}; the editor's changes are not used"
                self.post_message(TrainSettled(path, fresh, True, note, "yellow"))
            else:
                self.post_message(TrainSettled(path, fresh, False, "cancelled: nothing trained", "dim"))

        choices = [("save", "Save and train", "primary"), ("saved", "Train the saved version", "default")]
        question = f"{path.name} has unsaved changes. Training uses the saved file."
        focus = "save" if result.ok else "cancel"
        self.app.push_screen(ChoiceModal(question, choices, focus=focus, refused=refused), chosen)

    @on(QuitWanted)
    def _quit_wanted(self, msg: QuitWanted) -> None:
        editor = self.editor
        if not editor.dirty:
            self.app.exit()
            return
        self.app.push_screen(
            ConfirmModal(f"Quit without saving {editor.source}?", yes="Quit", danger=True),
            lambda yes: yes and self.app.exit(),
        )
