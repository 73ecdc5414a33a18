"""Model sessions: how `Generator` feeds token ids to a model and gets next-token logits back.

`RecomputeSession` runs the whole sequence through `model.infer` for every token (no cache).
`CachedSession` prefills a static KV cache with `forward_step`, then decodes one token at a
time. A TRM spends S x H x (L+1) x layers layer passes per token, so that one-token step is
launch-bound: on CUDA `StepGraph` captures it once in a CUDA graph and replays it per token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trm_core.generation.sampling import SamplingOptions, sample_next


class RecomputeSession:
    """No cache: the whole sequence goes through `model.infer` for every token (the notebook's way)."""

    argmax: Tensor | None = None  # never precomputed here

    def __init__(self, model: Any, depth: Any):
        self.model, self.depth = model, depth  # a resolved Depth
        self.ids: Tensor | None = None
        self.may_halt: Tensor | None = None
        self.last_depth: Tensor | None = None

    @torch.inference_mode()
    def feed(self, ids: Tensor, pad_mask: Tensor | None = None, may_halt: Tensor | None = None) -> Tensor:
        self.ids = ids if self.ids is None else torch.cat([self.ids, ids], dim=1)
        if getattr(self.model, "q_head", None) is None:  # fixed depth: the whole sequence, S steps
            return self.model.infer(self.ids, self.depth)[:, -1].float()
        new = torch.ones_like(ids, dtype=torch.bool) if may_halt is None else may_halt
        self.may_halt = new if self.may_halt is None else torch.cat([self.may_halt, new], dim=1)
        hidden, depth = self.model.infer_depth(self.ids, self.depth, may_halt=self.may_halt)
        self.last_depth = depth[:, -1]
        return self.model.logits(hidden[:, -1]).float()

    def depths(self) -> list[int]:
        """Supervision steps the last fed position ran, per row (what the next token thought)."""
        assert self.last_depth is not None
        return self.last_depth.tolist()


class CachedSession:
    """Prefill with `forward_step`, then one token at a time on the static cache (graph-replayed on CUDA)."""

    def __init__(self, model: Any, cache: Any, graph: StepGraph | None):
        self.model, self.cache, self.graph = model, cache, graph
        self.argmax: Tensor | None = None  # [B] greedy ids of the last feed, when the graph made them

    @torch.inference_mode()
    def feed(self, ids: Tensor, pad_mask: Tensor | None = None, may_halt: Tensor | None = None) -> Tensor:
        """Logits of the last new position; under ACT `may_halt` [B, n] marks the new positions
        that may halt early (None = all; a prompt's positions may not, except the last)."""
        if self.graph is not None and ids.shape[1] == 1 and pad_mask is None:
            logits = self.graph.replay(ids)
            self.argmax = self.graph.static_next
            return logits
        self.argmax = None
        # last_only: a long prompt never materialises [B, T, V] logits (V = 50257 for GPT-2)
        act = {} if may_halt is None else {"may_halt": may_halt}  # a fixed-depth model needs none
        return self.model.forward_step(ids, self.cache, pad_mask, last_only=True, **act)[:, -1].float()

    def depths(self) -> list[int]:
        """Supervision steps the last fed position ran, per row (what the next token thought)."""
        pos = self.cache.pos
        return self.cache.depths(pos - 1, pos)[:, 0].tolist()


class StepGraph:
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


def pick_token(session: Any, logits: Tensor, opts: SamplingOptions, rng: torch.Generator) -> Tensor:
    """Next ids [B] on the device: the graph's own argmax when greedy, else `sample_next`."""
    if opts.temperature <= 0.0 and session.argmax is not None:
        return session.argmax
    return sample_next(
        logits.float(), temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p, generator=rng
    )
