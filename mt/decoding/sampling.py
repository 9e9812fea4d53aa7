"""Sampling: each next token drawn from the model's distribution, sharpened or flattened by a
temperature and cut to the top k tokens or the top p of the probability (Holtzman et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from mt.decoding.common import DecodeOptions, Hypothesis
from mt.decoding.greedy import step_by_step
from mt.models.base import Seq2Seq


def choose_sample(log_probs: Tensor, options: DecodeOptions) -> Tensor:
    """(N, V) -> (N,) a token drawn from softmax(log_probs / temperature), within top-k / top-p."""
    scores = log_probs / options.temperature
    if options.top_k > 0:
        kth = scores.topk(min(options.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        before = sorted_scores.softmax(-1).cumsum(-1) - sorted_scores.softmax(-1)
        cut = before >= options.top_p  # the tokens after the top p of the mass (the first stays)
        scores = scores.scatter(1, order, sorted_scores.masked_fill(cut, float("-inf")))
    return torch.multinomial(scores.softmax(-1), 1).squeeze(1)


def sample(
    model: Seq2Seq, src: Tensor, options: DecodeOptions, need_attn: bool = False
) -> list[list[Hypothesis]]:
    """src (B, S) -> `options.nbest` sampled translations per sentence, best score first; scores are
    the model's own (untempered) log-probabilities."""
    copies = src.repeat_interleave(options.nbest, dim=0)
    drawn = step_by_step(model, copies, options, need_attn, choose_sample)
    return [
        sorted((h[0] for h in drawn[i : i + options.nbest]), key=lambda h: -h.score)
        for i in range(0, len(drawn), options.nbest)
    ]
