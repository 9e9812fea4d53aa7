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
    joined,
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


def test_joined_pairs_are_their_parts_end_to_end():
    g = np.random.default_rng(0)
    rows = lambda lengths: [[*g.integers(4, 50, n - 1).tolist(), EOS] for n in lengths]  # noqa: E731
    src, tgt = rows([3, 5, 2, 4]), rows([4, 2, 3, 6])
    # guided links (target position, source position) of each pair
    links = [[[0, 0], [2, 1]], [[0, 3]], [[0, 0], [1, 0]], [[4, 2]]]
    corpus = EncodedCorpus(Ragged.from_rows(src), Ragged.from_rows(tgt), Ragged.from_rows(links, 2))
    assert joined(corpus, 0.0, 3, seed=1) is corpus
    more = joined(corpus, 2.0, 3, seed=1)
    assert len(more) == 4 + 8 and len(more.src.lengths) == len(more.tgt.lengths) == 12
    for i in range(4):  # the corpus first, as it was
        assert more.src[i].tolist() == src[i] and more.links[i].tolist() == links[i]
    sizes = set()
    for i in range(4, 12):
        parts = more.src.parts(i)
        sizes.add(len(parts))
        # the parts' ids with the EOS between them dropped; one EOS at the end
        expected = [t for k in parts[:-1] for t in src[k][:-1]] + src[parts[-1]]
        assert more.src[i].tolist() == expected and more.src.lengths[i] == len(expected)
        expected = [t for k in parts[:-1] for t in tgt[k][:-1]] + tgt[parts[-1]]
        assert more.tgt[i].tolist() == expected and more.tgt.lengths[i] == len(expected)
        # every link still joins the same two tokens
        found = more.links[i].tolist()
        assert len(found) == sum(len(links[k]) for k in parts)
        for t, s in found:
            assert 0 <= t < len(more.tgt[i]) - 1 and 0 <= s < len(more.src[i]) - 1
        ts, ss = 0, 0
        for k in parts:
            for t, s in links[k]:
                assert [t + ts, s + ss] in found
                assert more.tgt[i][t + ts] == tgt[k][t] and more.src[i][s + ss] == src[k][s]
            ts, ss = ts + len(tgt[k]) - 1, ss + len(src[k]) - 1
    assert sizes == {2, 3}
    # the same seed, the same pairs (a run resumes on the same data); batches collate them
    again = joined(corpus, 2.0, 3, seed=1)
    assert [again.src[i].tolist() for i in range(12)] == [more.src[i].tolist() for i in range(12)]
    batch = collate(more, np.arange(12))
    assert batch.align.shape == (12, int(more.tgt.lengths.max()), int(more.src.lengths.max()))
