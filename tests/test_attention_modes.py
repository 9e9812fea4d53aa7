"""Hard attention (one source position: straight-through Gumbel-softmax in training, argmax at
inference), the conditional RNN's up-to-date query, and the RNN without attention, the baseline
that shows what attention buys."""

from __future__ import annotations

import pytest
import torch

from mt.models import build_model
from mt.tokenizer import BOS
from tests.conftest import TINY_RNN, make_config, run_mt, toy_config

VOCAB = 40


def tiny(tmp_path, *overrides):
    cfg = make_config(tmp_path, "model=rnn_bahdanau", *TINY_RNN[1:], *overrides)
    torch.manual_seed(0)
    return build_model(cfg.model, VOCAB, VOCAB, shared_vocab=True)


def batch():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    src[2, 5:] = 0  # padding
    tgt_in = torch.cat([torch.full((3, 1), BOS), torch.randint(4, VOCAB, (3, 5), generator=g)], 1)
    return src, tgt_in


def test_hard_attention_picks_one_real_position(tmp_path):
    model = tiny(tmp_path, "model.attention_mode=hard")
    src, tgt_in = batch()
    for train in (True, False):
        model.train(train)
        logits, attn = model(src, tgt_in, need_attn=True)
        assert ((attn == 0) | (attn == 1)).all() and (attn.sum(-1) == 1).all()
        assert (attn[2, :, 5:] == 0).all()  # never a padding position
    # inference: the argmax of the soft weights the same model computes
    soft = tiny(tmp_path, "model.attention_mode=soft")
    soft.load_state_dict(model.state_dict())
    _, weights = soft.eval()(src, tgt_in, need_attn=True)
    _, hard = model.eval()(src, tgt_in, need_attn=True)
    assert torch.equal(hard.argmax(-1), weights.argmax(-1))


def test_hard_attention_trains_its_scores(tmp_path):
    model = tiny(tmp_path, "model.attention_mode=hard").train()
    src, tgt_in = batch()
    torch.manual_seed(1)
    logits, _ = model(src, tgt_in)
    logits.logsumexp(-1).sum().backward()
    # the straight-through estimator passes the soft weights' gradient to the attention's scores
    grads = [p.grad for p in model.attention.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_no_attention_has_nothing_to_align(tmp_path):
    model = tiny(tmp_path, "model.attention=none").eval()
    assert not model.has_attention and model.attention is None
    src, tgt_in = batch()
    logits, attn = model(src, tgt_in, need_attn=True)
    assert attn is None and logits.shape == (3, 6, VOCAB)
    # the decoder sees the source only through its summary: source words after the first change
    # the output only through the encoder's final state, so the model still depends on them
    other = src.clone()
    other[0, 3] = 4 if src[0, 3] != 4 else 5
    assert not torch.allclose(model(other, tgt_in)[0][0], logits[0])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_conditional_query_has_read_the_previous_word(tmp_path, cell):
    # Bahdanau's query at step t is the state from before input word t: changing that word leaves
    # the step's attention as it was; the conditional RNN reads it first, so its attention moves
    src, tgt_in = batch()
    other = tgt_in.clone()
    other[:, 3] = torch.where(tgt_in[:, 3] == 4, 5, 4)
    for style, moves in (("bahdanau", False), ("conditional", True)):
        model = tiny(tmp_path, f"model.style={style}", f"model.cell={cell}").eval()
        _, attn = model(src, tgt_in, need_attn=True)
        _, changed = model(src, other, need_attn=True)
        torch.testing.assert_close(changed[:, :3], attn[:, :3])  # the steps before it: the same
        moved = not torch.allclose(changed[:, 3], attn[:, 3])
        assert moved == moves, style


def test_bad_attention_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="model.style: unknown 'nematus' .bahdanau, luong, cond"):
        tiny(tmp_path, "model.style=nematus")
    with pytest.raises(ValueError, match="model.attention_mode: unknown 'sharp'"):
        tiny(tmp_path, "model.attention_mode=sharp")
    with pytest.raises(ValueError, match="model.gumbel_temperature must be above 0"):
        tiny(tmp_path, "model.attention_mode=hard", "model.gumbel_temperature=0")


@pytest.fixture(scope="module")
def no_attention_run(tmp_path_factory):
    from mt import pipeline

    cfg = toy_config(
        tmp_path_factory.mktemp("none"),
        *TINY_RNN,
        "model.attention=none",
        "train.max_steps=60",
        "train.validate_every=60",
    )
    return pipeline.train_pipeline(cfg)


def test_a_run_without_attention_translates_but_does_not_align(no_attention_run):
    result = run_mt("translate", "--run", str(no_attention_run), "The black cat ate the mouse.")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
    result = run_mt("align", "--run", str(no_attention_run), "The black cat ate the mouse.")
    assert result.returncode == 1 and "has no attention (model.attention=none)" in result.stderr
