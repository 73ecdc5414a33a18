"""Lockstep batch decoding: the loop behind `Generator.generate_batch` (KV cache, two or more prompts).

Prompts are left-padded to a common length and the padding is masked out of attention; RoPE
only sees relative offsets, so each row decodes as it would alone. Calculator tokens are fed one
per step from a per-row queue, which keeps the rows in lockstep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from trm_core.generation.sampling import SamplingOptions
from trm_core.generation.sessions import pick_token
from trm_core.generation.textstream import (
    CONTEXT_TAIL,
    TextStream,
    calculation_fix,
    clean_prompt,
    in_calculation,
)

if TYPE_CHECKING:
    from trm_core.generation.generator import Generator

__all__ = ["decode_batch"]


@dataclass
class _Row:
    decoder: Any
    text: TextStream
    context: str  # prompt text + generated text, for calculator detection
    forced: list[int] = field(default_factory=list)  # calculator tokens waiting to be fed
    new_tokens: int = 0
    done: bool = False


def decode_batch(gen: Generator, prompts: Sequence[str], opts: SamplingOptions) -> list[str]:
    """Continuations of `prompts` (at least two) decoded in lockstep on one cached session of `gen`."""
    preps = [gen._prepare(p, opts.max_tokens) for p in prompts]
    budget = preps[0].max_tokens
    if budget == 0:
        return ["" for _ in prompts]
    B = len(prompts)
    width = max(len(p.ids) for p in preps)
    total = width + budget
    pad = gen.tokenizer.pad_id
    session = gen._session(B, total)
    pad_mask = torch.zeros(B, session.cache.max_len, dtype=torch.bool, device=gen.device)
    rows_ids = []
    for b, p in enumerate(preps):
        n_pad = width - len(p.ids)
        pad_mask[b, :n_pad] = True
        rows_ids.append([pad] * n_pad + p.ids)
    rng = gen._torch_generator(opts.seed)
    eos = {gen.tokenizer.eos_id, gen.tokenizer.pad_id}
    rows = [
        _Row(gen.tokenizer.incremental_decoder(), TextStream(opts.stop), clean_prompt(p)[-CONTEXT_TAIL:])
        for p in prompts
    ]
    logits = session.feed(torch.tensor(rows_ids, device=gen.device), pad_mask)
    for _step in range(budget):
        sampled = pick_token(session, logits, opts, rng).tolist()  # the one host read per step
        feed = []
        for row, token in zip(rows, sampled, strict=True):
            if row.done:
                feed.append(pad)
                continue
            if not row.forced and opts.calculator and in_calculation(row.context):
                proposed = "" if token in eos else gen.tokenizer.decode([token])
                forced = calculation_fix(row.context, proposed, verify=opts.calculator_mode == "verify")
                if forced is not None:
                    forced_ids = gen.tokenizer.encode(forced)
                    if forced_ids and row.new_tokens + len(forced_ids) <= budget:
                        for i in forced_ids:
                            row.decoder.push(i)
                        row.text.add(forced, "calculator")
                        row.context = (row.context + forced)[-CONTEXT_TAIL:]
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
                row.context = (row.context + piece)[-CONTEXT_TAIL:]
                row.text.ready()
            row.new_tokens += 1
            if row.text.stopped or row.new_tokens >= budget:
                row.done = True
            feed.append(token)
        if all(r.done for r in rows):
            break
        logits = session.feed(torch.tensor(feed, device=gen.device).view(B, 1))
    out = []
    for row in rows:
        if not row.text.stopped:
            row.text.add(row.decoder.flush(), "model")
            row.text.ready()
        out.append(row.text.text)
    return out
