"""Forced decoding: the model's scores and attention for a given translation, in one teacher-forced
pass, scored as search scores its own hypotheses (what `mt align --target` shows)."""

from __future__ import annotations

import torch
from torch import Tensor

from mt.decoding.common import DecodeOptions, Hypothesis, normalized, step_log_probs
from mt.models.base import Seq2Seq
from mt.tokenizer import BOS, PAD


@torch.inference_mode()
def forced_decode(
    model: Seq2Seq, src: Tensor, targets: Tensor, options: DecodeOptions, need_attn: bool = False
) -> list[list[Hypothesis]]:
    """src (B, S), targets (B, T) PAD-padded ids ending in EOS -> one hypothesis per sentence: the
    target itself, its normalized log-probability and its cross-attention rows."""
    need_attn = need_attn and model.has_attention
    tgt_in = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], 1)
    logits, attn = model(src, tgt_in, need_attn=need_attn)  # (B, T, V), (B, T, S)
    batch, length, vocab = logits.shape
    log_probs = step_log_probs(logits.reshape(batch * length, vocab)).view(batch, length, vocab)
    picked = log_probs.gather(2, targets[:, :, None]).squeeze(2)  # (B, T)
    real = targets != PAD
    results = []
    for b in range(batch):
        n = int(real[b].sum())
        score = normalized(float(picked[b, :n].sum()), n, options.length_penalty)
        weights = attn[b, :n, : int((src[b] != PAD).sum())].cpu() if need_attn else None
        results.append([Hypothesis(targets[b, :n].tolist(), score, weights)])
    return results
