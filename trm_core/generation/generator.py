"""Text generation: the `Generator`, streaming one prompt or decoding a batch in lockstep.

`Generator.stream` is what the REPL drives: it yields `Piece`s as tokens are produced, each
decoded with the tokenizer's incremental decoder (never half a UTF-8 character). A TRM spends
S x H x (L+1) x layers layer passes per token, so decoding is launch-bound: with the static KV
cache the one-token step is captured once in a CUDA graph and replayed for every token.

Calculator-assisted decoding (GSM8K paper): whenever the text ends in an open `<<expr=`, the
calculator writes `result>>` and the model continues from there.

The parts live beside this module: `sampling` (options, logits filtering, the next-token draw),
`textstream` (pieces, stop strings, calculator spans, prompt cleaning), `sessions` (recompute
and KV-cache sessions, the CUDA-graph step) and `batch_decode` (the lockstep loop behind
`generate_batch`). Their public names are re-exported from here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trm_core.generation.batched import decode_batch
from trm_core.generation.sampling import SamplingOptions, filter_logits, resolve_seed, sample_next
from trm_core.generation.sessions import CachedSession, RecomputeSession, StepGraph, pick_token
from trm_core.generation.textstream import (
    CONTEXT_TAIL,
    Piece,
    TextStream,
    clean_prompt,
    open_calculation,
    pending_calculation,
)

__all__ = [
    "Piece",
    "Generator",
    "SamplingOptions",
    "filter_logits",
    "sample_next",
    "open_calculation",
    "clean_prompt",
    "MAX_CONTEXT",
]

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
        supervision_steps: int = 1,
        device: Any = None,
        cuda_graph: bool = True,
        compile_step: bool = False,
        dtype: Any = None,
        max_context: int = MAX_CONTEXT,
        defaults: SamplingOptions | None = None,
    ):
        """`compile_step` (CUDA only, opt-in) compiles `decode_one` before the CUDA graph captures it:
        about 1.8x faster per token in bf16, for 30-60 s of compilation on the first request of
        each batch size — too long a wait before an interactive answer to be the default. `dtype` ("auto", "fp32", "bf16") casts the model in place; None keeps it.
        """
        self.model = model
        self.tokenizer = tokenizer
        self.supervision_steps = int(supervision_steps)
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

        dtype "auto" = bf16 weights on CUDA, fp32 on CPU (`checkpoint.resolve_inference_dtype`).
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
            supervision_steps=loaded.profile.train.supervision_steps,
            device=loaded.device,
            defaults=SamplingOptions.from_profile(loaded.profile.generate),
            **kw,
        )
        gen.profile, gen.step, gen.path = loaded.profile, loaded.step, loaded.path
        return gen

    # ----------------------------------------------------------------- options

    def options(self, **kw: Any) -> SamplingOptions:
        """The defaults with every non-None keyword applied; values checked."""
        base = self.defaults
        opts = SamplingOptions(
            **{
                name: (kw[name] if kw.get(name) is not None else getattr(base, name))
                for name in SamplingOptions.__dataclass_fields__
            }
        )
        unknown = set(kw) - set(SamplingOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        opts.stop = (opts.stop,) if isinstance(opts.stop, str) else tuple(opts.stop)
        from trm_core.errors import UserError

        if opts.temperature < 0 or opts.top_k < 0 or not 0 < opts.top_p <= 1 or opts.max_tokens < 0:
            raise UserError(
                "sampling needs temperature >= 0, top_k >= 0, 0 < top_p <= 1 and max_tokens >= 0, "
                f"got {opts.temperature}, {opts.top_k}, {opts.top_p}, {opts.max_tokens}"
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
            cache = self.model.new_cache(batch_size, cap, self.supervision_steps, device=self.device)
            return CachedSession(self.model, cache, None)
        if self._graph_key is None or self._graph_key[0] != batch_size or self._graph_key[1] < cap:
            self._graph = self._graph_cache = None  # free the old cache before allocating a new one
            self._graph_cache = self.model.new_cache(
                batch_size, cap, self.supervision_steps, device=self.device
            )
            self._graph = StepGraph(self._step_fn(), self._graph_cache, batch_size, self.device)
            self._graph_key = (batch_size, cap)
        self._graph_cache.reset()
        return CachedSession(self.model, self._graph_cache, self._graph)

    # ----------------------------------------------------------------- one prompt

    def stream(
        self,
        prompt: str,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        calculator: bool | None = None,
        kv_cache: bool | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[Piece]:
        """Yield the continuation of `prompt` piece by piece. None = this generator's default."""
        opts = self.options(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
            calculator=calculator,
            kv_cache=kv_cache,
            stop=stop,
        )
        prep = self._prepare(prompt, opts.max_tokens)
        self.last_dropped = prep.dropped
        if prep.max_tokens == 0:
            return
        t0 = time.perf_counter()
        total = len(prep.ids) + prep.max_tokens
        session: Any
        if opts.kv_cache:
            session = self._session(1, total)
        else:
            session = RecomputeSession(self.model, self.supervision_steps)
        seed = resolve_seed(opts.seed)  # no seed: a fresh one, kept so the answer can be reproduced
        self.last_seed = seed if opts.temperature > 0 else None
        rng = self._torch_generator(seed)
        eos = {self.tokenizer.eos_id, self.tokenizer.pad_id}
        out = TextStream(opts.stop)
        decoder = self.tokenizer.incremental_decoder()
        context = clean_prompt(prompt)[-CONTEXT_TAIL:]
        new_tokens = 0
        logits = session.feed(torch.tensor([prep.ids], device=self.device))
        while new_tokens < prep.max_tokens:
            forced = pending_calculation(context) if opts.calculator else None
            if forced is not None:
                forced_ids = self.tokenizer.encode(forced)
                if forced_ids and new_tokens + len(forced_ids) <= prep.max_tokens:
                    for i in forced_ids:
                        decoder.push(i)  # keeps the decoder's context; the text is ours
                    out.add(forced, "calculator")
                    context = (context + forced)[-CONTEXT_TAIL:]
                    new_tokens += len(forced_ids)
                    yield from out.ready()
                    if out.stopped or new_tokens >= prep.max_tokens:
                        break
                    logits = session.feed(torch.tensor([forced_ids], device=self.device))
                    continue
            next_t = pick_token(session, logits, opts, rng)
            next_id = int(next_t[0])
            new_tokens += 1
            if next_id in eos:
                break
            piece = decoder.push(next_id)
            out.add(piece, "model")
            context = (context + piece)[-CONTEXT_TAIL:]
            yield from out.ready()
            if out.stopped or new_tokens >= prep.max_tokens:
                break
            logits = session.feed(next_t.view(1, 1))  # on the device already: no host-to-device copy
        if not out.stopped:
            tail = decoder.flush()
            out.add(tail, "model")
            yield from out.ready()
            yield from out.finish()
        elapsed = time.perf_counter() - t0
        self.last_stats = {
            "new_tokens": new_tokens,
            "seconds": elapsed,
            "tokens_per_s": new_tokens / max(elapsed, 1e-9),
            "seed": self.last_seed,
        }

    def generate(self, prompt: str, **kw: Any) -> str:
        return "".join(p.text for p in self.stream(prompt, **kw))

    # ----------------------------------------------------------------- batches

    def generate_batch(
        self,
        prompts: Sequence[str],
        *,
        temperature: float | None = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        calculator: bool | None = None,
        kv_cache: bool | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Continuations of several prompts decoded in lockstep (greedy unless told otherwise).

        Prompts are left-padded to a common length and the padding is masked out of attention;
        RoPE only sees relative offsets, so each row decodes as it would alone. Calculator tokens
        are fed one per step from a per-row queue, which keeps the rows in lockstep.
        """
        opts = self.options(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
            calculator=calculator,
            kv_cache=kv_cache,
            stop=stop,
        )
        if not prompts:
            return []
        if not opts.kv_cache or len(prompts) == 1:
            return [
                self.generate(p, **{k: getattr(opts, k) for k in SamplingOptions.__dataclass_fields__})
                for p in prompts
            ]
        return decode_batch(self, prompts, opts)
