"""Pre-tokenized corpora, token-budget batches bucketed by length, padding/collation, and the
updates of training: epoch after epoch, sharded among torchrun's processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mt import checkpoint
from mt.errors import MTError
from mt.tokenizer import BOS, PAD


@dataclass
class EncodedCorpus:
    """Token ids of one split, one tensor per sentence (EOS-terminated); for guided alignment,
    also each pair's (target position, source position) links (mt.guided), else None."""

    src: list[Tensor]
    tgt: list[Tensor]
    links: list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.src)

    @classmethod
    def from_ids(cls, src: list[list[int]], tgt: list[list[int]]) -> EncodedCorpus:
        return cls(
            [torch.tensor(s, dtype=torch.long) for s in src],
            [torch.tensor(t, dtype=torch.long) for t in tgt],
        )

    def save(self, path: Path) -> None:
        """One flat tensor per side plus lengths: fast to load, and loadable weights-only."""
        checkpoint.save(
            path,
            {
                side: {
                    "ids": torch.cat(seqs).to(torch.int32),
                    "lengths": torch.tensor([len(s) for s in seqs]),
                }
                for side, seqs in (("src", self.src), ("tgt", self.tgt))
            },
        )

    @classmethod
    def load(cls, path: Path) -> EncodedCorpus:
        state = checkpoint.load(path)
        sides = [
            list(state[side]["ids"].long().split(state[side]["lengths"].tolist()))
            for side in ("src", "tgt")
        ]
        return cls(*sides)


@dataclass
class Batch:
    """src (B, S), tgt_in (B, T) = BOS + target, tgt_out (B, T) = target + EOS; PAD-padded."""

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    align: Tensor | None = None  # (B, T, S) guided-alignment targets (mt.guided.target_matrix)

    @property
    def tgt_tokens(self) -> int:
        """Real (non-padding) target tokens: what loss and throughput are counted in."""
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(
            *(
                t.to(device, non_blocking=True) if t is not None else None
                for t in (self.src, self.tgt_in, self.tgt_out, self.align)
            )
        )


def pad(seqs: list[Tensor]) -> Tensor:
    """(B, max_len) of PAD-padded sequences."""
    return pad_sequence(seqs, batch_first=True, padding_value=PAD)


def collate(corpus: EncodedCorpus, indices: list[int]) -> Batch:
    tgt = [corpus.tgt[i] for i in indices]
    tgt_in = [torch.cat([torch.tensor([BOS]), t[:-1]]) for t in tgt]
    src = pad([corpus.src[i] for i in indices])
    tgt_out = pad(tgt)
    align = None
    if corpus.links is not None:
        align = torch.zeros(len(indices), tgt_out.shape[1], src.shape[1])
        for row, i in enumerate(indices):
            links = corpus.links[i]
            align[row, links[:, 0], links[:, 1]] = 1.0
        align /= align.sum(-1, keepdim=True).clamp_min(1.0)
    return Batch(src, pad(tgt_in), tgt_out, align)


def token_batches(
    src_lens: list[int], tgt_lens: list[int], batch_tokens: int, seed: int | None
) -> list[list[int]]:
    """Sentence indices grouped so that sentences x longest side <= `batch_tokens` per batch.

    Sentences are sorted by length (ties broken at random from `seed`), so a batch holds sentences of
    about one length and little padding; the batches are then shuffled from `seed`. With seed None,
    nothing is random and the batches come in length order (for decoding).
    """
    longest_side = torch.tensor([max(s, t) for s, t in zip(src_lens, tgt_lens, strict=True)])
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    n = len(src_lens)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    # sort by (longest side, target length); stable, so the random order breaks ties
    key = longest_side * (max(tgt_lens) + 1) + torch.tensor(tgt_lens)
    order = order[torch.argsort(key[order], stable=True)]
    batches, current, longest = [], [], 0
    for i in order.tolist():
        length = max(src_lens[i], tgt_lens[i])
        if current and (len(current) + 1) * max(longest, length) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def epoch_batches(
    corpus: EncodedCorpus, batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batches of one training epoch, in order: the same for the same (seed, epoch) on every rank."""
    return token_batches(
        [len(s) for s in corpus.src],
        [len(t) for t in corpus.tgt],
        batch_tokens,
        seed=seed * 100_003 + epoch,
    )


def shard_updates(
    n_batches: int, start: int, world_size: int, rank: int, accumulate: int
) -> Iterator[tuple[int, list[int]]]:
    """This rank's share of each update, from global batch position `start` of an epoch.

    An update takes world_size x accumulate consecutive batches; rank r takes every world_size-th of
    them from the r-th. So 2 ranks with 1 batch each see the same batches as 1 rank accumulating 2,
    and a run can resume from `start` with another number of ranks. Yields (next position, indices
    into the epoch's batches); a tail too short for a whole update is left for the next epoch's shuffle.
    """
    per_update = world_size * accumulate
    for position in range(start, n_batches - per_update + 1, per_update):
        yield position + per_update, [position + a * world_size + rank for a in range(accumulate)]


def training_updates(
    data: EncodedCorpus,
    cfg,
    seed: int,
    progress,
    world: int,
    rank: int,
    device: torch.device,
) -> Iterator[tuple[int, int, bool, list[Batch]]]:
    """For each update from `progress`'s position on, epoch after epoch: (epoch, the position after
    it, whether it ends the epoch, this rank's batches), from train.batch_tokens / accumulate in
    `cfg`. The caller records the position once the update is done, so a checkpoint never counts
    an update that was not made."""
    while True:
        order = epoch_batches(data, cfg.batch_tokens, seed, progress.epoch)
        shares = list(
            shard_updates(len(order), progress.batch_in_epoch, world, rank, cfg.accumulate)
        )
        if not shares and progress.batch_in_epoch == 0:
            raise MTError(
                f"an epoch has {len(order)} batches but one update needs {world * cfg.accumulate} "
                "(processes x train.accumulate): lower train.batch_tokens or train.accumulate"
            )
        for k, (position, indices) in enumerate(shares):
            batches = [collate(data, order[i]).to(device) for i in indices]
            yield progress.epoch, position, k == len(shares) - 1, batches
        if not shares:  # a checkpoint taken at the very end of an epoch
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
