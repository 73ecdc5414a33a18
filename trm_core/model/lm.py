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
cache is exact: one K/V slot per (supervision step, H-cycle, net call, layer).

With `model.halting = "act"` a Q-head on z_H decides after each supervision step whether a
position halts (see `halting.py`): per-token adaptive depth, still exact under the KV cache.
Any depth (S, H, L: a `Depth`, `depth.py`) may be asked at inference; the cache is sized for it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx.experimental._config as fx_config
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from trm_core.model.attention_precision import cpu_attention_fp32
from trm_core.model.decoding import CachedDecoding
from trm_core.model.depth import Depth
from trm_core.model.halting import keep_halted, running_key_mask, still_running
from trm_core.model.layers import Net, Rotary, trunc_normal_
from trm_core.profile import ModelConfig

__all__ = ["Carry", "CausalLM", "TRM", "Transformer", "build_model", "count_parameters"]


IGNORE_INDEX = -100


RunNet = Callable[[int, Tensor], Tensor]  # (net call index within a supervision step, input) -> output


@dataclass
class Carry:
    z_H: Tensor  # [B, T, D]
    z_L: Tensor  # [B, T, D]
    running: Tensor | None = None  # [B, T] bool under ACT: positions that run the next step


class CausalLM(CachedDecoding, nn.Module):
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
        # ACT's Q-head: one halting logit per position, read from z_H after each supervision step
        self.q_head = nn.Linear(D, 1) if getattr(cfg, "halting", "none") == "act" else None
        self.trained_depth = Depth.trained(cfg)  # what `forward` runs unless told otherwise (S = 1)

    def _init_weights(self) -> None:
        # Truncated LeCun normal like the official TRM; embeddings at std 1/sqrt(D) so that
        # sqrt(D) * embed has unit scale (and tied logits start at unit scale too).
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=module.in_features**-0.5)
        trunc_normal_(self.embed_tokens.weight, std=1.0 / self.embed_scale)
        if self.q_head is not None:  # by default as the official TRM: far from halting (sigmoid(-5))
            with torch.no_grad():
                self.q_head.weight.zero_()
                self.q_head.bias.fill_(self.cfg.halt_bias_init)  # -5: the official TRM's

    # ------------------------------------------------------------------ the model proper

    def _step(
        self, x: Tensor, carry: Carry | None, run: RunNet, depth: Depth, grad_cycles: int
    ) -> tuple[Tensor, Carry | None]:
        raise NotImplementedError

    def calls_for(self, depth: Depth) -> int:
        """Net calls per supervision step at `depth` (a complete one)."""
        return self.calls_per_step

    def forward(
        self,
        input_ids: Tensor,
        carry: Carry | None = None,
        *,
        detach_carry: bool = True,
        depth: Depth | None = None,
        grad_cycles: int | None = None,
        init_seed: Tensor | None = None,
    ) -> tuple[Tensor, Carry | None]:
        """One supervision step at `depth`'s H/L (`trained_depth` when not given): (hidden [B,T,D]
        for the LM head, new carry or None). Only the last `grad_cycles` H-cycles (model.grad_cycles
        when not given; training's train.backprop_depth) build a graph. `init_seed` [B] seeds each
        sequence's noise start under model.init_state = "noise" (0 when not given).

        Under ACT (`carry.running` given) only running positions are keys, and halted positions
        keep their state: hidden is then each position's z_H from the step where it halted.
        """
        T = input_ids.shape[1]
        x = self.embed(input_ids)
        positions = torch.arange(T, device=input_ids.device)
        rope = self.rotary(positions)
        running = None if carry is None else carry.running
        mask = None
        if running is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril_()
            diagonal = torch.eye(T, dtype=torch.bool, device=x.device)
            mask = running_key_mask(causal[None, None], running, diagonal)

        net = self._parallel_net()
        attn_fp32 = self.attention_fp32(x)

        def run(call: int, h: Tensor) -> Tensor:
            return net(h, rope, None, None, mask, attn_fp32)

        depth = self.trained_depth if depth is None else depth
        grad_cycles = self.cfg.grad_cycles if grad_cycles is None else grad_cycles
        start = carry if carry is not None else self.start_carry(x, positions, init_seed)
        hidden, new_carry = self._step(x, start, run, depth, grad_cycles)
        if new_carry is not None and carry is not None and running is not None:
            z_H = keep_halted(running, new_carry.z_H, carry.z_H)
            new_carry = Carry(z_H, keep_halted(running, new_carry.z_L, carry.z_L), running)
            hidden = z_H
        if new_carry is not None and detach_carry:
            new_carry = Carry(new_carry.z_H.detach(), new_carry.z_L.detach(), new_carry.running)
        return hidden, new_carry

    def start_carry(self, x: Tensor, positions: Tensor, init_seed: Tensor | None) -> Carry | None:
        """The state a sequence starts from: None for the fixed start vectors (`_step` expands them)
        or a model without a carry; under init_state = "noise" each sequence's noise (`init_state.py`)
        at `positions` ([T] or [B, T], RoPE positions), seeded by `init_seed` [B] (0 when None)."""
        if getattr(self.cfg, "init_state", "learned") != "noise" or self.cfg.arch != "trm":
            return None
        from trm_core.model.init_state import position_noise

        seeds = torch.zeros(x.shape[0], dtype=torch.long) if init_seed is None else init_seed
        z_H = position_noise(seeds, positions, x.shape[-1], 0).to(x.dtype).expand_as(x)
        z_L = position_noise(seeds, positions, x.shape[-1], 1).to(x.dtype).expand_as(x)
        return Carry(z_H, z_L)

    def q_halt(self, hidden: Tensor) -> Tensor:
        """ACT's halting logits [B,T] (fp32) from z_H; halt when sigmoid(q) > the threshold."""
        assert self.q_head is not None, "q_halt needs model.halting = 'act'"
        return self.q_head(hidden).squeeze(-1).float()

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
    def infer(self, input_ids: Tensor, depth: Depth, **halting) -> Tensor:
        """Logits [B,T,V] after `depth.supervision_steps` passes, each from the previous carry.

        `halting` keywords are those of `infer_depth` (may_halt, halt_steps)."""
        return self.logits(self.infer_depth(input_ids, depth, **halting)[0])

    @torch.no_grad()
    def infer_depth(
        self,
        input_ids: Tensor,
        depth: Depth,
        *,
        may_halt: Tensor | None = None,
        halt_steps: Tensor | None = None,
        init_seed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(hidden [B,T,D], depth [B,T]): the parallel forward at a complete `depth`, halting per
        position under ACT (`halting.still_running`, with `depth.halt_threshold`).

        `may_halt` [B,T] marks the positions allowed to halt early (None = all); `halt_steps`
        [B,T] imposes every position's depth instead of the Q-head's decisions.
        """
        carry = None
        assert depth.complete and depth.halt_threshold is not None, "infer at a resolved Depth"
        steps = self.cfg.supervision_passes(depth.supervision_steps)
        B, T = input_ids.shape
        running = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        ran = torch.zeros(B, T, dtype=torch.long, device=input_ids.device)
        for step in range(steps):
            hidden, carry = self(input_ids, carry, depth=depth, init_seed=init_seed)
            ran += running
            if self.q_head is None or carry is None:
                continue
            running = still_running(
                step, steps, self.q_halt(hidden), running,
                threshold=depth.halt_threshold, may_halt=may_halt, halt_steps=halt_steps,
            )  # fmt: skip
            carry = Carry(carry.z_H, carry.z_L, running)
        return hidden, ran

    def attention_fp32(self, x: Tensor) -> bool:
        """Should this forward's parallel attention run in fp32? Only on CPU under bf16 autocast,
        where fp32 measured faster for this head size on this CPU (`attention_precision`). Decided
        here, outside any compiled graph, and handed to the net as a plain bool (a compiled net
        keeps one graph per value)."""
        if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return False
        if torch.get_autocast_dtype("cpu") != torch.bfloat16:
            return False
        return _measured_attention_fp32(self.cfg.hidden_size // self.cfg.num_heads)

    def compile_regions(self, **compile_kwargs) -> None:
        """Regional compilation: compile each block of the net in place (one graph reused by all)."""
        for block in self.net.layers:
            block.compile(**compile_kwargs)

    def compile_net(self, **compile_kwargs) -> None:
        """Compile the whole shared net, attention included, as one graph for the parallel forward
        (training and validation; the CPU path, `accel.compile_regions_for`). The Python loops over
        H- and L-cycles call that one graph, so a new depth per step (sampled depth) reuses it;
        grad and no-grad calls get one graph each. KV-cached decoding keeps calling the eager net.
        The compiled function is kept outside the module tree (state_dict and checkpoints unchanged)
        and takes the net as an argument, so a deep copy (the EMA) runs its own weights."""
        self.__dict__["_compiled_net"] = torch.compile(_call_net, **compile_kwargs)

    def _parallel_net(self) -> Callable[..., Tensor]:
        """The net for a parallel forward: compile_net's graph when made, else the eager net."""
        compiled = self.__dict__.get("_compiled_net")
        if compiled is None:
            return self.net
        net = self.net

        def run(*args: object) -> Tensor:
            # no duck sizing: a first length equal to the hidden size (or to the batch size) would
            # otherwise tie the length to it, and the next length would compile a second graph
            with fx_config.patch(use_duck_shape=False):
                return compiled(net, *args)

        return run


def _call_net(net: nn.Module, *args: object) -> Tensor:
    return net(*args)


@torch.compiler.disable  # reads a file and may time a micro-benchmark: never traced (whole-model compile)
def _measured_attention_fp32(head_dim: int) -> bool:
    return cpu_attention_fp32(head_dim)


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

    def calls_for(self, depth: Depth) -> int:
        H_cycles, L_cycles = depth.cycles
        return H_cycles * (L_cycles + 1)

    def _step(
        self, x: Tensor, carry: Carry | None, run: RunNet, depth: Depth, grad_cycles: int
    ) -> tuple[Tensor, Carry]:
        H_cycles, L_cycles = depth.cycles
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

    def _step(
        self, x: Tensor, carry: Carry | None, run: RunNet, depth: Depth, grad_cycles: int
    ) -> tuple[Tensor, None]:
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
