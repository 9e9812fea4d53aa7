"""Adapting a model to the sentence pairs it is about to align (`mt align --adapt EPOCHS`).

A word aligner learns from the very sentences it aligns: eflomal and fast_align are trained on the
corpus to be aligned, and neural aligners are too (Zenkel et al. 2020). A translation model trained
on another corpus reads text of a new domain poorly, and its attention with it. Adaptation trains a
loaded model for a few passes over the given pairs with its translation loss alone — never with
gold links — then aligns them with the adapted weights. The run's files are left as they were.

`adapt_jointly` adapts the models of both directions together and adds an agreement term (Cheng
et al. 2016, "Agreement-based joint training for bidirectional attention-based NMT"): the squared
difference between the forward model's word alignment of each pair and the transpose of the reverse
model's, so that each direction's attention is pulled towards the links the other one sees too.

Both can also be guided (`links`, `guided_weight`; `mt align --adapt-guided`): the attention the
model aligns with is trained towards a statistical aligner's links of the same pairs, as guided
alignment trains it on the training corpus (mt.guided; Garg et al. 2019): a teacher that has seen
the new domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mt.alignment import Alignment
from mt.batching import EncodedCorpus, collate, token_batches
from mt.loss import alignment_loss, label_smoothed_loss

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
    links: list[list[tuple[int, int]]] | None = None,
    guided_weight: float = 0.0,
) -> list[float]:
    """Train `model` in place for `epochs` passes over the pairs (ids ending in EOS) with AdamW at a
    constant `lr`, batches of at most `batch_tokens` (sentences x longest side), dropout on, seeded;
    the model is left in eval mode. With `links` (each pair's (target, source) position links) and
    `guided_weight` > 0, the loss adds that weight times the alignment loss of the attention the
    model aligns with (mt.loss.alignment_loss, as guided training adds it). Each pass is reported by
    `report` (default: logged). Returns the translation loss per target token of each pass."""
    if epochs < 0 or lr <= 0 or batch_tokens < 1 or guided_weight < 0:
        raise ValueError(
            "adaptation needs epochs >= 0, lr > 0, batch_tokens >= 1, guided_weight >= 0: "
            f"{epochs}, {lr}, {batch_tokens}, {guided_weight}"
        )
    guided = links is not None and guided_weight > 0
    corpus = EncodedCorpus.from_ids(sources, targets, links if guided else None)
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
                total, aligned, tokens = 0.0, 0.0, 0
                for indices in token_batches(src_lens, tgt_lens, batch_tokens, seed + epoch):
                    batch = collate(corpus, indices.tolist()).to(device)
                    logits, attention = model(batch.src, batch.tgt_in, need_attn=guided)
                    loss = label_smoothed_loss(logits, batch.tgt_out, label_smoothing)
                    n = batch.tgt_tokens
                    total, tokens = total + loss.item(), tokens + n
                    if guided:
                        taught = alignment_loss(attention, batch.align)
                        loss = loss + guided_weight * taught
                        aligned += taught.item()
                    optimizer.zero_grad(set_to_none=True)
                    (loss / n).backward()
                    nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                    optimizer.step()
                losses.append(total / max(tokens, 1))
                line = f"adapting: pass {epoch + 1}/{epochs}, loss {losses[-1]:.3f}"
                if guided:
                    line += f", alignment loss {aligned / max(tokens, 1):.3f}"
                (report or log.info)(f"{line}, {time.perf_counter() - start:.0f} s")
        finally:
            model.eval()
    return losses


@dataclass
class Direction:
    """One direction's view of the pairs adapted jointly: its model, each pair's ids (ending in
    EOS) and, per word, the indices of its pieces (source and target words as the pair gives them:
    the reverse direction's source words are the forward one's target words); `rows` takes a pair's
    piece-level attention (T, S) to the rows the model's reading uses (mt.alignment.Reading.rows);
    `links`, for guided adaptation: each pair's (target, source) piece links."""

    model: nn.Module
    sources: list[list[int]]
    targets: list[list[int]]
    source_words: list[list[list[int]]]
    target_words: list[list[list[int]]]
    rows: Callable[[Tensor], Tensor]
    links: list[list[tuple[int, int]]] | None = None

    def __post_init__(self):
        self.corpus = EncodedCorpus.from_ids(self.sources, self.targets, self.links)

    def word_alignments(self, attention: Tensor, indices: list[int]) -> list[Tensor]:
        """Batch attention (B, T, S) -> each pair's (target words x source words) weights, as
        `Alignment.from_groups` reads them, differentiably."""
        out = []
        for row, i in enumerate(indices):
            rows = self.rows(attention[row, : len(self.targets[i]), : len(self.sources[i])])
            weights = Alignment.from_groups(
                [], [], self.source_words[i], self.target_words[i], rows
            ).weights
            out.append(weights)
        return out


def disagreement(forward: list[Tensor], reverse: list[Tensor]) -> Tensor:
    """Summed squared difference between each pair's forward word alignment (J x I) and the
    transpose of its reverse one (I x J)."""
    return sum(((f - r.T) ** 2).sum() for f, r in zip(forward, reverse, strict=True))


def adapt_jointly(
    forward: Direction,
    reverse: Direction,
    *,
    agreement: float,
    epochs: int,
    lr: float,
    batch_tokens: int,
    label_smoothing: float = 0.1,
    clip_norm: float = 1.0,
    seed: int = 1,
    device: torch.device | str = "cpu",
    report: Callable[[str], None] | None = None,
    guided_weight: float = 0.0,
) -> list[tuple[float, float]]:
    """Train both directions' models in place for `epochs` passes over the pairs, on the same
    batches: each one's translation loss per target token, plus `agreement` times the two word
    alignments' squared difference per forward target word (and, for a direction with `links`,
    `guided_weight` times its alignment loss per target token, as `adapt` adds it). AdamW at a
    constant `lr` for each model, dropout on, seeded; both are left in eval mode. Returns, per
    pass, the two translation losses' mean and the disagreement per word."""
    if epochs < 0 or lr <= 0 or batch_tokens < 1 or agreement < 0 or guided_weight < 0:
        raise ValueError(
            "joint adaptation needs epochs >= 0, lr > 0, batch_tokens >= 1, agreement >= 0, "
            f"guided_weight >= 0: {epochs}, {lr}, {batch_tokens}, {agreement}, {guided_weight}"
        )
    if len(forward.sources) != len(reverse.sources):
        raise ValueError(
            f"{len(forward.sources)} forward pairs but {len(reverse.sources)} reverse pairs"
        )
    # a batch holds the same pairs in both directions: its size is set by the longer of the two
    longest = [
        (max(len(fs), len(rt)), max(len(ft), len(rs)))
        for fs, ft, rs, rt in zip(
            forward.sources, forward.targets, reverse.sources, reverse.targets, strict=True
        )
    ]
    src_lens, tgt_lens = [a for a, _ in longest], [b for _, b in longest]
    models = (forward.model, reverse.model)
    optimizers = [
        torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
        for m in models
    ]
    history = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in models:
            m.train()
        try:
            for epoch in range(epochs):
                ce_sum, ce_tokens, apart, words = 0.0, 0, 0.0, 0
                for indices in token_batches(src_lens, tgt_lens, batch_tokens, seed + epoch):
                    indices = indices.tolist()
                    loss, aligned = 0.0, []
                    for direction in (forward, reverse):
                        batch = collate(direction.corpus, indices).to(device)
                        logits, attention = direction.model(batch.src, batch.tgt_in, need_attn=True)
                        ce = label_smoothed_loss(logits, batch.tgt_out, label_smoothing)
                        term = ce
                        if guided_weight and batch.align is not None:
                            term = term + guided_weight * alignment_loss(attention, batch.align)
                        loss = loss + term / batch.tgt_tokens
                        ce_sum, ce_tokens = ce_sum + ce.item(), ce_tokens + batch.tgt_tokens
                        aligned.append(direction.word_alignments(attention, indices))
                    n_words = max(sum(len(forward.target_words[i]) for i in indices), 1)
                    apart_sum = disagreement(*aligned)
                    loss = loss + agreement * apart_sum / n_words
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for m, opt in zip(models, optimizers, strict=True):
                        nn.utils.clip_grad_norm_(m.parameters(), clip_norm)
                        opt.step()
                    apart, words = apart + float(apart_sum.detach()), words + n_words
                history.append((ce_sum / max(ce_tokens, 1), apart / max(words, 1)))
                (report or log.info)(
                    f"adapting both directions: pass {epoch + 1}/{epochs}, loss "
                    f"{history[-1][0]:.3f}, disagreement {history[-1][1]:.4f} per word, "
                    f"{time.perf_counter() - start:.0f} s"
                )
        finally:
            for m in models:
                m.eval()
    return history
