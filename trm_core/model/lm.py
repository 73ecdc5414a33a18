"""The causal Tiny Recursive Model (TRM) and a plain-transformer baseline, as autoregressive LMs.

TRM (SamsungSAILMontreal/TinyRecursiveModels) keeps two latent streams per position, z_H (the
answer) and z_L (the reasoning), and refines them with one small shared net:

    x = sqrt(D) * embed(tokens)
    repeat H_cycles:                        # all but the last `grad_cycles` under no_grad
        repeat L_cycles: z_L = net(z_L + z_H + x)
        z_H = net(z_H + z_L)
    hidden = z_H; carry = (z_H, z_L)        # the next supervision step starts from the carry

Every attention is causal and nothing mixes positions otherwise, so the state at position t never
depends on tokens after t in any cycle or supervision step. Hence incremental decoding with a KV
cache is exact: one K/V slot per (supervision step, H-cycle, net call, layer)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from trm_core.model.kv_cache import KVCache
from trm_core.model.layers import Net, RoPE, Rotary, trunc_normal_
from trm_core.profile import ModelConfig

__all__ = ["Carry", "CausalLM", "TRM", "Transformer", "build_model", "count_parameters"]


IGNORE_INDEX = -100


RunNet = Callable[[int, Tensor], Tensor]  # (net call index within a supervision step, input) -> output


@dataclass
class Carry:
    z_H: Tensor  # [B, T, D]
    z_L: Tensor  # [B, T, D]


class CausalLM(nn.Module):
    """Embedding, LM head, chunked loss, inference and KV-cached decoding shared by both archs.

    A subclass defines `_step` (one supervision step over `x`, calling the net through `run`)
    and `calls_per_step` (net calls per supervision step). How many supervision steps a model
    really runs is `cfg.supervision_passes(S)` (the baseline has no carry: always one).
    """

    calls_per_step: int = 1

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        D = cfg.hidden_size
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = nn.Embedding(vocab_size, D)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(D, vocab_size, bias=False)
        self.rotary = Rotary(D // cfg.num_heads, cfg.rope_theta)
        self.net = Net(cfg.num_layers, D, cfg.num_heads, cfg.expansion, cfg.norm_eps)

    def _init_weights(self) -> None:
        # Truncated LeCun normal like the official TRM; embeddings at std 1/sqrt(D) so that
        # sqrt(D) * embed has unit scale (and tied logits start at unit scale too).
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=module.in_features**-0.5)
        trunc_normal_(self.embed_tokens.weight, std=1.0 / self.embed_scale)

    # ------------------------------------------------------------------ the model proper

    def _step(
        self, x: Tensor, carry: Carry | None, run: RunNet, grad_cycles: int
    ) -> tuple[Tensor, Carry | None]:
        raise NotImplementedError

    def forward(
        self, input_ids: Tensor, carry: Carry | None = None, *, detach_carry: bool = True
    ) -> tuple[Tensor, Carry | None]:
        """One supervision step: (hidden [B,T,D] for the LM head, new carry or None)."""
        T = input_ids.shape[1]
        x = self.embed(input_ids)
        rope = self.rotary(torch.arange(T, device=input_ids.device))

        def run(call: int, h: Tensor) -> Tensor:
            return self.net(h, rope)

        hidden, new_carry = self._step(x, carry, run, self.cfg.grad_cycles)
        if new_carry is not None and detach_carry:
            new_carry = Carry(new_carry.z_H.detach(), new_carry.z_L.detach())
        return hidden, new_carry

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.embed_scale * self.embed_tokens(input_ids)

    @property
    def lm_head_weight(self) -> Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def logits(self, hidden: Tensor) -> Tensor:
        return F.linear(hidden, self.lm_head_weight)

    def loss(self, hidden: Tensor, labels: Tensor, *, chunk_size: int = 1024) -> Tensor:
        """Mean fp32 cross-entropy over supervised positions (labels != -100), in chunks.

        Only supervised positions are gathered, and each chunk's logits are recomputed in backward
        (checkpoint), so at most [chunk_size, V] logits exist at any time.
        """
        h = hidden.reshape(-1, hidden.shape[-1])
        y = labels.reshape(-1)
        keep = (y != IGNORE_INDEX).nonzero().squeeze(1)
        n = keep.numel()
        if n == 0:
            return hidden.float().sum() * 0.0  # keeps a grad_fn so `loss.backward()` still works
        h, y = h.index_select(0, keep), y.index_select(0, keep)
        weight = self.lm_head_weight
        total = hidden.new_zeros((), dtype=torch.float32)
        for i in range(0, n, chunk_size):
            total = total + checkpoint(
                _ce_sum, h[i : i + chunk_size], y[i : i + chunk_size], weight, use_reentrant=False
            )
        return total / n

    @torch.no_grad()
    def infer(self, input_ids: Tensor, supervision_steps: int) -> Tensor:
        """Logits [B,T,V] after `supervision_steps` passes, each from the previous carry."""
        carry = None
        for _ in range(self.cfg.supervision_passes(supervision_steps)):
            hidden, carry = self(input_ids, carry)
        return self.logits(hidden)

    def compile_regions(self, **compile_kwargs) -> None:
        """Regional compilation: compile each block of the net in place (one graph reused by all)."""
        for block in self.net.layers:
            block.compile(**compile_kwargs)

    # ------------------------------------------------------------------ KV-cached decoding

    def new_cache(
        self,
        batch_size: int,
        max_len: int,
        supervision_steps: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """A static cache (pass dtype=torch.bfloat16 when decoding under bf16 autocast)."""
        weight = self.embed_tokens.weight
        # normal tensors even when called under inference_mode, so the cache works in both modes
        with torch.inference_mode(False):
            return KVCache(
                batch_size=batch_size,
                max_len=max_len,
                supervision_steps=self.cfg.supervision_passes(supervision_steps),
                calls_per_step=self.calls_per_step,
                num_layers=self.cfg.num_layers,
                num_heads=self.cfg.num_heads,
                head_dim=self.cfg.hidden_size // self.cfg.num_heads,
                device=weight.device if device is None else device,
                dtype=weight.dtype if dtype is None else dtype,
            )

    def _cached_steps(
        self, input_ids: Tensor, cache: KVCache, rope: RoPE, index: int | Tensor, mask: Tensor | None
    ) -> Tensor:
        """All supervision steps for the new positions; each net call reads/writes its own slot.

        The boolean `mask` (True = attend) becomes an additive one here, once: SDPA would otherwise
        convert it again in every one of the H*(L+1)*layers*S attention calls of this token.
        """
        x = self.embed(input_ids)
        if mask is not None:
            mask = torch.zeros(
                mask.shape, dtype=self._attention_dtype(x.device), device=x.device
            ).masked_fill_(~mask, float("-inf"))
        carry = None
        hidden = x
        for step in range(cache.supervision_steps):

            def run(call: int, h: Tensor, step: int = step) -> Tensor:
                return self.net(h, rope, cache.slots(step, call), index, mask)

            hidden, carry = self._step(x, carry, run, grad_cycles=0)
        return hidden

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
    ) -> Tensor:
        """Process n new positions at cache.pos (prefill n > 1, decode n = 1) -> logits [B,n,V].

        pad_mask [B, max_len] (True = padding key) is kept in the cache for later calls; RoPE
        positions then skip padding (left-padded prompts get the positions of unpadded ones).
        `positions` [B,n] overrides the RoPE positions of these n tokens. `last_only` returns
        only the last position's logits ([B,1,V]).
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

        hidden = self._cached_steps(input_ids, cache, rope, pos, mask)
        cache.pos += n
        cache.pos_t.fill_(cache.pos)
        return self.logits(hidden[:, -1:] if last_only else hidden)

    @torch.no_grad()
    def decode_one(self, input_ids: Tensor, cache: KVCache) -> Tensor:
        """One token per row at cache.pos_t -> logits [B,1,V]; CUDA-graph capturable.

        Only tensor indexing (index_copy_ at pos_t, a full-length mask built from pos_t), no
        host sync, no data-dependent shape, no Python state changed: it advances `pos_t` on the
        device only, so the whole step can be compiled (dynamo would specialise on a Python int
        and recompile every token). The caller advances `cache.pos` (or calls `sync_pos()`).
        """
        pos_t = cache.pos_t
        positions = cache.position_ids.index_select(1, pos_t)  # [B, 1]
        rope = self.rotary(positions)
        keys = cache.key_index
        mask = (keys <= pos_t) & (~cache.pad_mask | (keys == pos_t))  # [B, max_len]
        hidden = self._cached_steps(input_ids, cache, rope, pos_t, mask[:, None, None, :])
        pos_t.add_(1)
        return self.logits(hidden)


