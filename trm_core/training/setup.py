"""What a Trainer trains, built from a profile: tokenizer, data, model, EMA, optimizer, step budget.

Kept apart from the loop in `trainer.py`. Built in this order on purpose: the data and tokenizer
first (a missing dataset must fail before the run dir exists), then the model from the seed alone.
`TrainData` is this rank's side of the data: which batches come in which order from a position,
so that a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from trm_core.errors import DataError
from trm_core.model.memory import check_fits
from trm_core.profile import Profile
from trm_core.training.accel import Accel, choose_accel
from trm_core.training.cpu_share import CpuShare
from trm_core.training.depth_sampler import DepthSampler
from trm_core.training.ema import EMA
from trm_core.training.optim import build_optimizer
from trm_core.training.state import Position

if TYPE_CHECKING:
    from trm_core.data.batches import Batch, TokenizedDataset
    from trm_core.data.tokenizers import Tokenizer
    from trm_core.model.lm import CausalLM

__all__ = ["TrainData", "TrainSetup", "build_train_setup"]


@dataclass
class TrainData:
    """The training set and validation slice as this rank sees them, batched deterministically."""

    train_ds: TokenizedDataset
    val_ds: TokenizedDataset
    batch_size: int
    seed: int
    rank: int
    world_size: int
    batches_per_epoch: int  # per rank: every rank takes the same number (DDP needs it)

    def walk(self, start: Position) -> Iterator[tuple[int, int, Batch]]:
        """(epoch, batch index, batch) from `start` (its pass ignored) on, epoch after epoch, endless."""
        from trm_core.data.batches import iterate_batches

        nb = self.batches_per_epoch
        epoch, first = start.epoch, start.batch
        while True:
            if first < nb:
                it = iterate_batches(
                    self.train_ds, self.batch_size, seed=self.seed, epoch=epoch,
                    rank=self.rank, world_size=self.world_size, start_batch=first,
                )  # fmt: skip
                for i, batch in enumerate(it, start=first):
                    if i >= nb:  # every rank takes the same number of batches (DDP needs it)
                        break
                    yield epoch, i, batch
            epoch, first = epoch + 1, 0

    def next_position(self, epoch: int, batch: int, pass_: int, *, steps_per_batch: int) -> Position:
        """Where work goes on after step `pass_` of batch `batch` of `epoch`, a batch taking
        `steps_per_batch` optimizer steps (S with deep supervision, one when accumulating)."""
        if pass_ + 1 < steps_per_batch:
            return Position(epoch, batch, pass_ + 1)
        if batch + 1 < self.batches_per_epoch:
            return Position(epoch, batch + 1, 0)
        return Position(epoch + 1, 0, 0)

    def val_batches(self) -> Iterator[Batch]:
        """This rank's share of the validation slice, in order."""
        from trm_core.data.batches import iterate_batches

        return iterate_batches(
            self.val_ds, self.batch_size, seed=self.seed, epoch=0, rank=self.rank,
            world_size=self.world_size, shuffle=False,
        )  # fmt: skip


@dataclass
class TrainSetup:
    tokenizer: Tokenizer
    data: TrainData
    model: CausalLM
    supervision_steps: int  # S: passes per batch (1 for a model without a carry)
    deep: bool  # supervision = "deep": one optimizer step per pass
    total_steps: int
    ema: EMA | None
    optimizer: torch.optim.AdamW
    precision: str  # "bf16" | "fp32"
    accel: Accel  # the precision and compile decisions, with the reason
    depth: DepthSampler  # the H-cycles of each step (train.depth_sampling), the noise-start seeds
    cpu_share: CpuShare  # the intra-op threads on CPU, fitted to the other processes' load


def build_train_setup(
    profile: Profile, device: torch.device, *, rank: int, world_size: int, max_steps: int | None
) -> TrainSetup:
    """Seed, then build everything `profile` trains on `device` (as `rank` of `world_size`);
    `max_steps` (if set) wins over the profile's step budget. Too few examples for one batch on
    each rank is a DataError."""
    from trm_core.data.batches import build_datasets, num_batches
    from trm_core.data.tokenizers import build_tokenizer
    from trm_core.model.lm import build_model

    p, t = profile, profile.train
    random.seed(t.seed)
    torch.manual_seed(t.seed)

    # Data and tokenizer first: a missing dataset must fail before the run dir exists.
    tokenizer = build_tokenizer(p.tokenizer.name)
    check_fits(p, device, vocab_size=tokenizer.vocab_size)  # before the data or the model take memory
    train_ds, val_ds = build_datasets(p, tokenizer)
    batches_per_epoch = num_batches(train_ds, t.batch_size, world_size)
    if batches_per_epoch <= 0:
        raise DataError(
            f"{len(train_ds)} training examples are too few for one batch of {t.batch_size}"
            + (f" on each of {world_size} processes" if world_size > 1 else "")
        )
    data = TrainData(train_ds, val_ds, t.batch_size, t.seed, rank, world_size, batches_per_epoch)

    torch.manual_seed(t.seed)  # the initial weights depend on the seed alone
    model = build_model(p.model, tokenizer.vocab_size).to(device)
    S = p.model.supervision_passes(t.supervision_steps)
    deep = t.supervision == "deep"
    per_batch = S if deep else 1
    total_steps = max_steps or t.max_steps or batches_per_epoch * t.epochs * per_batch
    accel = choose_accel(t.precision, t.compile, device, total_steps, model_cfg=p.model)
    # fewer threads when other work keeps the cores busy, re-fitted while training
    cpu_share = CpuShare(device)
    threads = cpu_share.start()
    if threads:
        accel = replace(accel, reason="; ".join(r for r in (accel.reason, threads) if r))
    return TrainSetup(
        tokenizer=tokenizer,
        data=data,
        model=model,
        supervision_steps=S,
        deep=deep,
        total_steps=total_steps,
        ema=EMA(model, t.ema_decay) if t.ema else None,
        optimizer=build_optimizer(model, t, device),
        precision=accel.precision,
        accel=accel,
        depth=DepthSampler(t, p.model),
        cpu_share=cpu_share,
    )
