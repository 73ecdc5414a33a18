"""Tokenized datasets and length-bucketed batches: label masking (-100 on prompt and padding),
the train/validation split, and deterministic, resumable batch order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trm_core.data.sources import Example, format_completion, format_prompt, load_examples
from trm_core.errors import DataError

IGNORE_INDEX = -100


MEGA_CHUNK_BATCHES = 50  # length-sort within chunks this many batches long, then shuffle batches


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long, right-padded with the tokenizer's pad id
    labels: torch.Tensor  # [B, T] long, already shifted: labels[:, t] is the target at position t
    num_tokens: int  # real (non-padding) input tokens, for throughput

    def to(self, device: Any, non_blocking: bool = False) -> Batch:
        return Batch(
            self.input_ids.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.num_tokens,
        )


class TokenizedDataset:
    """Tokenized examples: each row is prompt + completion + EOS, with the prompt's length.

    A row of n tokens gives n-1 input positions: input_ids = seq[:-1], labels = seq[1:] with
    -100 where the target is a prompt token (loss_on="answer") or padding.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        sequences: list[list[int]],
        prompt_lengths: list[int],
        *,
        pad_id: int,
        max_length: int,
        bucket_multiple: int,
        loss_on: str = "answer",
        dropped: int = 0,
    ):
        self.dropped = dropped  # examples whose prompt alone filled max_length
        self.examples = list(examples)
        self.sequences = sequences
        self.prompt_lengths = prompt_lengths
        self.pad_id = pad_id
        self.max_length = max_length
        self.bucket_multiple = max(1, bucket_multiple)
        self.loss_on = loss_on

    def __len__(self) -> int:
        return len(self.sequences)

    def input_length(self, i: int) -> int:
        return len(self.sequences[i]) - 1

    def padded_length(self, n: int) -> int:
        """The batch length for a longest row of `n` input tokens: rounded up to `bucket_multiple`."""
        m = self.bucket_multiple
        return min(math.ceil(n / m) * m, math.ceil(self.max_length / m) * m)

    def bucket_lengths(self) -> set[int]:
        """Every batch length this dataset can produce (what a compiled step must be ready for)."""
        return {self.padded_length(self.input_length(i)) for i in range(len(self))}

    def collate(self, indices: Sequence[int]) -> Batch:
        """Pad rows `indices` into one Batch, length rounded up to `bucket_multiple`."""
        T = self.padded_length(max(self.input_length(i) for i in indices))
        input_ids = torch.full((len(indices), T), self.pad_id, dtype=torch.long)
        labels = torch.full((len(indices), T), IGNORE_INDEX, dtype=torch.long)
        num_tokens = 0
        for row, i in enumerate(indices):
            seq = self.sequences[i]
            n = len(seq) - 1
            input_ids[row, :n] = torch.tensor(seq[:-1], dtype=torch.long)
            # Target at position t is seq[t+1]; the first supervised target is the first answer token.
            first = 0 if self.loss_on == "all" else max(self.prompt_lengths[i] - 1, 0)
            labels[row, first:n] = torch.tensor(seq[first + 1 :], dtype=torch.long)
            num_tokens += n
        return Batch(input_ids=input_ids, labels=labels, num_tokens=num_tokens)


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    max_length: int,
    bucket_multiple: int = 64,
    loss_on: str = "answer",
) -> TokenizedDataset:
    """Tokenize prompt and completion separately (so the prompt boundary is exact), add EOS, truncate.

    Examples left with nothing to learn after truncation (prompt longer than max_length) are dropped.
    """
    if max_length < 2:
        raise DataError(f"data.max_length must be at least 2, got {max_length}")
    encode_batch = getattr(tokenizer, "encode_batch", None) or (lambda ts: [tokenizer.encode(t) for t in ts])
    prompts = encode_batch([format_prompt(ex.question) for ex in examples])
    completions = encode_batch([format_completion(ex.answer) for ex in examples])
    kept: list[Example] = []
    sequences: list[list[int]] = []
    prompt_lengths: list[int] = []
    for ex, p, c in zip(examples, prompts, completions, strict=True):
        seq = (p + c + [tokenizer.eos_id])[:max_length]
        if loss_on != "all" and len(p) >= len(seq):
            continue  # the prompt alone fills max_length: no supervised token left
        kept.append(ex)
        sequences.append(seq)
        prompt_lengths.append(len(p))
    return TokenizedDataset(
        kept,
        sequences,
        prompt_lengths,
        pad_id=tokenizer.pad_id,
        max_length=max_length,
        bucket_multiple=bucket_multiple,
        loss_on=loss_on,
        dropped=len(examples) - len(kept),
    )


def split_train_val(
    examples: Sequence[Example], val_size: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """Carve a deterministic validation slice of `val_size` examples out of *train*."""
    if val_size <= 0:
        return list(examples), []
    if val_size >= len(examples):
        raise DataError(
            f"data.val_size {val_size} leaves no training examples (the source has {len(examples)}); lower it"
        )
    order = list(range(len(examples)))
    random.Random(f"trm-val:{seed}").shuffle(order)
    val_idx = set(order[:val_size])
    train = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [examples[i] for i in sorted(val_idx)]
    return train, val


def build_datasets(profile: Any, tokenizer: Any) -> tuple[TokenizedDataset, TokenizedDataset]:
    """(train, val) for a profile: the train split of `data.source`, minus a val slice carved from it."""
    d = profile.data
    examples = load_examples(
        d.source,
        "train",
        synthetic_size=d.synthetic_size,
        min_steps=d.synthetic_min_steps,
        max_steps=d.synthetic_max_steps,
        seed=d.seed,
        synthetic_answer=d.synthetic_answer,
    )
    train, val = split_train_val(examples, d.val_size, d.seed)
    kw = {"max_length": d.max_length, "bucket_multiple": d.bucket_multiple, "loss_on": d.loss_on}
    train_ds = tokenize_examples(train, tokenizer, **kw)
    if len(train_ds) == 0:
        raise DataError(f"no training example fits in data.max_length {d.max_length} tokens; raise it")
    return train_ds, tokenize_examples(val, tokenizer, **kw)


def num_batches(ds: TokenizedDataset, batch_size: int, world_size: int = 1) -> int:
    """Batches each rank gets per epoch (the remainder that cannot go to every rank is dropped)."""
    return math.ceil(len(ds) / batch_size) // world_size


def _epoch_batches(
    ds: TokenizedDataset, batch_size: int, seed: int, epoch: int, shuffle: bool
) -> list[list[int]]:
    n = len(ds)
    order = list(range(n))
    if not shuffle:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = random.Random(f"trm-batches:{seed}:{epoch}")
    rng.shuffle(order)
    # Sort by length inside mega-chunks: little padding, yet every epoch mixes differently.
    chunk = batch_size * MEGA_CHUNK_BATCHES
    batches: list[list[int]] = []
    for start in range(0, n, chunk):
        part = sorted(order[start : start + chunk], key=ds.input_length)
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def iterate_batches(
    ds: TokenizedDataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    shuffle: bool = True,
) -> Iterator[Batch]:
    """This rank's batches of one epoch, deterministic for (seed, epoch); `start_batch` resumes exactly."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    batches = _epoch_batches(ds, batch_size, seed, epoch, shuffle)
    per_rank = len(batches) // world_size  # equal counts on every rank so DDP never hangs
    mine = batches[rank : per_rank * world_size : world_size]
    for indices in mine[start_batch:]:
        yield ds.collate(indices)
