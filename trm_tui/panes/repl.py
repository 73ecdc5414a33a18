"""The REPL tab: pick a run's checkpoint, type a problem, watch the answer stream in.

It opens on the best checkpoint of the most recent finished run; sampling settings are taken
from the first run's profile and then kept, whichever run is picked. A sampled answer without a
seed draws a fresh one and shows it, so the answer can be reproduced. F9 inserts a problem from
the run's validation slice (never trained on), and an empty transcript shows the data format.
The depth row sets the depth to decode at (supervision steps, H/L cycles, ACT's halt threshold;
empty = the checkpoint's own); F10 shades every generated token by its depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Checkbox, Input, Label, Select, Static
from textual.worker import get_current_worker

from trm_core.printable import printable
from trm_core.profile import ProfileError, parse_profile
from trm_core.runs.listing import list_runs

from ..backend import stop_strings, wrap_prompt
from ..messages import ExamplesLoaded, GenerationDone, GenerationStatus, OpenInRepl
from ..widgets.prompt_input import PromptInput
from ..widgets.transcript import PieceBuffer, Transcript, depth_legend
from .base import Pane

FLUSH_S = 0.04
FINISHED = ("finished", "early-stopped")
NO_RUNS = [("no runs yet", "")]


class ReplPane(Pane):
    BINDINGS = [
        Binding("f5", "generate", "Run", id="repl.generate", tooltip="Generate from the prompt"),
        Binding("f6,escape", "stop", "Stop", id="repl.stop", tooltip="Stop generating"),
        Binding("f7", "clear", "Clear", id="repl.clear", show=False, tooltip="Clear the transcript"),
        Binding("f8", "reload", "Reload", id="repl.reload", tooltip="Reload the checkpoint from disk"),
        Binding("f9", "example", "Example", id="repl.example", tooltip="Insert a validation problem"),
        Binding("f10", "toggle_depth", "Depth", id="repl.depth", tooltip="Shade each token by its depth"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = PieceBuffer()
        self._generators: dict[tuple[Path, str], Any] = {}
        self.generating = False
        self._settings_from: Path | None = None  # the run whose profile gave the sampling settings
        self.examples: dict[Path, list[tuple[str, str]]] = {}
        self.example_error = ""
        self._example_index = 0
        self._note_only = False  # the transcript holds only the example note

    def compose(self) -> ComposeResult:
        with Horizontal(id="repl-controls"):
            yield Label("run", classes="repl-label")
            # no blank entry: the list is either the runs or one "no runs yet" line (value "")
            yield Select[str](NO_RUNS, id="repl-run", value="", allow_blank=False, compact=True)
            yield Label("checkpoint", classes="repl-label")
            yield Select[str](
                [("best", "best"), ("latest", "latest")],
                id="repl-which",
                value="best",
                allow_blank=False,
                compact=True,
            )
        with Horizontal(id="repl-sampling"):
            yield Label("temp", classes="repl-label")
            yield Input("0.0", id="repl-temperature", type="number", compact=True)
            yield Label("top-p", classes="repl-label")
            yield Input("1.0", id="repl-top-p", type="number", compact=True)
            yield Label("max", classes="repl-label")
            yield Input("256", id="repl-max-tokens", type="integer", compact=True)
            yield Label("seed", classes="repl-label")
            yield Input("", id="repl-seed", type="integer", placeholder="new", compact=True)
            yield Checkbox("calc", True, id="repl-calculator", compact=True)
        with Horizontal(id="repl-depth-controls"):
            # empty = the checkpoint's own depth, shown as "own"
            yield Label("depth: steps", classes="repl-label")
            yield Input("", id="repl-steps", type="integer", placeholder="own", compact=True)
            yield Label("H", classes="repl-label")
            yield Input("", id="repl-H", type="integer", placeholder="own", compact=True)
            yield Label("L", classes="repl-label")
            yield Input("", id="repl-L", type="integer", placeholder="own", compact=True)
            yield Label("halt", classes="repl-label")
            yield Input("", id="repl-halt", type="number", placeholder="0.5", compact=True)
            yield Static("F10 shading off", id="repl-legend")
        yield Transcript(id="repl-transcript")
        yield PromptInput(id="repl-prompt", placeholder="A math word problem… (enter generates, ↑/↓ history)")
        yield Static(id="repl-status")

    def on_mount(self) -> None:
        self._flush_timer = self.set_interval(FLUSH_S, self._flush, pause=True)
        self.refresh_runs()
        self.status("pick a run, type a problem (F9: an example), press enter")

    def on_show(self) -> None:
        self.refresh_runs()

    def on_unmount(self) -> None:
        self.action_stop()

    @on(OpenInRepl)
    def _open_in_repl(self, msg: OpenInRepl) -> None:
        self.refresh_runs(select=str(msg.run_dir))

    # ------------------------------------------------------------------ runs

    def refresh_runs(self, select: str | None = None) -> None:
        from trm_core.experiments.manifest import sweep_runs

        listed = list_runs(self.tapp.runs_dir) + sweep_runs(self.tapp.runs_dir)  # sweeps' as <sweep>/<run>
        runs = [r for r in listed if (r.path / "checkpoints").is_dir()]
        sel = self.query_one("#repl-run", Select)
        current = select or (sel.value if isinstance(sel.value, str) else None)
        # the name alone: at 80 columns the select is narrow, and the step shown after loading
        # (transcript header) depends on best/latest anyway
        sel.set_options([(r.name, str(r.path)) for r in runs] or NO_RUNS)
        paths = [str(r.path) for r in runs]
        finished = [str(r.path) for r in runs if r.status in FINISHED]  # newest first
        if current in paths:
            sel.value = current
        else:
            sel.value = (finished or paths or [""])[0]

    @on(Select.Changed, "#repl-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str) or not event.value or event.value != event.select.value:
            return  # none, or a stale change (set_options picks the first run before ours)
        run_dir = Path(event.value)
        transcript = self.query_one("#repl-transcript", Transcript)
        if self._note_only:  # only the previous run's example: show this run's instead
            transcript.clear()
            self._note_only = False
            self._show_example_note(run_dir)
        elif transcript.plain:
            transcript.add_note(f"now talking to {run_dir.name}")
        has_best = (run_dir / "checkpoints" / "best").exists()  # stopped before any evaluation: none
        self.query_one("#repl-which", Select).value = "best" if has_best else "latest"
        if run_dir not in self.examples:
            self.examples[run_dir] = []  # loading (once)
            self._load_examples(run_dir)
        if self._settings_from is not None:
            return  # settings the user has (or has seen) stay as they are across runs
        self._settings_from = run_dir
        try:  # sampling defaults from the first run's profile
            gen = parse_profile((run_dir / "profile.toml").read_text(encoding="utf-8")).generate
        except (OSError, ProfileError):
            return
        self.query_one("#repl-temperature", Input).value = f"{gen.temperature:g}"
        self.query_one("#repl-top-p", Input).value = f"{gen.top_p:g}"
        self.query_one("#repl-max-tokens", Input).value = str(gen.max_tokens)
        self.query_one("#repl-seed", Input).value = str(gen.seed) if gen.seed >= 0 else ""
        self.query_one("#repl-calculator", Checkbox).value = gen.calculator

    # ------------------------------------------------------------------ example problems

    @work(thread=True, group="examples", exit_on_error=False)
    def _load_examples(self, run_dir: Path) -> None:
        try:
            examples = self.tapp.backend.examples(run_dir)
        except Exception as e:  # noqa: BLE001 — e.g. the data source is offline; F9 says so
            self.post_message(ExamplesLoaded(run_dir, [], error=str(e)))
            return
        self.post_message(ExamplesLoaded(run_dir, examples))

    @on(ExamplesLoaded)
    def _on_examples(self, msg: ExamplesLoaded) -> None:
        self.examples[msg.run_dir] = msg.examples
        self.example_error = msg.error
        if self._run() == msg.run_dir:
            self._show_example_note(msg.run_dir)

    def _show_example_note(self, run_dir: Path) -> None:
        """An empty transcript shows the data format: one validation problem of the run's own."""
        transcript = self.query_one("#repl-transcript", Transcript)
        examples = self.examples.get(run_dir)
        if not examples or transcript.plain:
            return
        question, answer = examples[0]
        transcript.add_note(
            f"{run_dir.name} learned text like this (a validation problem; F9 inserts another):\n"
            f"{self.tapp.backend.format_prompt(question)} {answer}"
        )
        self._note_only = True
        self._example_index = 1  # F9 inserts the next one: this one is already on screen

    def action_example(self) -> None:
        run = self._run()
        examples = self.examples.get(run) if run else None
        if not examples:
            why = f": {self.example_error}" if self.example_error else " (yet)"
            self.app.notify(f"No example problems for this run{why}.", severity="warning")
            return
        question = examples[self._example_index % len(examples)][0]
        self._example_index += 1
        prompt = self.query_one("#repl-prompt", PromptInput)
        prompt.value = question
        prompt.cursor_position = len(question)
        prompt.focus()

    # ------------------------------------------------------------------ actions

    def status(self, text: str, style: str = "dim") -> None:
        self.query_one("#repl-status", Static).update(Text(printable(text), style=style))

    def _run(self) -> Path | None:
        value = self.query_one("#repl-run", Select).value
        return Path(value) if isinstance(value, str) and value else None

    def _settings(self) -> dict[str, Any] | None:
        try:
            temperature = float(self.query_one("#repl-temperature", Input).value or 0)
            top_p = float(self.query_one("#repl-top-p", Input).value or 1)
            max_tokens = int(self.query_one("#repl-max-tokens", Input).value or 256)
            seed_text = self.query_one("#repl-seed", Input).value.strip()
            seed = int(seed_text) if seed_text else -1  # empty: a fresh seed per answer
        except ValueError:
            self.app.notify("temp and top-p must be numbers, max and seed integers.", severity="error")
            return None
        if temperature < 0 or not 0 < top_p <= 1 or max_tokens <= 0:
            self.app.notify("Need temp ≥ 0, 0 < top-p ≤ 1 and max > 0.", severity="error")
            return None
        try:
            self._depth = self._depth_request()
        except ValueError as e:
            self.app.notify(str(e), severity="error")
            return None
        return {
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed,
            "calculator": self.query_one("#repl-calculator", Checkbox).value,
            "stop": stop_strings(),
        }

    def _depth_request(self) -> Any:
        """The `Depth` the second row asks for (empty = the checkpoint's own), checked;
        ValueError, one sentence."""
        from trm_core.errors import UserError
        from trm_core.model.depth import Depth

        values: list[Any] = []
        for widget, kind in (("#repl-steps", int), ("#repl-H", int), ("#repl-L", int), ("#repl-halt", float)):
            text = self.query_one(widget, Input).value.strip()
            try:
                values.append(kind(text) if text else None)
            except ValueError:
                raise ValueError("steps, H and L must be whole numbers, halt a number.") from None
        names = {"supervision_steps": "steps", "H_cycles": "H", "L_cycles": "L", "halt_threshold": "halt"}
        try:
            return Depth(*values).check(names=names)
        except UserError as e:
            raise ValueError(f"{e}.") from None

    def action_toggle_depth(self) -> None:
        transcript = self.query_one("#repl-transcript", Transcript)
        transcript.set_show_depth(not transcript.show_depth)
        self._show_legend()

    def _show_legend(self) -> None:
        transcript = self.query_one("#repl-transcript", Transcript)
        legend = self.query_one("#repl-legend", Static)
        if transcript.show_depth:
            legend.update(depth_legend(transcript.steps))
        else:
            legend.update(Text("F10 shading off", style="dim"))

    @on(Input.Submitted, "#repl-prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_generate()

    def action_generate(self) -> None:
        if self.generating:
            self.app.notify("Still generating; F6 or escape stops it.", severity="warning")
            return
        run = self._run()
        if run is None:
            self.app.notify("No run with a checkpoint yet: train one first (F2).", severity="warning")
            return
        prompt_input = self.query_one("#repl-prompt", PromptInput)
        text = prompt_input.value
        if not text.strip():
            return
        settings = self._settings()
        if settings is None:
            return
        which = str(self.query_one("#repl-which", Select).value)
        prompt = wrap_prompt(text, self.tapp.backend.format_prompt)
        prompt_input.remember(text)
        prompt_input.value = ""
        self._note_only = False
        self.query_one("#repl-transcript", Transcript).add_prompt(prompt, header=f"{run.name} · {which}")
        self.generating = True
        self._flush_timer.resume()
        self.status("generating… (F6/esc stops)", "yellow")
        self._generate(run, which, prompt, settings, self._depth)

    def action_stop(self) -> None:
        if self.generating:
            for w in self.workers:
                if w.group == "generate":
                    w.cancel()

    def action_clear(self) -> None:
        self.query_one("#repl-transcript", Transcript).clear()

    def action_reload(self) -> None:
        if self.generating:
            self.app.notify("Wait for the answer to finish (or F6).", severity="warning")
            return
        self._generators.clear()
        self.refresh_runs()
        self.status("the next answer reloads the checkpoint from disk")

    # ------------------------------------------------------------------ worker

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate(self, run_dir: Path, which: str, prompt: str, settings: dict[str, Any], depth: Any) -> None:
        worker = get_current_worker()
        clock = self.tapp.backend.clock
        start = clock()
        pieces = 0
        gen: Any = None
        try:
            gen = self._generators.get((run_dir, which))
            if gen is None:
                self.post_message(GenerationStatus(f"loading {run_dir.name} ({which})…"))
                gen = self.tapp.backend.generator_factory(run_dir, which)
                self._generators[(run_dir, which)] = gen
                self.post_message(GenerationStatus(f"loaded {run_dir.name} ({which}); generating…"))
            if hasattr(gen, "set_depth"):  # overrides, or back to the checkpoint's own depth
                gen.set_depth(depth)
            stream = gen.stream(prompt, **settings)
            try:
                for piece in stream:
                    if worker.is_cancelled:
                        break
                    self.buffer.push(piece.text, piece.source, getattr(piece, "depth", None))
                    pieces += 1
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except Exception as e:  # noqa: BLE001 — shown in the REPL; the app stays up
            self.post_message(GenerationDone(pieces, clock() - start, error=f"{type(e).__name__}: {e}"))
            return
        stats = dict(getattr(gen, "last_stats", None) or {})
        tokens = int(stats.get("new_tokens", pieces))
        seed = getattr(gen, "last_seed", None)
        if hasattr(gen, "steps"):
            stats["steps"] = gen.steps
        self.post_message(
            GenerationDone(tokens, clock() - start, cancelled=worker.is_cancelled, seed=seed, depth=stats)
        )

    def _flush(self) -> None:
        items = self.buffer.drain()
        if items:
            self.query_one("#repl-transcript", Transcript).append_pieces(items)

    @on(GenerationStatus)
    def _on_status(self, msg: GenerationStatus) -> None:
        self.status(msg.text, "yellow")

    @on(GenerationDone)
    def _on_done(self, msg: GenerationDone) -> None:
        self._flush()
        self._flush_timer.pause()
        self.generating = False
        transcript = self.query_one("#repl-transcript", Transcript)
        if msg.error:
            transcript.add_note(f"error: {msg.error}", "bold red")
            self.status(f"error: {msg.error}", "bold red")
            return
        if msg.cancelled:
            transcript.add_note("stopped")
        text = f"{'stopped' if msg.cancelled else 'done'}: {msg.tokens} tokens"
        if msg.seconds > 0:
            text += f" in {msg.seconds:.1f} s ({msg.tokens / msg.seconds:.0f} tok/s)"
        if msg.seed is not None:
            text += f" · seed {msg.seed}"
            transcript.add_note(f"seed {msg.seed} (type it in the seed field to get this answer again)")
        if "mean_depth" in msg.depth:
            steps = int(msg.depth.get("steps", 1))
            text += f" · depth {msg.depth['mean_depth']:.2f}/{steps} · {msg.depth['net_calls_per_token']:.1f} calls/tok"
            transcript.set_show_depth(transcript.show_depth, steps)
            self._show_legend()
        self.status(text)
