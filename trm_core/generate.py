"""Text generation: sampling, streaming, KV cache, CUDA graphs, batches and the calculator.

`Generator.stream` is what the REPL drives: it yields `Piece`s as tokens are produced, each
decoded with the tokenizer's incremental decoder (never half a UTF-8 character). A TRM spends
S x H x (L+1) x layers layer passes per token, so decoding is launch-bound: with the static KV
cache the one-token step is captured once in a CUDA graph and replayed for every token.

Calculator-assisted decoding (GSM8K paper): whenever the text ends in an open `<<expr=`, the
calculator writes `result>>` and the model continues from there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .calculator import format_result, safe_eval

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
_CONTEXT_TAIL = 512  # text kept for calculator detection (an expression is at most 200 characters)


@dataclass
class Piece:
    text: str
    source: str = "model"  # "model" | "calculator"


@dataclass
class SamplingOptions:
    """One request's settings. `Generator.defaults` holds the profile's `[generate]` values."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    calculator: bool = False
    kv_cache: bool = True
    stop: tuple[str, ...] = ()

    @classmethod
    def from_profile(cls, gen: Any) -> SamplingOptions:
        return cls(
            temperature=gen.temperature,
            top_k=gen.top_k,
            top_p=gen.top_p,
            max_tokens=gen.max_tokens,
            seed=gen.seed,
            calculator=gen.calculator,
            kv_cache=gen.kv_cache,
        )


# --------------------------------------------------------------------------- sampling


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits [..., V] with everything outside the top-k, then outside the nucleus, set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability reaches `top_p`
    (the most likely token is always kept).
    """
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of strictly better tokens
        drop_sorted = mass_before >= top_p  # already reached top_p without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next ids [B] from logits [B, V]: argmax at temperature 0, else a filtered, tempered draw."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------- calculator


_OPEN_CALC = re.compile(r"<<([^<>]*)=$")


def open_calculation(text: str) -> str | None:
    """The expression of an open `<<expr=` that `text` ends with (no `>>` after the `<<`), else None."""
    if not text.endswith("="):
        return None
    start = text.rfind("<<")
    if start < 0 or ">>" in text[start:]:
        return None
    m = _OPEN_CALC.search(text, start)
    return m.group(1) if m else None


def _calculation(text: str) -> str | None:
    """`result>>` for the open calculation `text` ends with, or None when there is none or it is not computable."""
    expr = open_calculation(text)
    if expr is None or not expr.strip():
        return None
    value = safe_eval(expr)
    return None if value is None else format_result(value) + ">>"


def clean_prompt(text: str) -> str:
    """`text` made encodable: lone surrogates (undecodable bytes read with surrogateescape) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # surrogates that are not escaped bytes
            return text.encode("utf-8", "replace").decode("utf-8")


# --------------------------------------------------------------------------- streaming text


class _TextStream:
    """Generated text with the source of every span; yields pieces, holding back possible stop strings."""

    def __init__(self, stop: Sequence[str]):
        self.stop = tuple(s for s in stop if s)
        self.text = ""
        self._spans: list[tuple[int, str]] = []  # (start offset, source)
        self._emitted = 0
        self.stopped = False

    def add(self, text: str, source: str) -> None:
        if text:
            if not self._spans or self._spans[-1][1] != source:
                self._spans.append((len(self.text), source))
            self.text += text

    def _pieces(self, end: int) -> list[Piece]:
        out: list[Piece] = []
        for i, (start, source) in enumerate(self._spans):
            stop = self._spans[i + 1][0] if i + 1 < len(self._spans) else len(self.text)
            lo, hi = max(start, self._emitted), min(stop, end)
            if lo < hi:
                out.append(Piece(self.text[lo:hi], source))
        self._emitted = max(self._emitted, end)
        return out

    def ready(self) -> list[Piece]:
        """Pieces safe to show now. Sets `stopped` (and trims) when a stop string has appeared."""
        if not self.stop:
            return self._pieces(len(self.text))
        longest = max(len(s) for s in self.stop)
        window_start = max(0, self._emitted - longest)
        hits = [i for s in self.stop if (i := self.text.find(s, window_start)) >= 0]
        if hits:
            cut = min(hits)
            self.text = self.text[:cut]
            self.stopped = True
            return self._pieces(cut)
        # Hold back a tail that could still grow into a stop string.
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return self._pieces(len(self.text) - hold)

    def finish(self) -> list[Piece]:
        return self._pieces(len(self.text))


# --------------------------------------------------------------------------- model sessions


