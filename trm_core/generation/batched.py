"""The decode loop: one or more prompts decoded in lockstep on one session (`Generator.stream` is a batch of one).

Everything that happens per token happens here, once: the next-token pick (`pick_token`: sampling options, the graph's greedy argmax),
the calculator's check of a picked token inside an open `<<expr=` (`calculation_fix`: in "verify"
mode the model's result is kept while it spells the right value and corrected otherwise; in
"write" mode the calculator writes every result), end of text, stop strings and the token budget. Prompts of a batch are left-padded to a common
length and the padding is masked out of attention; RoPE only sees relative offsets, so each row
decodes as it would alone. Rows advance one token per step to stay in lockstep, so a batch feeds a
calculator result one token per step; a lone row takes it in one feed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trm_core.generation.sampling import SamplingOptions
from trm_core.generation.sessions import pick_token
from trm_core.generation.textstream import Piece, TextStream, calculation_fix, in_calculation

__all__ = ["DecodeRow", "decode"]


@dataclass
class DecodeRow:
    """One prompt's continuation as it is decoded."""

    ids: list[int]  # the prompt's token ids
    text: TextStream  # the continuation, with its stop strings and the prompt tail as context
    decoder: Any  # the tokenizer's incremental decoder
    forced: list[int]  # calculator tokens still to be fed
    new_tokens: int = 0  # tokens produced (model, calculator and end of text)
    done: bool = False

    @classmethod
    def start(cls, ids: list[int], prompt: str, tokenizer: Any, stop: Sequence[str]) -> DecodeRow:
        return cls(ids, TextStream(stop, prompt), tokenizer.incremental_decoder(), [])


def decode(
    session: Any,
    rows: list[DecodeRow],
    opts: SamplingOptions,
    *,
    tokenizer: Any,
    budget: int,
    rng: torch.Generator,
    device: torch.device,
    act: Any = None,
) -> Iterator[tuple[int, Piece]]:
    """Decode `rows` (each at most `budget` new tokens) on `session`, yielding (row index, piece)
    as soon as a piece is safe to show. The rows' `text` holds the whole continuation at the end.

    `act` (the Generator, for an ACT model) says which prompt positions may halt early
    (`prefill_may_halt`); each model token's depth is then read after every feed."""
    B = len(rows)
    pad = tokenizer.pad_id
    eos = {tokenizer.eos_id, tokenizer.pad_id}
    if B == 1:
        prompt = torch.tensor([rows[0].ids], device=device)
        logits = session.feed(
            prompt, None, *([act.prefill_may_halt(None, tuple(prompt.shape))] if act else [])
        )
    else:
        width = max(len(r.ids) for r in rows)
        pad_mask = torch.zeros(B, session.cache.max_len, dtype=torch.bool, device=device)
        for b, r in enumerate(rows):
            pad_mask[b, : width - len(r.ids)] = True
        padded = [[pad] * (width - len(r.ids)) + r.ids for r in rows]
        prompt = torch.tensor(padded, device=device)
        logits = session.feed(
            prompt, pad_mask, *([act.prefill_may_halt(pad_mask, tuple(prompt.shape))] if act else [])
        )
    while True:
        picked = None
        if any(not r.done and not r.forced for r in rows):
            picked = pick_token(session, logits, opts, rng)  # [B] on the device
            sampled = picked.tolist()  # the one host read per step
            depths = session.depths() if act else [None] * B  # what each picked token thought
        feed: list[list[int]] = []
        for b, row in enumerate(rows):
            if row.done:
                feed.append([pad])
                picked = None
                continue
            if row.forced:
                n = len(row.forced) if B == 1 else 1
                tokens, row.forced = row.forced[:n], row.forced[n:]
                row.new_tokens += n
                picked = None  # the feed differs from the pick
            else:
                token = sampled[b]
                if opts.calculator and in_calculation(row.text.context):  # the calculator checks the pick
                    fix = calculation_fix(
                        row.text.context,
                        "" if token in eos else tokenizer.decode([token]),
                        verify=opts.calculator_mode == "verify",
                    )
                    forced_ids = tokenizer.encode(fix) if fix else []
                    if forced_ids and row.new_tokens + len(forced_ids) <= budget:
                        for i in forced_ids:
                            row.decoder.push(i)  # keeps the decoder's context; the text is the calculator's
                        row.text.add(fix, "calculator")
                        for piece in row.text.ready():
                            yield b, piece
                        picked = None  # the feed differs from the pick
                        n = len(forced_ids) if B == 1 else 1
                        tokens, row.forced = forced_ids[:n], forced_ids[n:]
                        row.new_tokens += n
                        if row.text.stopped:
                            row.new_tokens += len(row.forced)
                            row.forced, row.done = [], True
                            feed.append([pad])
                            continue
                        if not row.forced and row.new_tokens >= budget:
                            row.done = True
                        feed.append(tokens)
                        continue
                row.new_tokens += 1
                if token in eos:
                    row.done = True
                    feed.append([pad])
                    picked = None
                    continue
                row.text.add(row.decoder.push(token), "model", depths[b])
                for piece in row.text.ready():
                    yield b, piece
                tokens = [token]
            if not row.forced and (row.text.stopped or row.new_tokens >= budget):
                row.done = True
            feed.append(tokens)
        if all(r.done for r in rows):
            break
        if picked is not None:
            logits = session.feed(picked.view(B, 1))  # on the device already: no host-to-device copy
        else:
            logits = session.feed(torch.tensor(feed, device=device))
    for b, row in enumerate(rows):
        if not row.text.stopped:
            last = row.text.token_depths[-1][1] if row.text.token_depths else None
            row.text.add(row.decoder.flush(), "model", last, token=False)
            for piece in [*row.text.ready(), *row.text.finish()]:
                yield b, piece
