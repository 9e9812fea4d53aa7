"""Greedy search: the most probable next token at every step."""

from __future__ import annotations

import torch
from torch import Tensor

from mt.decoding.common import DecodeOptions, Hypothesis, max_lengths, normalized, step_log_probs
from mt.models.base import Seq2Seq
from mt.tokenizer import BOS, EOS, PAD


def choose_argmax(log_probs: Tensor, options: DecodeOptions) -> Tensor:
    """(N, V) -> (N,) the most probable token."""
    return log_probs.argmax(-1)


@torch.inference_mode()
def step_by_step(
    model: Seq2Seq, src: Tensor, options: DecodeOptions, need_attn: bool, choose
) -> list[list[Hypothesis]]:
    """One token per sentence and step, picked by `choose(log_probs (N, V), options) -> (N,)`, until
    every sentence has ended. src (B, S) -> one hypothesis per sentence."""
    batch = src.shape[0]
    src_mask = src != PAD
    memory = model.encode(src, src_mask)
    limits = max_lengths(src, options, model)
    tokens = torch.full((batch,), BOS, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    log_probs = torch.zeros(batch, device=src.device)
    outputs, attentions, state = [], [], None
    for step in range(int(limits.max())):
        logits, state, attn = model.decode_step(tokens, memory, state, need_attn)
        step_scores = step_log_probs(logits, step + 1 >= limits)
        tokens = torch.where(finished, PAD, choose(step_scores, options))
        log_probs += step_scores.gather(1, tokens[:, None]).squeeze(1).masked_fill(finished, 0.0)
        outputs.append(tokens)
        if need_attn:
            attentions.append(attn)
        finished |= tokens == EOS
        if finished.all():
            break
    ids = torch.stack(outputs, 1).tolist()  # (B, T)
    attention = torch.stack(attentions, 1) if need_attn else None  # (B, T, S)
    results = []
    for b, row in enumerate(ids):
        length = row.index(EOS) + 1 if EOS in row else len(row)
        attn = attention[b, :length, : int(src_mask[b].sum())].cpu() if need_attn else None
        score = normalized(float(log_probs[b]), length, options.length_penalty)
        results.append([Hypothesis(row[:length], score, attn)])
    return results


def greedy_search(
    model: Seq2Seq, src: Tensor, options: DecodeOptions, need_attn: bool = False
) -> list[list[Hypothesis]]:
    """src (B, S) -> the greedy translation of each sentence."""
    return step_by_step(model, src, options, need_attn, choose_argmax)
