"""Token-budget batches: within budget, every sentence once per epoch, reproducible from the seed."""

import torch

from mt.batching import EncodedCorpus, collate, epoch_batches, token_batches
from mt.tokenizer import BOS, EOS, PAD


def test_batches_cover_each_sentence_once_within_budget():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 30, (500,), generator=g).tolist()
    tgt = torch.randint(1, 30, (500,), generator=g).tolist()
    batches = token_batches(src, tgt, batch_tokens=200, seed=7)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) * max(max(src[i], tgt[i]) for i in b) <= 200
    assert batches == token_batches(src, tgt, batch_tokens=200, seed=7)
    assert batches != token_batches(src, tgt, batch_tokens=200, seed=8)


def test_epochs_differ_and_repeat():
    corpus = EncodedCorpus.from_ids(
        [[5] * (i % 9 + 1) + [EOS] for i in range(100)],
        [[6] * (i % 7 + 1) + [EOS] for i in range(100)],
    )
    assert epoch_batches(corpus, 40, seed=1, epoch=0) == epoch_batches(corpus, 40, seed=1, epoch=0)
    assert epoch_batches(corpus, 40, seed=1, epoch=0) != epoch_batches(corpus, 40, seed=1, epoch=1)


def test_collate_shifts_target_and_pads(tmp_path):
    corpus = EncodedCorpus.from_ids([[7, 8, EOS], [9, EOS]], [[10, 11, EOS], [12, EOS]])
    corpus.save(tmp_path / "c.pt")
    batch = collate(EncodedCorpus.load(tmp_path / "c.pt"), [0, 1])
    assert batch.src.tolist() == [[7, 8, EOS], [9, EOS, PAD]]
    assert batch.tgt_in.tolist() == [[BOS, 10, 11], [BOS, 12, PAD]]
    assert batch.tgt_out.tolist() == [[10, 11, EOS], [12, EOS, PAD]]
    assert batch.tgt_tokens == 5
