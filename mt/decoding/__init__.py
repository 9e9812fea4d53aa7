"""Decoding strategies over the Seq2Seq contract, chosen by `decode.strategy`; they know no
architecture. A new strategy is a function `(model, src, options, need_attn) -> hypotheses` and one
line in STRATEGIES; mt/decoding/common.py has the step every strategy shares."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from mt.batching import pad
from mt.decoding.beam import beam_search
from mt.decoding.common import DecodeOptions, Hypothesis
from mt.decoding.forced import forced_decode
from mt.decoding.greedy import greedy_search
from mt.decoding.sampling import sample
from mt.models.base import Seq2Seq
from mt.tokenizer import EOS

__all__ = [
    "STRATEGIES",
    "DecodeOptions",
    "Hypothesis",
    "beam_search",
    "forced_decode",
    "greedy_search",
    "in_batches",
    "sample",
    "search",
    "translate_ids",
]

log = logging.getLogger(__name__)

Strategy = Callable[[Seq2Seq, Tensor, DecodeOptions, bool], list[list[Hypothesis]]]
STRATEGIES: dict[str, Strategy] = {
    "greedy": greedy_search,
    "beam": beam_search,
    "sample": sample,
}


def search(
    model: Seq2Seq, src: Tensor, options: DecodeOptions, need_attn: bool = False
) -> list[list[Hypothesis]]:
    """src (B, S) -> hypotheses per sentence by `options.strategy` (a beam of 1 is greedy search)."""
    if options.strategy not in STRATEGIES:
        raise ValueError(
            f"decode.strategy: unknown strategy {options.strategy!r} (known: {', '.join(STRATEGIES)})"
        )
    strategy = STRATEGIES[options.strategy]
    need_attn = need_attn and model.has_attention
    if strategy is beam_search and options.beam_size == 1:
        strategy = greedy_search  # the same hypotheses, faster
    if need_attn and getattr(model, "alignment_needs_target", False):
        return with_whole_target_attention(
            model, src, strategy(model, src, options, False), options
        )
    return strategy(model, src, options, need_attn)


def with_whole_target_attention(
    model: Seq2Seq, src: Tensor, hypotheses: list[list[Hypothesis]], options: DecodeOptions
) -> list[list[Hypothesis]]:
    """The hypotheses of `src` (B, S), each with the attention of a forced decoding of it: for a
    model whose alignment reads the whole target (model.align_full_context), which a step of
    search has not seen yet."""
    found = [(b, h) for b, hyps in enumerate(hypotheses) for h in hyps if h.tokens]
    if not found:
        return hypotheses
    rows = torch.tensor([b for b, _ in found], device=src.device)
    targets = pad([torch.tensor(h.tokens, dtype=torch.long) for _, h in found]).to(src.device)
    forced = forced_decode(model, src.index_select(0, rows), targets, options, need_attn=True)
    for (_, hyp), (again,) in zip(found, forced, strict=True):
        hyp.attention = again.attention
    return hypotheses


BatchDecoder = Callable[[list[list[int]]], list[list[Hypothesis]]]


def in_batches(
    sources: Sequence[list[int]],
    decode_batch: BatchDecoder,
    batch_size: int,
    max_positions: int | None,
    first_number: int = 1,
) -> Iterator[list[Hypothesis]]:
    """Hypotheses for each source (ids), in input order, by `decode_batch` on batches of similar
    length; whatever decodes (mt's search, CTranslate2) shares this.

    Yields as soon as every earlier sentence is done, so a caller can print while decoding goes on.
    An empty source gets an empty hypothesis; one longer than `max_positions` keeps its start.
    Warnings number the inputs from `first_number`.
    """
    # an empty source (EOS alone) has the empty translation: decoding it would only hallucinate
    done: dict[int, list[Hypothesis]] = {
        i: [Hypothesis([], 0.0)] for i, s in enumerate(sources) if len(s) <= 1
    }
    order = sorted((i for i in range(len(sources)) if i not in done), key=lambda i: len(sources[i]))
    limit = max_positions
    too_long = [i for i in order if limit and len(sources[i]) > limit]
    if too_long:
        log.warning(
            "input %s: longer than the model's %d positions; only the start is translated",
            ", ".join(str(i + first_number) for i in too_long[:10]),
            limit,
        )
        sources = list(sources)
        for i in too_long:
            sources[i] = [*sources[i][: limit - 1], EOS]
    next_out = 0
    for start in range(0, len(order) + 1, batch_size):
        chunk = order[start : start + batch_size]
        if chunk:
            done.update(zip(chunk, decode_batch([sources[i] for i in chunk]), strict=True))
        while next_out in done:
            yield done.pop(next_out)
            next_out += 1


def translate_ids(
    model: Seq2Seq,
    sources: Sequence[list[int]],
    device: torch.device,
    options: DecodeOptions,
    need_attn: bool = False,
    first_number: int = 1,
) -> Iterator[list[Hypothesis]]:
    """Hypotheses for each source (ids) by `options.strategy`, in input order (see `in_batches`)."""

    def decode_batch(batch: list[list[int]]) -> list[list[Hypothesis]]:
        src = pad([torch.tensor(ids, dtype=torch.long) for ids in batch]).to(device)
        return search(model, src, options, need_attn)

    return in_batches(sources, decode_batch, options.batch_size, model.max_positions, first_number)
