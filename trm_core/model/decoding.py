"""KV-cached incremental decoding, shared by both architectures (a mixin of `CausalLM`).

`forward_step` prefills or decodes n new positions; `decode_one` is the CUDA-graph-capturable
one-token step. Every net call of every supervision step reads and writes its own K/V slot, so the
cached decoder computes exactly what the parallel forward computes. Under ACT (`halting.py`) a new
position runs supervision steps until it halts, and its remaining steps are skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from trm_core.model.depth import Depth
from trm_core.model.halting import keep_halted, running_key_mask, still_running
from trm_core.model.kv_cache import KVCache
from trm_core.model.layers import RoPE

__all__ = ["CachedDecoding"]


class CachedDecoding:
    """The decoding half of `CausalLM`: needs `embed`, `net`, `rotary`, `logits`, `q_halt`, `_step`,
    `calls_for`, `cfg` and `q_head` from the model."""

    cfg: Any
    net: Any
    rotary: Any
    embed_tokens: Any
    q_head: Any

    def new_cache(
        self,
        batch_size: int,
        max_len: int,
        depth: Depth,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        init_seed: Tensor | int = 0,
    ) -> KVCache:
        """A static cache for a complete `depth` (S x H x L, and ACT's threshold), decoded with
        that depth (pass dtype=torch.bfloat16 when decoding under bf16 autocast). `init_seed` (one
        per row, or one for all) seeds each row's noise start under model.init_state = "noise"."""
        assert depth.complete, "a cache is sized for a resolved Depth"
        weight = self.embed_tokens.weight
        # normal tensors even when called under inference_mode, so the cache works in both modes
        with torch.inference_mode(False):
            cache = KVCache(
                batch_size=batch_size,
                max_len=max_len,
                supervision_steps=self.cfg.supervision_passes(depth.supervision_steps),
                calls_per_step=self.calls_for(depth),
                num_layers=self.cfg.num_layers,
                num_heads=self.cfg.num_heads,
                head_dim=self.cfg.hidden_size // self.cfg.num_heads,
                device=weight.device if device is None else device,
                dtype=weight.dtype if dtype is None else dtype,
                depth=depth,
                act=self.q_head is not None and self.cfg.supervision_passes(2) > 1,  # TRM only
            )
            cache.init_seed.copy_(torch.as_tensor(init_seed, dtype=torch.long).expand(batch_size))
            return cache

    def _additive(self, mask: Tensor, device: torch.device) -> Tensor:
        """The boolean mask (True = attend) as an additive one, made once per step: SDPA would
        otherwise convert it again in every one of the H*(L+1)*layers attention calls."""
        additive = torch.zeros(mask.shape, dtype=self._attention_dtype(device), device=device)
        return additive.masked_fill_(~mask, float("-inf"))

    def _cached_steps(
        self,
        input_ids: Tensor,
        cache: KVCache,
        rope: RoPE,
        positions: Tensor,
        index: int | Tensor,
        mask: Tensor | None,
        may_halt: Tensor | None = None,
    ) -> Tensor:
        """All supervision steps for the new positions (RoPE `positions`, which the noise start is
        a function of); each net call reads/writes its own slot."""
        x = self.embed(input_ids)
        start = self.start_carry(x, positions, cache.init_seed)
        if cache.running is not None:
            return self._cached_act_steps(x, cache, rope, index, mask, may_halt, start)
        if mask is not None:
            mask = self._additive(mask, x.device)
        carry = start
        hidden = x
        for step in range(cache.supervision_steps):

            def run(call: int, h: Tensor, step: int = step) -> Tensor:
                return self.net(h, rope, cache.slots(step, call), index, mask)

            hidden, carry = self._step(x, carry, run, cache.depth, 0)
        return hidden

    def _cached_act_steps(
        self,
        x: Tensor,
        cache: KVCache,
        rope: RoPE,
        index: int | Tensor,
        base: Tensor | None,
        may_halt: Tensor | None,
        start: Any,
    ) -> Tensor:
        """ACT under the cache: the new positions run until they halt. Step s's keys are the
        positions that ran step s (`cache.running[s]`); when every new position has halted
        (eager path), the remaining steps are skipped: that is the compute ACT saves."""
        assert cache.running is not None and cache.ran is not None
        threshold = cache.depth.halt_threshold
        assert threshold is not None
        B, n = x.shape[:2]
        eager = isinstance(index, int)
        L = index + n if eager else cache.max_len
        keys = cache.key_index[:L]
        query_pos = keys[index : index + n] if eager else index
        diagonal = keys[None, :] == query_pos[:, None]  # [n, L]
        if base is None:
            base = (keys[None, :] <= query_pos[:, None]).view(1, 1, n, L)
        running = torch.ones(B, n, dtype=torch.bool, device=x.device)
        ran = torch.zeros(B, n, dtype=torch.long, device=x.device)
        carry: Any = start  # the model's Carry (None: the fixed start vectors)
        S = cache.supervision_steps
        if eager:
            cache.running[:, :, index : index + n] = False
        for step in range(S):
            if eager:
                if step > 0 and not bool(running.any()):
                    break  # every new position halted: no later step is computed at all
                cache.running[step, :, index : index + n] = running
            else:
                cache.running[step].index_copy_(1, index, running)
            mask = self._additive(running_key_mask(base, cache.running[step, :, :L], diagonal), x.device)

            def run(call: int, h: Tensor, step: int = step, mask: Tensor = mask) -> Tensor:
                return self.net(h, rope, cache.slots(step, call), index, mask)

            _, new = self._step(x, carry, run, cache.depth, 0)
            assert new is not None
            if carry is not None:
                z_H, z_L = keep_halted(running, new.z_H, carry.z_H), keep_halted(running, new.z_L, carry.z_L)
                new = dataclasses.replace(new, z_H=z_H, z_L=z_L)
            carry = new
            ran += running
            q = self.q_halt(carry.z_H)
            running = still_running(step, S, q, running, threshold=threshold, may_halt=may_halt)
        if eager:
            cache.ran[:, index : index + n] = ran
        else:
            cache.ran.index_copy_(1, index, ran)
        assert carry is not None
        return carry.z_H

    def _attention_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype the queries will have: autocast's when it is on, else the weights'."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.embed_tokens.weight.dtype

    @torch.no_grad()
    def forward_step(
        self,
        input_ids: Tensor,
        cache: KVCache,
        pad_mask: Tensor | None = None,
        positions: Tensor | None = None,
        *,
        last_only: bool = False,
        may_halt: Tensor | None = None,
    ) -> Tensor:
        """Process n new positions at cache.pos (prefill n > 1, decode n = 1) -> logits [B,n,V].

        pad_mask [B, max_len] (True = padding key) is kept in the cache for later calls; RoPE
        positions then skip padding (left-padded prompts get the positions of unpadded ones).
        `positions` [B,n] overrides the RoPE positions of these n tokens. `last_only` returns
        only the last position's logits ([B,1,V]). Under ACT `may_halt` [B,n] marks the positions
        allowed to halt before the last step (None = all); the depth each ran is in `cache.depth`.
        """
        B, n = input_ids.shape
        pos = cache.pos
        if pos + n > cache.max_len:
            raise ValueError(f"KV cache full: {pos} + {n} positions exceed max_len {cache.max_len}")
        if pad_mask is not None:
            cache.set_pad_mask(pad_mask)
        if positions is None:
            positions = (
                cache.position_ids[:, pos : pos + n] if cache.has_padding else cache.key_index[pos : pos + n]
            )
        rope = self.rotary(positions)

        mask = None  # one unpadded query attends to every cached key: no mask needed
        if n > 1 or cache.has_padding:
            query_pos = cache.key_index[pos : pos + n, None]
            keys = cache.key_index[None, : pos + n]
            mask = keys <= query_pos  # [n, pos+n]: causal within the new block
            if cache.has_padding:
                # a padding query still sees itself, so its softmax is never empty (no NaN)
                mask = mask & (~cache.pad_mask[:, None, : pos + n] | (keys == query_pos))
            mask = mask.view(-1, 1, n, pos + n)

        hidden = self._cached_steps(input_ids, cache, rope, positions, pos, mask, may_halt)
        cache.pos += n
        cache.pos_t.fill_(cache.pos)
        return self.logits(hidden[:, -1:] if last_only else hidden)

    @torch.no_grad()
    def decode_one(self, input_ids: Tensor, cache: KVCache) -> Tensor:
        """One token per row at cache.pos_t -> logits [B,1,V]; CUDA-graph capturable.

        Only tensor indexing (index_copy_ at pos_t, a full-length mask built from pos_t), no
        host sync, no data-dependent shape, no Python state changed: it advances `pos_t` on the
        device only, so the whole step can be compiled (dynamo would specialise on a Python int
        and recompile every token). The caller advances `cache.pos`.
        """
        pos_t = cache.pos_t
        positions = cache.position_ids.index_select(1, pos_t)  # [B, 1]
        rope = self.rotary(positions)
        keys = cache.key_index
        mask = (keys <= pos_t) & (~cache.pad_mask | (keys == pos_t))  # [B, max_len]
        hidden = self._cached_steps(input_ids, cache, rope, positions, pos_t, mask[:, None, None, :])
        pos_t.add_(1)
        return self.logits(hidden)
