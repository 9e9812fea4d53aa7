"""The Transformer under the Seq2Seq contract: shapes, masks, cached decoding, attention on request."""

import pytest
import torch
from omegaconf import OmegaConf

from mt.config import CONF_DIR
from mt.models import build_model
from mt.tokenizer import BOS, PAD


def small(**changes):
    cfg = OmegaConf.load(CONF_DIR / "model" / "transformer.yaml")
    cfg.update(d_model=32, heads=4, ff_dim=64, encoder_layers=2, decoder_layers=2, dropout=0.0)
    cfg.update(changes)
    return cfg


@pytest.fixture(params=["pre", "post"])
def model(request):
    """The contract holds for both places of the layer normalization (model.norm)."""
    torch.manual_seed(0)
    return build_model(small(norm=request.param), 40, 40, shared_vocab=True).eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    src = torch.randint(4, 40, (3, 7))
    src[1, 4:] = PAD
    tgt = torch.randint(4, 40, (3, 6))
    tgt[:, 0] = BOS
    return src, tgt


def test_shapes_and_padding(model, batch):
    src, tgt = batch
    logits, attn = model(src, tgt, need_attn=True)
    assert logits.shape == (3, 6, 40) and attn.shape == (3, 6, 7)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 6))
    assert (attn[1, :, 4:] == 0).all()
    # padding the source further changes nothing
    longer = torch.cat([src, torch.full((3, 2), PAD)], 1)
    torch.testing.assert_close(model(longer, tgt)[0], logits, atol=1e-5, rtol=1e-5)


def test_tied_embeddings(model):
    assert (
        model.output.weight is model.tgt_embed.embedding.weight is model.src_embed.embedding.weight
    )


def test_attention_weights_do_not_change_outputs(model, batch):
    src, tgt = batch
    plain, none = model(src, tgt)
    with_attn, attn = model(src, tgt, need_attn=True)
    assert none is None and attn is not None
    torch.testing.assert_close(plain, with_attn, atol=1e-5, rtol=0)


def test_cached_decoding_equals_full_redecoding(model, batch):
    src, tgt = batch
    full, full_attn = model(src, tgt, need_attn=True)
    memory = model.encode(src, src != PAD)
    state, steps, attns = None, [], []
    for t in range(tgt.shape[1]):
        logits, state, attn = model.decode_step(tgt[:, t], memory, state, need_attn=True)
        steps.append(logits)
        attns.append(attn)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(attns, 1), full_attn, atol=1e-5, rtol=0)
    assert torch.equal(torch.stack(steps, 1).argmax(-1), full.argmax(-1))


def test_state_reorder_follows_the_index(model, batch):
    src, tgt = batch
    memory = model.encode(src, src != PAD)
    _, state, _ = model.decode_step(tgt[:, 0], memory, None)
    index = torch.tensor([2, 0, 1])
    logits, _, _ = model.decode_step(tgt[index, 1], memory.reorder(index), state.reorder(index))
    expected, _ = model(src[index], tgt[index, :2])
    torch.testing.assert_close(logits, expected[:, 1], atol=1e-5, rtol=0)


def test_label_smoothed_loss_and_its_gradient_equal_torchs():
    import torch.nn.functional as F

    from mt.loss import label_smoothed_loss

    torch.manual_seed(2)
    logits = (torch.randn(3, 5, 11) * 3).requires_grad_()
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = PAD
    ours = label_smoothed_loss(logits, target, 0.1)
    (ours_grad,) = torch.autograd.grad(ours * 2, logits)
    theirs = F.cross_entropy(
        logits.flatten(0, 1),
        target.flatten(),
        ignore_index=PAD,
        label_smoothing=0.1,
        reduction="sum",
    )
    (theirs_grad,) = torch.autograd.grad(theirs * 2, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, theirs_grad)
    assert ours_grad[0, 3:].abs().sum() == 0  # no gradient from padding


