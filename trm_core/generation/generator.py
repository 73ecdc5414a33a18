"""Text generation: the `Generator`, streaming one prompt or decoding a batch in lockstep.

`Generator.stream` is what the REPL drives: it yields `Piece`s as tokens are produced, each
decoded with the tokenizer's incremental decoder (never half a UTF-8 character). A TRM spends
S x H x (L+1) x layers layer passes per token, so decoding is launch-bound: with the static KV
cache the one-token step is captured once in a CUDA graph and replayed for every token.

Calculator-assisted decoding (GSM8K paper): whenever the text ends in an open `<<expr=`, the
calculator writes `result>>` and the model continues from there.

This module prepares requests (options, prompt, session); the parts live beside it: `batched`
(the one decode loop), `sampling` (options, logits filtering, the next-token draw), `textstream`
(pieces, stop strings, the calculator's turn, prompt cleaning) and `sessions` (recompute and
KV-cache sessions, the CUDA-graph step).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trm_core.errors import UserError
from trm_core.generation.batched import DecodeRow, decode
from trm_core.generation.sampling import SamplingOptions, resolve_seed
from trm_core.generation.sessions import CachedSession, RecomputeSession, StepGraph
from trm_core.generation.textstream import Piece, clean_prompt
from trm_core.limits import MAX_SEED
from trm_core.model.depth import Depth

__all__ = ["Generator", "MAX_CONTEXT"]

MAX_CONTEXT = 8192  # hard cap on prompt + new tokens: the cache is preallocated for all of it
_CACHE_BUCKET = 256  # cache lengths are rounded up to this, so one cache/graph serves many requests


# --------------------------------------------------------------------------- generator


@dataclass
class _Prepared:
    ids: list[int]
    dropped: int  # prompt tokens cut from the left to fit the context
    max_tokens: int


class Generator:
    """Generates text from a CausalLM + tokenizer. Not thread-safe: one request at a time."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        depth: Depth | None = None,
        device: Any = None,
        cuda_graph: bool = True,
        compile_step: bool = False,
        dtype: Any = None,
        max_context: int = MAX_CONTEXT,
        defaults: SamplingOptions | None = None,
        prompt_halts: bool = False,
    ):
        """`compile_step` (CUDA only, opt-in) compiles `decode_one` before the CUDA graph captures it:
        about 1.8x faster per token in bf16, for 30-60 s of compilation on the first request of
        each batch size — too long a wait before an interactive answer to be the default. `dtype` ("auto", "fp32", "bf16") casts the model in place; None keeps it.
        `depth` is the checkpoint's depth (`Depth.of_profile`; unset values: the model config's,
        one supervision step, threshold 0.5): what `set_depth` requests are resolved against.
        Under ACT `prompt_halts` (a model trained with loss on every position) lets a prompt's
        positions halt early too.
        """
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_halts = prompt_halts
        cfg = getattr(model, "cfg", None)
        self.act = getattr(model, "q_head", None) is not None and cfg is not None and cfg.arch == "trm"
        self.last_token_depths: list[list[tuple[int, int]]] = []  # per row of the last request
        # the depth this generator started with (the checkpoint's), and the one it decodes at now
        base = Depth.trained(cfg) if cfg is not None else Depth(1, 1, 1, 0.5)  # (a scripted test model)
        self.trained: Depth = (depth or Depth()).resolve(base)
        self.depth: Depth = self.trained
        if device is None:
            device = next(iter(model.parameters())).device
        self.device = torch.device(device)
        if dtype is not None:
            from trm_core.runs.inference import resolve_inference_dtype

            self.model.to(dtype=resolve_inference_dtype(dtype, self.device))
        self.cuda_graph = cuda_graph
        self.compile_step = self.device.type == "cuda" and bool(compile_step)
        self._compiled_decode: Any = None
        self.max_context = max_context
        self.defaults = defaults or SamplingOptions()
        self.last_dropped = 0  # prompt tokens dropped from the left by the last request (for a note)
        self.last_stats: dict[str, float] = {}
        self.last_seed: int | None = None  # the seed the last sampled request used (None: greedy)
        self._graph_key: tuple[int, int] | None = None
        self._graph: StepGraph | None = None
        self._graph_cache: Any = None
        self.model.eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        which: str = "best",
        *,
        ema: bool = True,
        device: str = "auto",
        dtype: Any = "auto",
        **kw: Any,
    ) -> Generator:
        """A Generator for a run or checkpoint dir, with the checkpoint profile's sampling defaults.

        dtype "auto" = bf16 weights on CUDA, fp32 on CPU (`runs.inference.resolve_inference_dtype`).
        """
        from trm_core.runs.inference import load_for_inference

        loaded = load_for_inference(path, which, ema=ema, device=device, dtype=dtype)
        gen = cls.from_loaded(loaded, **kw)
        return gen

    @classmethod
    def from_loaded(cls, loaded: Any, **kw: Any) -> Generator:
        gen = cls(
            loaded.model,
            loaded.tokenizer,
            depth=Depth.of_profile(loaded.profile),
            device=loaded.device,
            defaults=SamplingOptions.from_profile(loaded.profile.generate),
            prompt_halts=loaded.profile.data.loss_on == "all",
            **kw,
        )
        gen.profile, gen.step, gen.path = loaded.profile, loaded.step, loaded.path
        return gen

    # ----------------------------------------------------------------- depth

    def set_depth(self, request: Depth) -> Depth:
        """Decode at `request` from now on, each unset value the checkpoint's (`Depth.resolve`);
        checked against the limits first (UserError, one sentence). Returns the depth now used."""
        arch = getattr(getattr(self.model, "cfg", None), "arch", "trm")
        depth = request.check(arch).resolve(self.trained)
        if depth != self.depth:
            self._graph_key = self._graph = self._graph_cache = None  # the cache is sized for the depth
        self.depth = depth
        return depth

    @property
    def steps(self) -> int:
        """Supervision steps decoded (the transformer baseline has one, whatever is asked)."""
        cfg = getattr(self.model, "cfg", None)
        S = self.depth.supervision_steps
        assert S is not None
        return S if cfg is None else cfg.supervision_passes(S)

    def calls_per_step(self) -> int:
        calls_for = getattr(self.model, "calls_for", None)  # a scripted test model has none
        return 1 if calls_for is None else calls_for(self.depth)

    def prefill_may_halt(self, pad_mask: Tensor | None, shape: tuple[int, int]) -> Tensor | None:
        """Which prompt positions may halt early under ACT: all real ones when the model was trained
        with loss on the prompt, else only the last (whose target, the first answer token, had a
        label at training). None for a fixed-depth model."""
        if not self.act:
            return None
        if self.prompt_halts:
            may = torch.ones(shape, dtype=torch.bool, device=self.device)
            return may if pad_mask is None else may & ~pad_mask[:, : shape[1]]
        may = torch.zeros(shape, dtype=torch.bool, device=self.device)
        may[:, -1] = True
        return may

    def depth_stats(self, rows: Sequence[Any]) -> dict[str, float]:
        """Mean depth and net calls per generated token, over the model tokens of `rows`."""
        depths = [d for row in rows for _, d in row.text.token_depths]
        mean = sum(depths) / len(depths) if depths else float(self.steps)
        return {"mean_depth": mean, "net_calls_per_token": mean * self.calls_per_step()}

    # ----------------------------------------------------------------- options

    def options(self, options: SamplingOptions | None = None, **kw: Any) -> SamplingOptions:
        """`options` (default: this generator's defaults) with every non-None keyword applied; values checked."""
        base = self.defaults if options is None else options
        unknown = set(kw) - set(SamplingOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        opts = dataclasses.replace(base, **{k: v for k, v in kw.items() if v is not None})
        opts.stop = (opts.stop,) if isinstance(opts.stop, str) else tuple(opts.stop)
        if (
            not 0 <= opts.temperature < math.inf
            or opts.top_k < 0
            or not 0 < opts.top_p <= 1
            or opts.max_tokens < 0
        ):
            raise UserError(
                "sampling needs a finite temperature >= 0, top_k >= 0, 0 < top_p <= 1 and max_tokens >= 0, "
                f"got {opts.temperature}, {opts.top_k}, {opts.top_p}, {opts.max_tokens}"
            )
        if opts.calculator_mode not in ("verify", "write"):
            raise UserError(f"calculator_mode must be 'verify' or 'write', got {opts.calculator_mode!r}")
        if opts.seed is not None and opts.seed > MAX_SEED:
            raise UserError(
                f"the sampling seed must be at most 2**63-1 (negative = a fresh seed), got {opts.seed}"
            )
        return opts

    def _prepare(self, prompt: str, max_tokens: int) -> _Prepared:
        # Cap new tokens so that some prompt always fits, then cut the prompt from the left.
        max_tokens = min(max_tokens, self.max_context // 2)
        ids = self.tokenizer.encode(clean_prompt(prompt))
        if not ids:
            ids = [self.tokenizer.eos_id]  # an empty prompt starts a document, as after an EOS
        room = self.max_context - max_tokens
        dropped = max(0, len(ids) - room)
        return _Prepared(ids[dropped:], dropped, max_tokens)

    def _torch_generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        if seed is None or seed < 0:  # no seed (or a negative one): a fresh random stream
            g.seed()
        else:
            g.manual_seed(int(seed))
        return g

    def _use_graph(self) -> bool:
        return (
            self.cuda_graph
            and self.device.type == "cuda"
            and hasattr(self.model, "decode_one")
            and torch.cuda.is_available()
        )

    def _step_fn(self) -> Any:
        """What the graph captures: `decode_one`, compiled whole first when `compile_step`."""
        if not self.compile_step:
            return self.model.decode_one
        if self._compiled_decode is None:
            # dynamic=False: one static graph per cache shape, which is what CUDA graphs replay anyway
            self._compiled_decode = torch.compile(self.model.decode_one, dynamic=False)
        return self._compiled_decode

    @torch.inference_mode()
    def _session(self, batch_size: int, length: int) -> CachedSession:
        """A fresh cached session with room for `length` positions.

        On CUDA the cache and its captured one-token graph are kept and reused by later requests
        of the same batch size that fit (capture costs a few warm-up steps).
        """
        cap = -(-length // _CACHE_BUCKET) * _CACHE_BUCKET
        if not self._use_graph():
            cache = self.model.new_cache(batch_size, cap, self.depth, device=self.device)
            return CachedSession(self.model, cache, None)
        if self._graph_key is None or self._graph_key[0] != batch_size or self._graph_key[1] < cap:
            self._graph = self._graph_cache = None  # free the old cache before allocating a new one
            self._graph_cache = self.model.new_cache(batch_size, cap, self.depth, device=self.device)
            self._graph = StepGraph(self._step_fn(), self._graph_cache, batch_size, self.device)
            self._graph_key = (batch_size, cap)
        self._graph_cache.reset()
        return CachedSession(self.model, self._graph_cache, self._graph)

    # ----------------------------------------------------------------- decoding

    def stream(
        self, prompt: str, options: SamplingOptions | None = None, **overrides: Any
    ) -> Iterator[Piece]:
        """Yield the continuation of `prompt` piece by piece: a batch of one through `decode`.

        `options` (default: this generator's) with `overrides` (any `SamplingOptions` field; None
        keeps the value) applied."""
        opts = self.options(options, **overrides)
        prep = self._prepare(prompt, opts.max_tokens)
        self.last_dropped = prep.dropped
        if prep.max_tokens == 0:
            return
        t0 = time.perf_counter()
        session: Any
        if opts.kv_cache:
            session = self._session(1, len(prep.ids) + prep.max_tokens)
        else:
            session = RecomputeSession(self.model, self.depth)
        seed = resolve_seed(opts.seed)  # no seed: a fresh one, kept so the answer can be reproduced
        self.last_seed = seed if opts.temperature > 0 else None
        row = DecodeRow.start(prep.ids, prompt, self.tokenizer, opts.stop)
        for _, piece in decode(
            session, [row], opts, tokenizer=self.tokenizer, budget=prep.max_tokens,
            rng=self._torch_generator(seed), device=self.device, act=self if self.act else None,
        ):  # fmt: skip
            yield piece
        elapsed = time.perf_counter() - t0
        self.last_stats = {
            "new_tokens": row.new_tokens,
            "seconds": elapsed,
            "tokens_per_s": row.new_tokens / max(elapsed, 1e-9),
            "calculator_spans": row.text.calculator_spans,  # corrections, with calculator_mode "verify"
            "seed": self.last_seed,
            **self.depth_stats([row]),
        }
        self.last_token_depths = [row.text.token_depths]

    def generate(self, prompt: str, options: SamplingOptions | None = None, **overrides: Any) -> str:
        return "".join(p.text for p in self.stream(prompt, options, **overrides))

    def generate_batch(
        self, prompts: Sequence[str], options: SamplingOptions | None = None, **overrides: Any
    ) -> list[str]:
        """Continuations of several prompts decoded in lockstep (greedy unless told otherwise).

        With the KV cache, one session holds every row (`decode`); each row decodes as it would alone.
        """
        if options is None:
            overrides.setdefault("temperature", 0.0)
        opts = self.options(options, **overrides)
        if not prompts:
            return []
        if not opts.kv_cache or len(prompts) == 1:
            texts, depths = [], []
            for p in prompts:
                texts.append(self.generate(p, opts))
                depths += self.last_token_depths
            self.last_token_depths = depths
            return texts
        preps = [self._prepare(p, opts.max_tokens) for p in prompts]
        budget = preps[0].max_tokens
        if budget == 0:
            return ["" for _ in prompts]
        rows = [
            DecodeRow.start(p.ids, text, self.tokenizer, opts.stop)
            for p, text in zip(preps, prompts, strict=True)
        ]
        session = self._session(len(rows), max(len(p.ids) for p in preps) + budget)
        rng = self._torch_generator(opts.seed)
        for _ in decode(
            session, rows, opts, tokenizer=self.tokenizer, budget=budget, rng=rng, device=self.device,
            act=self if self.act else None,
        ):  # fmt: skip
            pass
        self.last_token_depths = [r.text.token_depths for r in rows]
        self.last_stats = self.depth_stats(rows)
        return [r.text.text for r in rows]
