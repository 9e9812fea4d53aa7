"""Attention: weights sum to one over real positions, are exactly zero on padding, and each score
function matches its formula written out directly."""

import math

import pytest
import torch

from mt.attention import (
    AdditiveAttention,
    ConcatAttention,
    DotAttention,
    GeneralAttention,
    MultiHeadAttention,
)

B, T, S, D = 2, 3, 5, 8


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    query, keys = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 3:] = False  # the second sentence has 3 real positions
    return query, keys, mask


def direct_context(scores: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor):
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, -1)
    return weights @ keys, weights


@pytest.mark.parametrize("kind", ["additive", "dot", "general", "concat"])
def test_scored_attention_matches_formula(kind, inputs):
    query, keys, mask = inputs
    if kind == "additive":
        attn = AdditiveAttention(D, D, 6)
        scores = torch.stack(
            [
                torch.stack(
                    [
                        torch.stack(
                            [
                                attn.v.weight[0]
                                @ torch.tanh(
                                    attn.query_proj.weight @ query[b, t]
                                    + attn.key_proj.weight @ keys[b, s]
                                )
                                for s in range(S)
                            ]
                        )
                        for t in range(T)
                    ]
                )
                for b in range(B)
            ]
        )
    elif kind == "dot":
        attn = DotAttention()
        scores = torch.einsum("btd,bsd->bts", query, keys)
    elif kind == "general":
        attn = GeneralAttention(D, D)
        scores = torch.einsum("btd,de,bse->bts", query, attn.W.weight, keys)
    else:
        attn = ConcatAttention(D, D, 6)
        scores = torch.stack(
            [
                torch.stack(
                    [
                        torch.stack(
                            [
                                attn.v.weight[0]
                                @ torch.tanh(attn.W.weight @ torch.cat([query[b, t], keys[b, s]]))
                                for s in range(S)
                            ]
                        )
                        for t in range(T)
                    ]
                )
                for b in range(B)
            ]
        )
    context, weights = attn(query, keys, keys, mask)
    expected_context, expected_weights = direct_context(scores, keys, mask)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(context, expected_context, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T))
    assert (weights[1, :, 3:] == 0).all()


def test_multi_head_weights_and_fast_path(inputs):
    query, keys, mask = inputs
    attn = MultiHeadAttention(D, heads=2).eval()
    fast, none = attn(query, keys, mask=mask)
    slow, weights = attn(query, keys, mask=mask, need_weights=True)
    assert none is None and weights.shape == (B, 2, T, S)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, 2, T))
    assert (weights[1, :, :, 3:] == 0).all()
    # head 0 by hand: softmax(q k^T / sqrt(d_head)) over real keys
    q = (query @ attn.q_proj.weight.T + attn.q_proj.bias)[..., :4]
    k = (keys @ attn.kv_proj.weight.T + attn.kv_proj.bias)[..., :4]
    scores = (q @ k.transpose(1, 2) / math.sqrt(4)).masked_fill(~mask[:, None, :], float("-inf"))
    torch.testing.assert_close(weights[:, 0], torch.softmax(scores, -1), atol=1e-6, rtol=1e-5)


def test_causal_mask_hides_the_future():
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, heads=2).eval()
    x = torch.randn(1, 4, D)
    fast, _ = attn(x, x, causal=True)
    slow, weights = attn(x, x, causal=True, need_weights=True)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    assert (weights[0, :, 0, 1:] == 0).all() and (weights[0, :, 2, 3:] == 0).all()
    # changing the last position does not change what the first three positions compute
    y = x.clone()
    y[0, 3] += 1.0
    torch.testing.assert_close(attn(y, y, causal=True)[0][:, :3], fast[:, :3])
