"""Pre-tokenized corpora, token-budget batches bucketed by length, padding/collation, and the
updates of training: epoch after epoch, sharded among torchrun's processes."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mt import checkpoint
from mt.errors import MTError
from mt.tokenizer import BOS, PAD

log = logging.getLogger(__name__)


class IntFile:
    """int32 values in a file, read a slice at a time with pread: unlike a memory map, nothing read
    stays in the process's resident memory, so a corpus of any size costs the rows in use."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.path, self.shape = Path(path), shape
        self.row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        count = max(stop - start, 0) * self.row
        data = os.pread(self.fd, count * 4, start * self.row * 4)
        return np.frombuffer(data, dtype=np.int32).reshape(-1, *self.shape[1:])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)


class Ragged:
    """Variable-length rows of ints in one flat array plus offsets: row i is
    values[offsets[i]:offsets[i + 1]]. Loaded from the cache, the values stay in their file
    (IntFile), so a corpus of any size costs the memory of the rows in use."""

    def __init__(self, values: np.ndarray | IntFile, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]], width: int | None = None) -> Ragged:
        shape = (width,) if width else ()
        rows = [np.asarray(r, dtype=np.int32).reshape(-1, *shape) for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        empty = np.zeros((0, *shape), dtype=np.int32)
        return cls(np.concatenate(rows) if rows else empty, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(self.values[self.offsets[i] : self.offsets[i + 1]].astype(np.int64))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def save(self, prefix: Path) -> None:
        """prefix.values (raw int32) and prefix.offsets.npy, each written whole, then renamed."""
        write_array(Path(f"{prefix}.values"), np.ascontiguousarray(self.values, dtype=np.int32))
        write_array(Path(f"{prefix}.offsets.npy"), self.offsets, npy=True)

    @classmethod
    def load(cls, prefix: Path, width: int | None = None) -> Ragged:
        """The values are read from their file row by row, when asked for."""
        offsets = np.load(f"{prefix}.offsets.npy")
        shape = (int(offsets[-1]), *((width,) if width else ()))
        return cls(IntFile(Path(f"{prefix}.values"), shape), offsets)


def write_array(path: Path, array: np.ndarray, npy: bool = False) -> None:
    """`array` to `path` atomically: as .npy, or its raw bytes."""
    checkpoint.atomic_write(path, lambda f: np.save(f, array) if npy else f.write(array.tobytes()))


class RaggedWriter:
    """Appends rows (given as flat values and lengths, a chunk at a time) to prefix.values, then
    writes the offsets: a corpus is encoded without holding it."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.file = open(f"{prefix}.values", "wb")  # noqa: SIM115 (closed in close())
        self.lengths: list[np.ndarray] = []

    def append(self, values: np.ndarray, lengths: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=np.int32).tobytes())
        self.lengths.append(np.asarray(lengths, dtype=np.int64))

    def close(self) -> None:
        self.file.close()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        write_array(Path(f"{self.prefix}.offsets.npy"), offsets, npy=True)


@dataclass
class EncodedCorpus:
    """Token ids of one split (each sentence EOS-terminated), source and target as Ragged rows
    (read from their files when loaded from the cache); for guided alignment, also each pair's
    (target position, source position) links (mt.guided), else None."""

    src: Ragged
    tgt: Ragged
    links: Ragged | None = None

    def __len__(self) -> int:
        return len(self.src)

    @classmethod
    def from_ids(
        cls,
        src: list[list[int]],
        tgt: list[list[int]],
        links: list[list[tuple[int, int]]] | None = None,
    ) -> EncodedCorpus:
        """From lists of ids (and, for guided alignment, each pair's (target, source) links)."""
        rows = None if links is None else Ragged.from_rows(links, width=2)
        return cls(Ragged.from_rows(src), Ragged.from_rows(tgt), rows)

    def save(self, folder: Path, name: str) -> None:
        """folder/name.src.* and name.tgt.* (Ragged.save)."""
        self.src.save(Path(folder) / f"{name}.src")
        self.tgt.save(Path(folder) / f"{name}.tgt")

    @classmethod
    def load(cls, folder: Path, name: str) -> EncodedCorpus:
        return cls(
            Ragged.load(Path(folder) / f"{name}.src"), Ragged.load(Path(folder) / f"{name}.tgt")
        )


class JoinedRows:
    """A corpus side's rows, then rows each made of several of them end to end: `groups` (M, K)
    holds each made row's row indices (-1: none), and every part but the last loses its final token
    (the EOS) — the ids of the parts' texts joined with a space. Made when asked for, as Ragged's."""

    def __init__(self, rows: Ragged, groups: np.ndarray):
        self.rows, self.groups = rows, groups
        parts = groups >= 0
        made = np.where(parts, rows.lengths[np.maximum(groups, 0)], 0).sum(1) - parts.sum(1) + 1
        self.lengths = np.concatenate([rows.lengths, made.astype(np.int64)])

    def __len__(self) -> int:
        return len(self.lengths)

    def parts(self, i: int) -> list[int]:
        return [int(g) for g in self.groups[i - len(self.rows)] if g >= 0]

    def __getitem__(self, i: int) -> Tensor:
        if i < len(self.rows):
            return self.rows[i]
        rows = [self.rows[g] for g in self.parts(i)]
        return torch.cat([r[:-1] for r in rows[:-1]] + rows[-1:])


class JoinedLinks:
    """Guided alignment's links of JoinedRows: each part's (target, source) links moved by the
    lengths of the parts before it."""

    def __init__(self, links: Ragged, src: JoinedRows, tgt: JoinedRows):
        self.links, self.src, self.tgt = links, src, tgt

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> Tensor:
        if i < len(self.links):
            return self.links[i]
        out, shift = [], torch.zeros(2, dtype=torch.int64)
        for g in self.src.parts(i):
            out.append(self.links[g] + shift)
            shift = shift + torch.tensor(
                [self.tgt.rows.lengths[g] - 1, self.src.rows.lengths[g] - 1]
            )
        return torch.cat(out)


def joined(corpus: EncodedCorpus, extra: float, most: int, seed: int) -> EncodedCorpus:
    """`corpus` and round(extra x its size) more pairs, each 2..`most` of its pairs drawn at random
    (from `seed`) and joined end to end on both sides: training sentences longer than the corpus
    has, so positions and alignments stay sound on longer input (train.join_extra, join_most)."""
    if not extra:
        return corpus
    rng = np.random.default_rng(seed)
    n, m = len(corpus), round(extra * len(corpus))
    sizes = rng.integers(2, most + 1, size=m)
    groups = rng.integers(0, n, size=(m, most))
    groups[np.arange(most)[None, :] >= sizes[:, None]] = -1
    src, tgt = JoinedRows(corpus.src, groups), JoinedRows(corpus.tgt, groups)
    links = JoinedLinks(corpus.links, src, tgt) if corpus.links is not None else None
    log.info(
        "train.join_extra: %d joined pairs (2-%d each) beside the %d of the corpus", m, most, n
    )
    return EncodedCorpus(src, tgt, links)


@dataclass
class Batch:
    """src (B, S), tgt_in (B, T) = BOS + target, tgt_out (B, T) = target + EOS; PAD-padded."""

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    align: Tensor | None = None  # (B, T, S) guided alignment: each target row's link distribution

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
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
    batch_tokens: int,
    seed: int | None,
) -> list[np.ndarray]:
    """Sentence indices grouped so that sentences x longest side <= `batch_tokens` per batch.

    Sentences are sorted by length (ties broken at random from `seed`), so a batch holds sentences of
    about one length and little padding; the batches are then shuffled from `seed`. With seed None,
    nothing is random and the batches come in length order (for decoding). Works on the lengths
    alone, in arrays: the batches of a corpus of millions are views into one index array.
    """
    src_lens = torch.as_tensor(np.asarray(src_lens, dtype=np.int64))
    tgt_lens = torch.as_tensor(np.asarray(tgt_lens, dtype=np.int64))
    longest_side = torch.maximum(src_lens, tgt_lens)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    n = len(src_lens)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    # sort by (longest side, target length); stable, so the random order breaks ties
    key = longest_side * (int(tgt_lens.max()) + 1 if n else 1) + tgt_lens
    order = order[torch.argsort(key[order], stable=True)]
    # The longest side grows along `order`, so a batch may take a sentence of length L while it
    # holds fewer than batch_tokens // L (at least one): cut the order run by run of equal lengths.
    lengths, counts = torch.unique_consecutive(longest_side[order], return_counts=True)
    bounds, size = [], 0  # size: sentences in the open batch
    position = 0
    for length, count in zip(lengths.tolist(), counts.tolist(), strict=True):
        capacity = max(batch_tokens // length, 1)
        if size >= capacity:  # the open batch cannot take even one sentence this long
            bounds.append(position)
            size = 0
        take = min(count, capacity - size)  # fill the open batch
        position, size, count = position + take, size + take, count - take
        while count:
            bounds.append(position)
            take = min(count, capacity)
            position, size, count = position + take, take, count - take
    order = order.numpy()
    batches = np.split(order, bounds) if n else []
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def epoch_batches(
    corpus: EncodedCorpus, batch_tokens: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """The batches of one training epoch, in order: the same for the same (seed, epoch) on every rank."""
    return token_batches(
        corpus.src.lengths, corpus.tgt.lengths, batch_tokens, seed=seed * 100_003 + epoch
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
    per_update = world * cfg.accumulate
    while True:
        # train.batch_tokens is shared among the processes: the same update for any number of them
        order = epoch_batches(data, cfg.batch_tokens // world, seed, progress.epoch)
        if progress.epoch_batches not in (0, len(order)) and progress.batch_in_epoch:
            # resumed with another number of processes: their batches are another size, so the
            # epoch goes on from the same fraction of it (exact resumption needs the same number)
            done = progress.batch_in_epoch * len(order) // progress.epoch_batches
            done -= done % per_update
            log.warning(
                "resuming with %d process(es) and batches of another size than the checkpoint's: "
                "epoch %d goes on from batch %d of %d instead of %d of %d",
                world,
                progress.epoch,
                done,
                len(order),
                progress.batch_in_epoch,
                progress.epoch_batches,
            )
            progress.batch_in_epoch = done
        progress.epoch_batches = len(order)
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
