"""Token-budget batches: within budget, every sentence once per epoch, reproducible from the seed;
the memory-mapped corpus reads back the ids it was given."""

import numpy as np
import torch

from mt.batching import (
    EncodedCorpus,
    IntFile,
    Ragged,
    RaggedWriter,
    collate,
    epoch_batches,
    token_batches,
)
from mt.tokenizer import BOS, EOS, PAD


def as_lists(batches):
    return [b.tolist() for b in batches]


def reference_batches(src_lens, tgt_lens, batch_tokens, seed):
    """The batching as first written, a sentence at a time over Python lists: the array version
    must give the same batches (so runs and their resumption see the same data)."""
    longest_side = torch.tensor([max(s, t) for s, t in zip(src_lens, tgt_lens, strict=True)])
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    n = len(src_lens)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
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


def test_array_batching_equals_the_sentence_by_sentence_one():
    g = torch.Generator().manual_seed(1)
    for n, high, budget in ((1, 5, 10), (300, 40, 100), (2000, 120, 4096), (500, 30, 7)):
        src = torch.randint(1, high, (n,), generator=g).tolist()
        tgt = torch.randint(1, high, (n,), generator=g).tolist()
        for seed in (None, 3):
            assert as_lists(token_batches(src, tgt, budget, seed)) == reference_batches(
                src, tgt, budget, seed
            )


def test_batches_cover_each_sentence_once_within_budget():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 30, (500,), generator=g).tolist()
    tgt = torch.randint(1, 30, (500,), generator=g).tolist()
    batches = token_batches(src, tgt, batch_tokens=200, seed=7)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) * max(max(src[i], tgt[i]) for i in b) <= 200
    assert as_lists(batches) == as_lists(token_batches(src, tgt, batch_tokens=200, seed=7))
    assert as_lists(batches) != as_lists(token_batches(src, tgt, batch_tokens=200, seed=8))


def test_epochs_differ_and_repeat():
    corpus = EncodedCorpus.from_ids(
        [[5] * (i % 9 + 1) + [EOS] for i in range(100)],
        [[6] * (i % 7 + 1) + [EOS] for i in range(100)],
    )
    first = as_lists(epoch_batches(corpus, 40, seed=1, epoch=0))
    assert first == as_lists(epoch_batches(corpus, 40, seed=1, epoch=0))
    assert first != as_lists(epoch_batches(corpus, 40, seed=1, epoch=1))


def test_collate_shifts_target_and_pads(tmp_path):
    corpus = EncodedCorpus.from_ids([[7, 8, EOS], [9, EOS]], [[10, 11, EOS], [12, EOS]])
    corpus.save(tmp_path, "c")
    batch = collate(EncodedCorpus.load(tmp_path, "c"), [0, 1])
    assert batch.src.tolist() == [[7, 8, EOS], [9, EOS, PAD]]
    assert batch.tgt_in.tolist() == [[BOS, 10, 11], [BOS, 12, PAD]]
    assert batch.tgt_out.tolist() == [[10, 11, EOS], [12, EOS, PAD]]
    assert batch.tgt_tokens == 5


def test_ragged_rows_round_trip_memory_mapped(tmp_path):
    rows = [[5, 6, EOS], [EOS], [], [7, 8, 9, 10, EOS]]
    writer = RaggedWriter(tmp_path / "w")
    writer.append(np.array([5, 6, EOS, EOS]), np.array([3, 1]))  # two chunks, as workers write
    writer.append(np.array([7, 8, 9, 10, EOS]), np.array([0, 5]))
    writer.close()
    Ragged.from_rows(rows).save(tmp_path / "r")
    for prefix in ("w", "r"):
        loaded = Ragged.load(tmp_path / prefix)
        assert isinstance(loaded.values, IntFile)
        assert [loaded[i].tolist() for i in range(len(loaded))] == rows
        assert loaded.lengths.tolist() == [3, 1, 0, 5]
    pairs = Ragged.from_rows([[[0, 1], [2, 0]], []], width=2)
    pairs.save(tmp_path / "links")
    assert Ragged.load(tmp_path / "links", width=2)[0].tolist() == [[0, 1], [2, 0]]