def _ce_sum(h: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    logits = F.linear(h, weight).float()
    return F.cross_entropy(logits, y, reduction="sum")


class TRM(CausalLM):
    """The causal Tiny Recursive Model: one shared net refines z_H and z_L."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.calls_per_step = cfg.H_cycles * (cfg.L_cycles + 1)
        # fixed initial states (buffers, not learned), as in the official TRM
        self.register_buffer("H_init", trunc_normal_(torch.empty(cfg.hidden_size), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(cfg.hidden_size), std=1.0))
        self._init_weights()

    def _step(self, x: Tensor, carry: Carry | None, run: RunNet, grad_cycles: int) -> tuple[Tensor, Carry]:
        H_cycles, L_cycles = self.cfg.H_cycles, self.cfg.L_cycles
        if carry is None:
            z_H, z_L = self.H_init.expand_as(x), self.L_init.expand_as(x)
        else:
            z_H, z_L = carry.z_H, carry.z_L
        grad_enabled = torch.is_grad_enabled()
        call = 0
        for h in range(H_cycles):
            # only the last `grad_cycles` H-cycles build a graph (TRM's 1-step gradient when 1)
            with torch.set_grad_enabled(grad_enabled and h >= H_cycles - grad_cycles):
                for _ in range(L_cycles):
                    z_L = run(call, z_L + z_H + x)
                    call += 1
                z_H = run(call, z_H + z_L)
                call += 1
        return z_H, Carry(z_H, z_L)


class Transformer(CausalLM):
    """Baseline: `num_layers` distinct blocks of the same kind, applied once."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self._init_weights()

    def _step(self, x: Tensor, carry: Carry | None, run: RunNet, grad_cycles: int) -> tuple[Tensor, None]:
        return run(0, x), None


def build_model(cfg: ModelConfig, vocab_size: int) -> CausalLM:
    if cfg.arch == "trm":
        return TRM(cfg, vocab_size)
    if cfg.arch == "transformer":
        return Transformer(cfg, vocab_size)
    raise ValueError(f"unknown model.arch {cfg.arch!r}")


def count_parameters(profile) -> int:
    """Trainable parameters of the profile's model (tied weights once); allocates nothing."""
    from trm_core.data.tokenizers import build_tokenizer

    vocab_size = build_tokenizer(profile.tokenizer.name).vocab_size
    with torch.device("meta"):
        model = build_model(profile.model, vocab_size)
    return sum(p.numel() for p in model.parameters())