class _RecomputeSession:
    """No cache: the whole sequence goes through `model.infer` for every token (the notebook's way)."""

    argmax: Tensor | None = None  # never precomputed here

    def __init__(self, model: Any, supervision_steps: int):
        self.model, self.S = model, supervision_steps
        self.ids: Tensor | None = None

    @torch.inference_mode()
    def feed(self, ids: Tensor) -> Tensor:
        self.ids = ids if self.ids is None else torch.cat([self.ids, ids], dim=1)
        return self.model.infer(self.ids, self.S)[:, -1].float()


class _CachedSession:
    """Prefill with `forward_step`, then one token at a time on the static cache (graph-replayed on CUDA)."""

    def __init__(self, model: Any, cache: Any, graph: _StepGraph | None):
        self.model, self.cache, self.graph = model, cache, graph
        self.argmax: Tensor | None = None  # [B] greedy ids of the last feed, when the graph made them

    @torch.inference_mode()
    def feed(self, ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        if self.graph is not None and ids.shape[1] == 1 and pad_mask is None:
            logits = self.graph.replay(ids)
            self.argmax = self.graph.static_next
            return logits
        self.argmax = None
        # last_only: a long prompt never materialises [B, T, V] logits (V = 50257 for GPT-2)
        return self.model.forward_step(ids, self.cache, pad_mask, last_only=True)[:, -1].float()


class _StepGraph:
    """`step(ids[B,1], cache)` (= `model.decode_one`, maybe compiled) captured once in a CUDA graph.

    decode_one reads its position from `cache.pos_t` and the padding from `cache.pad_mask` (both
    device tensors updated in place by reset()/forward_step), so one graph serves every request
    that uses this cache; a replay advances `pos_t` on the device and we advance `pos` here. The
    greedy pick (`static_next`) is captured too, so greedy decoding reads B ids per token instead
    of copying [B, V] logits.
    """

    def __init__(self, step: Any, cache: Any, batch_size: int, device: torch.device):
        self.cache = cache
        self.static_ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.graph = torch.cuda.CUDAGraph()
        pos = cache.pos
        # Warm up on a side stream (lazy kernels, allocator, compilation), as the torch.cuda.graphs
        # docs require.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                step(self.static_ids, cache)[:, -1].argmax(dim=-1)
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.cuda.graph(self.graph):
            self.static_logits = step(self.static_ids, cache)[:, -1]
            self.static_next = self.static_logits.argmax(dim=-1)
        # Warm-up wrote K/V at positions >= pos; they are masked until overwritten. Rewind.
        cache.pos = pos
        cache.pos_t.fill_(pos)

    def replay(self, ids: Tensor) -> Tensor:
        self.static_ids.copy_(ids)  # a device tensor (the last greedy pick) needs no host copy
        self.graph.replay()
        self.cache.pos += 1
        return self.static_logits


def _pick(session: Any, logits: Tensor, opts: SamplingOptions, rng: torch.Generator) -> Tensor:
    """Next ids [B] on the device: the graph's own argmax when greedy, else `sample_next`."""
    if opts.temperature <= 0.0 and session.argmax is not None:
        return session.argmax
    return sample_next(
        logits.float(), temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p, generator=rng
    )


# --------------------------------------------------------------------------- generator


@dataclass
class _Prepared:
    ids: list[int]
    dropped: int  # prompt tokens cut from the left to fit the context
    max_tokens: int


@dataclass
class _Row:
    decoder: Any
    text: _TextStream
    context: str  # prompt text + generated text, for calculator detection
    forced: list[int] = field(default_factory=list)  # calculator tokens waiting to be fed
    new_tokens: int = 0
    done: bool = False


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
            from .checkpoint import resolve_inference_dtype

            self.model.to(dtype=resolve_inference_dtype(dtype, self.device))
        self.cuda_graph = cuda_graph
        self.compile_step = self.device.type == "cuda" and bool(compile_step)
        self._compiled_decode: Any = None
        self.max_context = max_context
        self.defaults = defaults or SamplingOptions()
        self.last_dropped = 0  # prompt tokens dropped from the left by the last request (for a note)
        self.last_stats: dict[str, float] = {}
        self._graph_key: tuple[int, int] | None = None
        self._graph: _StepGraph | None = None
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
        from .checkpoint import load_for_inference

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
        from .errors import UserError

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
    def _session(self, batch_size: int, length: int) -> _CachedSession:
        """A fresh cached session with room for `length` positions.

        On CUDA the cache and its captured one-token graph are kept and reused by later requests
        of the same batch size that fit (capture costs a few warm-up steps).
        """
        cap = -(-length // _CACHE_BUCKET) * _CACHE_BUCKET
        if not self._use_graph():
            cache = self.model.new_cache(batch_size, cap, self.supervision_steps, device=self.device)
            return _CachedSession(self.model, cache, None)
        if self._graph_key is None or self._graph_key[0] != batch_size or self._graph_key[1] < cap:
            self._graph = self._graph_cache = None  # free the old cache before allocating a new one
            self._graph_cache = self.model.new_cache(
                batch_size, cap, self.supervision_steps, device=self.device
            )
            self._graph = _StepGraph(self._step_fn(), self._graph_cache, batch_size, self.device)
            self._graph_key = (batch_size, cap)
        self._graph_cache.reset()
        return _CachedSession(self.model, self._graph_cache, self._graph)

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
            session = _RecomputeSession(self.model, self.supervision_steps)
        rng = self._torch_generator(opts.seed)
        eos = {self.tokenizer.eos_id, self.tokenizer.pad_id}
        out = _TextStream(opts.stop)
        decoder = self.tokenizer.incremental_decoder()
        context = clean_prompt(prompt)[-_CONTEXT_TAIL:]
        new_tokens = 0
        logits = session.feed(torch.tensor([prep.ids], device=self.device))
        while new_tokens < prep.max_tokens:
            forced = _calculation(context) if opts.calculator else None
            if forced is not None:
                forced_ids = self.tokenizer.encode(forced)
                if forced_ids and new_tokens + len(forced_ids) <= prep.max_tokens:
                    for i in forced_ids:
                        decoder.push(i)  # keeps the decoder's context; the text is ours
                    out.add(forced, "calculator")
                    context = (context + forced)[-_CONTEXT_TAIL:]
                    new_tokens += len(forced_ids)
                    yield from out.ready()
                    if out.stopped or new_tokens >= prep.max_tokens:
                        break
                    logits = session.feed(torch.tensor([forced_ids], device=self.device))
                    continue
            next_t = _pick(session, logits, opts, rng)
            next_id = int(next_t[0])
            new_tokens += 1
            if next_id in eos:
                break
            piece = decoder.push(next_id)
            out.add(piece, "model")
            context = (context + piece)[-_CONTEXT_TAIL:]
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
        preps = [self._prepare(p, opts.max_tokens) for p in prompts]
        budget = preps[0].max_tokens
        if budget == 0:
            return ["" for _ in prompts]
        B = len(prompts)
        width = max(len(p.ids) for p in preps)
        total = width + budget
        pad = self.tokenizer.pad_id
        session = self._session(B, total)
        pad_mask = torch.zeros(B, session.cache.max_len, dtype=torch.bool, device=self.device)
        rows_ids = []
        for b, p in enumerate(preps):
            n_pad = width - len(p.ids)
            pad_mask[b, :n_pad] = True
            rows_ids.append([pad] * n_pad + p.ids)
        rng = self._torch_generator(opts.seed)
        eos = {self.tokenizer.eos_id, self.tokenizer.pad_id}
        rows = [
            _Row(
                self.tokenizer.incremental_decoder(), _TextStream(opts.stop), clean_prompt(p)[-_CONTEXT_TAIL:]
            )
            for p in prompts
        ]
        logits = session.feed(torch.tensor(rows_ids, device=self.device), pad_mask)
        for _step in range(budget):
            sampled = _pick(session, logits, opts, rng).tolist()  # the one host read per step
            feed = []
            for row, token in zip(rows, sampled, strict=True):
                if row.done:
                    feed.append(pad)
                    continue
                if not row.forced and opts.calculator:
                    forced = _calculation(row.context)
                    if forced is not None:
                        forced_ids = self.tokenizer.encode(forced)
                        if forced_ids and row.new_tokens + len(forced_ids) <= budget:
                            for i in forced_ids:
                                row.decoder.push(i)
                            row.text.add(forced, "calculator")
                            row.context = (row.context + forced)[-_CONTEXT_TAIL:]
                            row.forced = list(forced_ids)
                            row.text.ready()
                            row.done = row.text.stopped
                if row.forced:
                    token = row.forced.pop(0)
                else:
                    if token in eos:
                        row.done = True
                        feed.append(pad)
                        continue
                    piece = row.decoder.push(token)
                    row.text.add(piece, "model")
                    row.context = (row.context + piece)[-_CONTEXT_TAIL:]
                    row.text.ready()
                row.new_tokens += 1
                if row.text.stopped or row.new_tokens >= budget:
                    row.done = True
                feed.append(token)
            if all(r.done for r in rows):
                break
            logits = session.feed(torch.tensor(feed, device=self.device).view(B, 1))
        out = []
        for row in rows:
            if not row.text.stopped:
                row.text.add(row.decoder.flush(), "model")
                row.text.ready()
            out.append(row.text.text)
        return out
