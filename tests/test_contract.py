"""The Seq2Seq contract, for every architecture the configs offer: the Transformer and the RNN in
its three forms, both cells and all four attention scores. Tiny untrained models; each property is one
that search, training and alignment rely on."""

import itertools

import pytest
import torch

from mt.batching import pad
from mt.decoding import DecodeOptions, beam_search, greedy_search
from mt.models import build_model
from mt.tokenizer import BOS, PAD
from tests.conftest import make_config

VOCAB = 40
TRANSFORMER = ["model=transformer", "model.d_model=16", "model.heads=2", "model.ff_dim=32"]
TRANSFORMER += ["model.encoder_layers=2", "model.decoder_layers=2", "model.dropout=0.0"]
RNN_SIZES = ["model.embedding_dim=16", "model.encoder_hidden=8", "model.decoder_hidden=16"]
ARCHITECTURES = (
    {"transformer": TRANSFORMER}
    | {
        f"{style}-{cell}-{attention}": [
            f"model=rnn_{style}",
            f"model.cell={cell}",
            f"model.attention={attention}",
            "model.dropout=0.0",
            *RNN_SIZES,
        ]
        for style, cell, attention in itertools.product(
            ["bahdanau", "luong", "conditional"],
            ["gru", "lstm"],
            ["additive", "dot", "general", "concat"],
        )
    }
    | {
        f"{style}-hard": [
            f"model=rnn_{style}",
            "model.attention_mode=hard",
            "model.dropout=0.0",
            *RNN_SIZES,
        ]
        for style in ["bahdanau", "luong", "conditional"]
    }
    | {  # the conditional RNN's first step feeds the first of several layers
        f"conditional-{cell}-2layers": [
            "model=rnn_conditional",
            f"model.cell={cell}",
            "model.decoder_layers=2",
            "model.dropout=0.0",
            *RNN_SIZES,
        ]
        for cell in ["gru", "lstm"]
    }
)


@pytest.fixture(scope="module", params=list(ARCHITECTURES), ids=list(ARCHITECTURES))
def model(request, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("m"), *ARCHITECTURES[request.param])
    torch.manual_seed(0)
    return build_model(cfg.model, VOCAB, VOCAB, shared_vocab=True).eval()


def ids(*lengths, seed=0):
    """(B, max length) PAD-padded random token ids (no specials) of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    return pad([torch.randint(4, VOCAB, (n,), generator=g) for n in lengths])


@torch.inference_mode()
def step_by_step(model, memory, tgt_in, state=None):
    logits, attns = [], []
    for t in range(tgt_in.shape[1]):
        step_logits, state, attn = model.decode_step(tgt_in[:, t], memory, state, need_attn=True)
        logits.append(step_logits)
        attns.append(attn)
    return torch.stack(logits, 1), torch.stack(attns, 1), state


@torch.inference_mode()
def test_decode_step_by_step_equals_teacher_forced_decode(model):
    src, tgt_in = ids(5, 7, 3), ids(6, 6, 6, seed=1)
    tgt_in[:, 0] = BOS
    memory = model.encode(src, src != PAD)
    logits, attn = model.decode(memory, tgt_in, need_attn=True)
    step_logits, step_attn, _ = step_by_step(model, memory, tgt_in)
    torch.testing.assert_close(step_logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(step_attn, attn, atol=1e-5, rtol=1e-4)
    assert torch.all(attn[0, :, 5:] == 0)  # no attention on padding


@torch.inference_mode()
def test_padding_does_not_change_a_sentence(model):
    src, tgt_in = ids(4, 7), ids(5, 5, seed=1)
    tgt_in[:, 0] = BOS
    together, attn_together = model(src, tgt_in, need_attn=True)
    alone, attn_alone = model(src[:1, :4], tgt_in[:1], need_attn=True)
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attn_together[:1, :, :4], attn_alone, atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_reordered_state_equals_decoding_the_reordered_batch(model):
    src, tgt_in = ids(5, 3, 6), ids(6, 6, 6, seed=1)
    tgt_in[:, 0] = BOS
    index = torch.tensor([2, 0, 0, 1])
    memory = model.encode(src, src != PAD)
    _, _, state = step_by_step(model, memory, tgt_in[:, :3])
    memory, state = memory.reorder(index), state.reorder(index)
    rest_logits, rest_attn, _ = step_by_step(model, memory, tgt_in[index, 3:], state)
    direct = model.encode(src[index], src[index] != PAD)
    logits, attn, _ = step_by_step(model, direct, tgt_in[index])
    torch.testing.assert_close(rest_logits, logits[:, 3:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rest_attn, attn[:, 3:], atol=1e-5, rtol=1e-4)


def test_beam_of_one_equals_greedy(model):
    src = ids(5, 7, 3)
    options = DecodeOptions(beam_size=1, max_len_a=1.0, max_len_b=4)
    greedy = greedy_search(model, src, options, need_attn=True)
    beam = beam_search(model, src, options, need_attn=True)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)
        torch.testing.assert_close(g[0].attention, b[0].attention)


def test_batched_beam_search_equals_one_by_one(model):
    lengths = (5, 7, 3)
    src = ids(*lengths)
    options = DecodeOptions(beam_size=3, nbest=2, max_len_a=1.0, max_len_b=4)
    together = beam_search(model, src, options)
    for i, n in enumerate(lengths):
        alone = beam_search(model, src[i : i + 1, :n], options)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)
