"""Guided alignment: an aligner's word links become piece links, then targets for the model's
alignment reading; trained with them, the reading aligns the toy pair as it is built."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mt import guided, pipeline, toy
from mt.alignment import alignment_scores
from mt.batching import EncodedCorpus, collate
from mt.loss import alignment_loss
from mt.run import RunError
from mt.translator import Translator
from tests.conftest import TINY_RNN, toy_config


def test_words_and_their_byte_spans():
    tokens, spans = guided.words("L'œuf, 2 kg!")
    assert tokens == ["l", "'", "œuf", ",", "2", "kg", "!"]
    text = "L'œuf, 2 kg!".encode()
    assert [text[b:e].decode().lower() for b, e in spans] == tokens


def test_pieces_map_to_the_words_they_overlap():
    # "▁chat" "s." over the words "chats" "." (bytes 0-5, 5-6); a lone "▁" piece overlaps nothing
    assert guided.pieces_of_words([(0, 4), (4, 6), (6, 7)], [(0, 5), (5, 6)]) == [[0], [0, 1], []]
    word_links = {(0, 1), (1, 0)}  # source word 0 <-> target word 1, and 1 <-> 0
    src_words = [[0], [1], [1]]  # piece -> words
    tgt_words = [[0], [1], []]
    assert sorted(guided.piece_links(word_links, src_words, tgt_words)) == [
        (0, 1),
        (0, 2),
        (1, 0),
    ]


def test_piece_spans_follow_the_ids(toy_run):
    model = Translator.load(toy_run, device="cpu")
    tok = model.tokenizer
    texts = ["The black cat ate the mouse.", "A happy dog saw a red car."]
    for text, ids, spans in zip(
        texts, tok.encode_src(texts), tok.piece_spans(texts, "src"), strict=True
    ):
        assert len(spans) == len(ids) - 1  # EOS has no span
        pieces = [p.replace("▁", " ") for p in tok.src_pieces(ids[:-1])]
        assert [text.encode()[b:e].decode() for b, e in spans] == [
            p.strip() if i == 0 else p for i, p in enumerate(pieces)
        ]


def test_collate_spreads_each_target_piece_over_its_source_pieces():
    corpus = EncodedCorpus.from_ids([[5, 6, 7, 3], [5, 3]], [[8, 9, 3], [8, 9, 10, 3]])
    corpus.links = [torch.tensor([[0, 0], [0, 2], [1, 1]]), torch.zeros(0, 2, dtype=torch.long)]
    batch = collate(corpus, [0, 1])
    assert batch.align.shape == (2, 4, 4)
    assert batch.align[0, 0].tolist() == [0.5, 0.0, 0.5, 0.0]
    assert batch.align[0, 1].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert batch.align[0, 2:].sum() == 0 and batch.align[1].sum() == 0  # EOS, padding, no links


def test_alignment_loss_is_the_cross_entropy_of_linked_rows():
    attn = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]], requires_grad=True)
    target = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]])
    loss = alignment_loss(attn, target)
    expected = -(0.5 * torch.tensor(0.7).log() + 0.5 * torch.tensor(0.2).log())
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert attn.grad[0, 1].abs().sum() == 0  # an unlinked row is not trained


def test_toy_truth_crosses():
    links = toy.alignment("The black cat ate the mouse.", "Le chat noir a mangé la souris.")
    assert links == {(0, 0), (1, 2), (2, 1), (3, 3), (3, 4), (4, 5), (5, 6)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.guided_alignment=giza"], "unknown aligner 'giza'"),
        (["train.guided_alignment=eflomal", "train.guided_symmetrize=diag"], "'diag'"),
        (
            ["train.guided_alignment=eflomal", *TINY_RNN, "model.attention=none"],
            "no attention to guide",
        ),
        (["train.join_most=1"], "train.join_most: 1"),
        (["train.join_extra=-1"], "train.join_extra: -1"),
    ],
)
def test_bad_guided_settings_are_one_clear_error(tmp_path, overrides, message):
    with pytest.raises(RunError, match=message):
        pipeline.check_config(toy_config(tmp_path, *overrides))


@pytest.mark.parametrize("full_context", [False, True])
def test_guided_head_aligns_the_toy_pair_as_built(tmp_path, full_context):
    """eflomal's links of the toy training pairs, taught to head 0 of the last layer (reading the
    target up to each word, or all of it): that head's forced alignment of test pairs agrees with
    the construction's alignment."""
    run = pipeline.train_pipeline(
        toy_config(
            tmp_path,
            "train.guided_alignment=eflomal",
            "model.align_head=0",
            f"model.align_full_context={str(full_context).lower()}",
            "train.max_steps=300",
            "train.validate_every=300",
        )
    )
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    curve = [e.value for e in events.Scalars("train/alignment_loss")]
    assert len(curve) == 6 and curve[-1] < curve[0] / 2  # logged every 50 updates, and learnt
    model = Translator.load(run, device="cpu")
    pairs = _test_split(tmp_path)
    src = [s.split() for s, _ in pairs]
    tgt = [t.split() for _, t in pairs]
    gold = [toy.alignment(s, t) for s, t in pairs]
    links = [set(a.links) for a in model.align_words(src, tgt)]
    assert alignment_scores(links, gold, gold)["aer"] < 0.12


def _test_split(tmp_path):
    from mt import stages

    _, corpus = stages.prepare_stage(toy_config(tmp_path))
    return list(zip(corpus["test"]["src"][:200], corpus["test"]["tgt"][:200], strict=True))
