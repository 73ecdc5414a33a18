"""The KV cache of incremental decoding: one K/V slot per net call of a supervision step.

The cache is sized for the depth asked at inference (supervision steps, H- and L-cycles), which
may differ from the depth the model was trained at. With ACT it also keeps, per supervision step,
which positions were still running (the keys a later query may attend to) and each position's depth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trm_core.model.depth import Depth
from trm_core.model.layers import KVSlot


class KVCache:
    """Static, preallocated K/V for every (supervision step, net call, layer) slot.

    `pos` (a Python int) is the number of positions already processed; `pos_t` mirrors it on the
    device for `decode_one`, whose CUDA-graph replays advance only `pos_t` (the caller advances
    `pos` too, as `generation/sessions.py` does). `pad_mask` [B, max_len] marks padding keys;
    `position_ids` [B, max_len] holds each position's RoPE position (padding not counted).
    With `act`, `running` [S, B, max_len] marks the positions that ran each supervision step and
    `ran` [B, max_len] the number of steps each position ran. `depth` (complete) is the depth
    every cached step runs: its H/L cycles and, under ACT, the threshold that decides halting.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        max_len: int,
        supervision_steps: int,
        calls_per_step: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        depth: Depth,
        act: bool = False,
    ):
        self.batch_size, self.max_len = batch_size, max_len
        self.supervision_steps = supervision_steps
        self.calls_per_step = calls_per_step
        self.depth = depth
        num_slots = supervision_steps * calls_per_step * num_layers
        shape = (num_slots, batch_size, num_heads, max_len, head_dim)
        # zeros, not empty: masked keys still enter the matmul, and 0 * NaN garbage would be NaN
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_index = torch.arange(max_len, device=device)
        self.pad_mask = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.init_seed = torch.zeros(batch_size, dtype=torch.long, device=device)  # noise start, per row
        self.position_ids = self.key_index.expand(batch_size, max_len).clone()
        self.pos_t = torch.zeros(1, dtype=torch.long, device=device)
        self.pos = 0
        self.has_padding = False
        self.running = (
            torch.zeros(supervision_steps, batch_size, max_len, dtype=torch.bool, device=device)
            if act
            else None
        )
        self.ran = torch.zeros(batch_size, max_len, dtype=torch.long, device=device) if act else None
        # the per-layer (k, v) views of every net call, made once: slots() runs for every call
        self._slots = [
            [(self.k[i], self.v[i]) for i in range(first, first + num_layers)]
            for first in range(0, num_slots, num_layers)
        ]

    def reset(self) -> None:
        """Forget every position (the K/V memory is kept and overwritten)."""
        self.pos = 0
        self.pos_t.zero_()
        self.pad_mask.zero_()
        self.position_ids.copy_(self.key_index.expand_as(self.position_ids))
        self.has_padding = False
        if self.running is not None:
            self.running.zero_()
        if self.ran is not None:
            self.ran.zero_()

    def set_pad_mask(self, pad_mask: Tensor) -> None:
        """Padding keys to ignore from now on; RoPE positions then skip the padding."""
        self.pad_mask.copy_(pad_mask)
        self.position_ids.copy_((torch.cumsum(~self.pad_mask, dim=1) - 1).clamp_min(0))
        self.has_padding = True

    def slots(self, step: int, call: int) -> list[KVSlot]:
        """The per-layer (k, v) views for one net call of one supervision step."""
        return self._slots[step * self.calls_per_step + call]

    def depths(self, start: int, end: int) -> Tensor:
        """Supervision steps run by positions [start, end) of every row ([B, end - start])."""
        if self.ran is None:
            return torch.full(
                (self.batch_size, end - start), self.supervision_steps, dtype=torch.long, device=self.k.device
            )
        return self.ran[:, start:end]
