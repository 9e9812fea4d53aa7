"""Adapting a model to the sentence pairs it is about to align (`mt align --adapt EPOCHS`).

A word aligner learns from the very sentences it aligns: eflomal and fast_align are trained on the
corpus to be aligned, and neural aligners are too (Zenkel et al. 2020). A translation model trained
on another corpus reads text of a new domain poorly, and its attention with it. Adaptation trains a
loaded model for a few passes over the given pairs with its translation loss alone — never with
gold links — then aligns them with the adapted weights. The run's files are left as they were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from mt.batching import EncodedCorpus, collate, token_batches
from mt.loss import label_smoothed_loss

log = logging.getLogger(__name__)


def adapt(
    model: nn.Module,
    sources: list[list[int]],
    targets: list[list[int]],
    *,
    epochs: int,
    lr: float,
    batch_tokens: int,
    label_smoothing: float = 0.1,
    clip_norm: float = 1.0,
    seed: int = 1,
    device: torch.device | str = "cpu",
    report: Callable[[str], None] | None = None,
) -> list[float]:
    """Train `model` in place for `epochs` passes over the pairs (ids ending in EOS) with AdamW at a
    constant `lr`, batches of at most `batch_tokens` (sentences x longest side), dropout on, seeded;
    the model is left in eval mode. Each pass is reported by `report` (default: logged). Returns the
    loss per target token of each pass."""
    if epochs < 0 or lr <= 0 or batch_tokens < 1:
        raise ValueError(
            f"adaptation needs epochs >= 0, lr > 0, batch_tokens >= 1: {epochs}, {lr}, {batch_tokens}"
        )
    corpus = EncodedCorpus.from_ids(sources, targets)
    src_lens = [len(s) for s in sources]
    tgt_lens = [len(t) for t in targets]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    losses = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks: the same adapted weights on every run
        model.train()
        try:
            for epoch in range(epochs):
                total, tokens = 0.0, 0
                for indices in token_batches(src_lens, tgt_lens, batch_tokens, seed + epoch):
                    batch = collate(corpus, indices.tolist()).to(device)
                    logits, _ = model(batch.src, batch.tgt_in, need_attn=False)
                    loss = label_smoothed_loss(logits, batch.tgt_out, label_smoothing)
                    n = batch.tgt_tokens
                    optimizer.zero_grad(set_to_none=True)
                    (loss / n).backward()
                    nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                    optimizer.step()
                    total, tokens = total + loss.item(), tokens + n
                losses.append(total / max(tokens, 1))
                (report or log.info)(
                    f"adapting: pass {epoch + 1}/{epochs}, loss {losses[-1]:.3f}, "
                    f"{time.perf_counter() - start:.0f} s"
                )
        finally:
            model.eval()
    return losses
