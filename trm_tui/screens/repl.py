"""The REPL tab: pick a run's checkpoint, type a problem, watch the answer stream in.

The second row of controls sets the depth to decode at (supervision steps, H/L cycles, ACT's halt
threshold; empty = the checkpoint's own); F9 shades every generated token by its depth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static, Switch
from textual.worker import get_current_worker

from trm_core.printable import printable
from trm_core.profile import ProfileError, parse_profile
from trm_core.runs.listing import list_runs

from ..backend import stop_strings, wrap_prompt
from ..messages import GenerationDone, GenerationStatus
from ..widgets.prompt_input import PromptInput
from ..widgets.transcript import PieceBuffer, Transcript, depth_legend

if TYPE_CHECKING:
    from ..app import TrmApp

FLUSH_S = 0.04


class ReplPane(Vertical):
    BINDINGS = [
        Binding("f5", "generate", "Generate", id="repl.generate", tooltip="Generate from the prompt"),
        Binding("f6,escape", "stop", "Stop", id="repl.stop", tooltip="Stop generating"),
        Binding("f7", "clear", "Clear", id="repl.clear", tooltip="Clear the transcript"),
        Binding("f8", "reload", "Reload model", id="repl.reload", tooltip="Reload the checkpoint from disk"),
        Binding("f9", "toggle_depth", "Depth", id="repl.depth", tooltip="Shade each token by its depth"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = PieceBuffer()
        self._generators: dict[tuple[Path, str], Any] = {}
        self.generating = False

    @property
    def tapp(self) -> TrmApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="repl-controls"):
            yield Label("run", classes="repl-label")
            yield Select[str]([], id="repl-run", prompt="no runs yet", allow_blank=True, compact=True)
            yield Select[str](
                [("best", "best"), ("latest", "latest")],
                id="repl-which",
                value="best",
                allow_blank=False,
                compact=True,
            )
            yield Label("temp", classes="repl-label")
            yield Input("0.0", id="repl-temperature", type="number", compact=True)
            yield Label("top-p", classes="repl-label")
            yield Input("1.0", id="repl-top-p", type="number", compact=True)
            yield Label("max", classes="repl-label")
            yield Input("256", id="repl-max-tokens", type="integer", compact=True)
            yield Label("calc", classes="repl-label")
            yield Switch(True, id="repl-calculator")
        with Horizontal(id="repl-depth-controls"):
            yield Label("steps", classes="repl-label")
            yield Input("", id="repl-steps", type="integer", placeholder="S", compact=True)
            yield Label("H", classes="repl-label")
            yield Input("", id="repl-H", type="integer", placeholder="H", compact=True)
            yield Label("L", classes="repl-label")
            yield Input("", id="repl-L", type="integer", placeholder="L", compact=True)
            yield Label("halt", classes="repl-label")
            yield Input("", id="repl-halt", type="number", placeholder="0.5", compact=True)
            yield Static("F9 shading off", id="repl-legend")
        yield Transcript(id="repl-transcript")
        yield PromptInput(id="repl-prompt", placeholder="A math word problem… (enter generates, ↑/↓ history)")
        yield Static(id="repl-status")

    def on_mount(self) -> None:
        self._flush_timer = self.set_interval(FLUSH_S, self._flush, pause=True)
        self.refresh_runs()
        self.status("pick a run, type a problem, press enter")

    # ------------------------------------------------------------------ runs

    def refresh_runs(self, select: str | None = None) -> None:
        runs = [r for r in list_runs(self.tapp.runs_dir) if (r.path / "checkpoints").is_dir()]
        sel = self.query_one("#repl-run", Select)
        current = select or (sel.value if isinstance(sel.value, str) else None)
        # the name alone: at 80 columns the select is ~17 cells wide, and the step shown after
        # loading (transcript header) depends on best/latest anyway
        sel.set_options([(r.name, str(r.path)) for r in runs])
        paths = [str(r.path) for r in runs]
        if current in paths:
            sel.value = current
        elif paths:
            sel.value = paths[0]

    @on(Select.Changed, "#repl-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str):
            return
        if not (Path(event.value) / "checkpoints" / "best").exists():  # stopped before any evaluation
            self.query_one("#repl-which", Select).value = "latest"
        try:  # sampling defaults from the run's profile
            gen = parse_profile((Path(event.value) / "profile.toml").read_text(encoding="utf-8")).generate
        except (OSError, ProfileError):
            return
        self.query_one("#repl-temperature", Input).value = f"{gen.temperature:g}"
        self.query_one("#repl-top-p", Input).value = f"{gen.top_p:g}"
        self.query_one("#repl-max-tokens", Input).value = str(gen.max_tokens)
        self.query_one("#repl-calculator", Switch).value = gen.calculator

    # ------------------------------------------------------------------ actions

    def status(self, text: str, style: str = "dim") -> None:
        self.query_one("#repl-status", Static).update(Text(printable(text), style=style))

    def _settings(self) -> dict[str, Any] | None:
        try:
            temperature = float(self.query_one("#repl-temperature", Input).value or 0)
            top_p = float(self.query_one("#repl-top-p", Input).value or 1)
            max_tokens = int(self.query_one("#repl-max-tokens", Input).value or 256)
        except ValueError:
            self.app.notify("temp and top-p must be numbers, max tok an integer.", severity="error")
            return None
        if temperature < 0 or not 0 < top_p <= 1 or max_tokens <= 0:
            self.app.notify("Need temp ≥ 0, 0 < top-p ≤ 1 and max tok > 0.", severity="error")
            return None
        try:
            self._depth = self._depth_settings()
        except ValueError as e:
            self.app.notify(str(e), severity="error")
            return None
        return {
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "calculator": self.query_one("#repl-calculator", Switch).value,
            "stop": stop_strings(),
        }

    def _depth_settings(self) -> dict[str, Any]:
        """Depth overrides from the second row (None = the checkpoint's own); ValueError, one sentence."""
        values: dict[str, Any] = {}
        for key, widget, kind in (
            ("supervision_steps", "#repl-steps", int),
            ("H", "#repl-H", int),
            ("L", "#repl-L", int),
            ("halt_threshold", "#repl-halt", float),
        ):
            text = self.query_one(widget, Input).value.strip()
            try:
                values[key] = kind(text) if text else None
            except ValueError:
                raise ValueError("steps, H and L must be whole numbers, halt a number.") from None
        if any(values[k] is not None and values[k] < 1 for k in ("supervision_steps", "H", "L")):
            raise ValueError("steps, H and L must be at least 1.")
        if values["halt_threshold"] is not None and not 0 <= values["halt_threshold"] <= 1:
            raise ValueError("halt must be between 0 and 1.")
        return values

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
            legend.update(Text("F9 shading off", style="dim"))

    @on(Input.Submitted, "#repl-prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_generate()

    def action_generate(self) -> None:
        if self.generating:
            self.app.notify("Still generating; F6 or escape stops it.", severity="warning")
            return
        run = self.query_one("#repl-run", Select).value
        if not isinstance(run, str):
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
        self.query_one("#repl-transcript", Transcript).add_prompt(
            prompt, header=f"{Path(run).name} · {which}"
        )
        self.generating = True
        self._flush_timer.resume()
        self.status("generating… (F6/esc stops)", "yellow")
        self._generate(Path(run), which, prompt, settings, self._depth)

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
    def _generate(
        self, run_dir: Path, which: str, prompt: str, settings: dict[str, Any], depth: dict[str, Any]
    ) -> None:
        worker = get_current_worker()
        clock = self.tapp.backend.clock
        start = clock()
        pieces = 0
        try:
            gen = self._generators.get((run_dir, which))
            if gen is None:
                self.post_message(GenerationStatus(f"loading {run_dir.name} ({which})…"))
                gen = self.tapp.backend.generator_factory(run_dir, which)
                self._generators[(run_dir, which)] = gen
                self.post_message(GenerationStatus(f"loaded {run_dir.name} ({which}); generating…"))
            if hasattr(gen, "set_depth"):  # overrides, or back to the checkpoint's own depth
                cfg = gen.model.cfg
                H, L = depth["H"] or cfg.H_cycles, depth["L"] or cfg.L_cycles
                threshold = depth["halt_threshold"]
                gen.set_depth(
                    depth["supervision_steps"] or gen.trained_steps,
                    (H, L),
                    gen.trained_threshold if threshold is None else threshold,
                )
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
        stats = dict(getattr(gen, "last_stats", {}) or {})
        if hasattr(gen, "steps"):
            stats["steps"] = gen.steps
        self.post_message(GenerationDone(pieces, clock() - start, cancelled=worker.is_cancelled, depth=stats))

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
        text = f"{'stopped' if msg.cancelled else 'done'}: {msg.pieces} pieces"
        if msg.seconds > 0:
            text += f" in {msg.seconds:.1f} s ({msg.pieces / msg.seconds:.0f}/s)"
        if "mean_depth" in msg.depth:
            steps = int(msg.depth.get("steps", 1))
            text += f" · depth {msg.depth['mean_depth']:.2f}/{steps} · {msg.depth['net_calls_per_token']:.1f} calls/tok"
            transcript.set_show_depth(transcript.show_depth, steps)
            self._show_legend()
        self.status(text)