def test_dropout_drops_at_its_rate_scales_the_rest_and_is_seeded():
    from mt.models.base import Dropout

    drop = Dropout(0.1)
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 0.002
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad == 0, dropped)  # the gradient goes through the same mask
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)
    assert not torch.equal(drop(x), y)  # a fresh mask each call
    assert drop.eval()(x) is x


def test_full_context_alignment_sees_later_words_and_changes_no_output(model, batch):
    """model.align_full_context: the aligned attention of position t moves when a later target
    word changes (the causal one cannot), the logits stay those of the causal model, and search
    aligns its hypotheses by forcing them."""
    from mt.decoding import DecodeOptions, forced_decode, search

    src, tgt = batch
    causal_logits, causal = model(src, tgt, need_attn=True)
    model.alignment_needs_target = True
    logits, full = model(src, tgt, need_attn=True)
    torch.testing.assert_close(logits, causal_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(full.sum(-1), torch.ones(3, 6))
    assert (full[1, :, 4:] == 0).all()  # padded source positions get nothing
    later = tgt.clone()
    later[:, 4] = (later[:, 4] + 1 - 4) % 36 + 4  # another word at position 4
    _, moved = model(src, later, need_attn=True)
    assert not torch.allclose(moved[:, :4], full[:, :4], atol=1e-4)
    model.alignment_needs_target = False
    _, unmoved = model(src, later, need_attn=True)
    torch.testing.assert_close(unmoved[:, :4], causal[:, :4], atol=1e-6, rtol=0)
    # padding the target changes no real row
    model.alignment_needs_target = True
    padded = torch.cat([tgt, torch.full((3, 2), PAD)], 1)
    torch.testing.assert_close(
        model(src, padded, need_attn=True)[1][:, :6], full, atol=1e-5, rtol=0
    )

    options = DecodeOptions(strategy="beam", beam_size=3, nbest=2, max_len_a=0, max_len_b=5)
    found = search(model, src, options, need_attn=True)
    for b, hyps in enumerate(found):
        for hyp in hyps:
            targets = torch.tensor([hyp.tokens])
            (forced,) = forced_decode(model, src[b : b + 1], targets, options, need_attn=True)
            torch.testing.assert_close(hyp.attention, forced[0].attention, atol=1e-5, rtol=0)
    memory = model.encode(src, src != PAD)
    _, state, _ = model.decode_step(tgt[:, 0], memory, None)
    with pytest.raises(ValueError, match="whole target"):
        model.decode_step(tgt[:, 1], memory, state, need_attn=True)


def test_post_norm_normalizes_after_each_residual_and_drops_the_final_norms(batch):
    from mt.models import ModelConfigError

    src, _ = batch
    torch.manual_seed(0)
    post = build_model(small(norm="post"), 40, 40, shared_vocab=True).eval()
    torch.manual_seed(0)
    pre = build_model(small(norm="pre"), 40, 40, shared_vocab=True).eval()
    names = {name for name, _ in pre.named_parameters()} - {n for n, _ in post.named_parameters()}
    assert names == {f"{s}_norm.{p}" for s in ("encoder", "decoder") for p in ("weight", "bias")}
    # every encoder layer's output is a layer norm's (at its initial gain 1 and bias 0): each
    # position has mean 0 and variance 1; pre-norm layers add to an unnormalized stream
    for model, normalized in ((post, True), (pre, False)):
        x = model.src_embed(src)
        for layer in model.encoder_layers:
            x = layer(x, src != PAD)
            standard = torch.allclose(x.mean(-1), torch.zeros(3, 7), atol=1e-5) and torch.allclose(
                x.var(-1, unbiased=False), torch.ones(3, 7), atol=1e-3
            )
            assert standard == normalized
    with pytest.raises(ModelConfigError, match=r"model.norm: unknown 'middle' \(pre, post\)"):
        build_model(small(norm="middle"), 40, 40, shared_vocab=True)
