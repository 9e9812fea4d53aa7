"""The attention family: a softmax over scores of a query against keys, giving a weighted sum of values.

Scores: additive (Bahdanau et al. 2015), dot / general / concat (Luong et al. 2015), and multi-head
scaled dot-product (Vaswani et al. 2017). Every module returns (context, weights); the weights sum to
one over real positions and are exactly zero on padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis, with positions where `mask` is False given weight exactly 0.

    scores: (..., S); mask: broadcastable to scores, True at real positions.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


class ScoredAttention(nn.Module):
    """Attention over encoder states for an RNN decoder; subclasses define `score`.

    `prepare(keys)` does the per-sentence work on the keys once, so each decoder step only scores.
    """

    def prepare(self, keys: Tensor) -> Tensor:
        """(B, S, Dk) -> whatever `score` takes as keys (default: the keys themselves)."""
        return keys

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        """query (B, T, Dq), prepared keys -> scores (B, T, S)."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None,
        prepared_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query (B, T, Dq), keys (B, S, Dk), values (B, S, Dv), mask (B, S) True at real positions.

        Returns context (B, T, Dv) and weights (B, T, S).
        """
        if prepared_keys is None:
            prepared_keys = self.prepare(keys)
        weights = masked_softmax(
            self.score(query, prepared_keys), mask[:, None, :] if mask is not None else None
        )
        return weights @ values, weights


class AdditiveAttention(ScoredAttention):
    """Bahdanau: score(q, k) = vᵀ tanh(W_q q + W_k k)."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, S, H)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        hidden = torch.tanh(
            self.query_proj(query)[:, :, None, :] + prepared_keys[:, None, :, :]
        )  # (B, T, S, H)
        return self.v(hidden).squeeze(-1)


class DotAttention(ScoredAttention):
    """Luong dot: score(q, k) = qᵀ k (query and keys of one size)."""

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        return query @ prepared_keys.transpose(1, 2)


class GeneralAttention(DotAttention):
    """Luong general: score(q, k) = qᵀ W k."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.W = nn.Linear(key_dim, query_dim, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.W(keys)  # (B, S, Dq): W k for every key, once


class ConcatAttention(ScoredAttention):
    """Luong concat: score(q, k) = vᵀ tanh(W [q; k]).

    W [q; k] is computed as W_q q + W_k k (W split by columns), so the keys' half is done once.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_dim = query_dim
        self.W = nn.Linear(query_dim + key_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return keys @ self.W.weight[:, self.query_dim :].T  # (B, S, H)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        q = query @ self.W.weight[:, : self.query_dim].T  # (B, T, H)
        return self.v(torch.tanh(q[:, :, None, :] + prepared_keys[:, None, :, :])).squeeze(-1)


def build_scored_attention(
    kind: str, query_dim: int, key_dim: int, hidden_dim: int
) -> ScoredAttention:
    """The RNN attention named by `kind`: additive | dot | general | concat."""
    if kind == "additive":
        return AdditiveAttention(query_dim, key_dim, hidden_dim)
    if kind == "dot":
        if query_dim != key_dim:
            raise ValueError(
                f"dot attention needs query and key sizes equal, got {query_dim} and {key_dim}"
            )
        return DotAttention()
    if kind == "general":
        return GeneralAttention(query_dim, key_dim)
    if kind == "concat":
        return ConcatAttention(query_dim, key_dim, hidden_dim)
    raise ValueError(f"model.attention: unknown kind {kind!r} (additive, dot, general or concat)")


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention: softmax(Q Kᵀ / sqrt(d_head)) V in `heads` subspaces.

    Without weights requested it runs on F.scaled_dot_product_attention (fused kernels); with
    weights requested it computes them explicitly — the same function, so the same output.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % heads:
            raise ValueError(
                f"model.d_model ({d_model}) must be divisible by model.heads ({heads})"
            )
        self.heads, self.d_head, self.dropout = heads, d_model // heads, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, D/H)."""
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d_head).transpose(1, 2)

    def project_query(self, x: Tensor) -> Tensor:
        return self.split_heads(self.q_proj(x))

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of `x` (B, S, D), each (B, H, S, D/H): what a decoder caches."""
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """q (B, H, T, d), k and v (B, H, S, d), mask (B, S) True at real keys.

        Returns the output (B, T, D) and, if asked, the weights (B, H, T, S).
        """
        attn_mask = mask[:, None, None, :] if mask is not None else None  # (B, 1, 1, S)
        fused_causal = causal and attn_mask is None and not need_weights
        if causal and not fused_causal:
            t, s = q.shape[-2], k.shape[-2]
            # query i sees keys up to i + (s - t): the last t of s positions (a cache comes first)
            future = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
            attn_mask = future if attn_mask is None else attn_mask & future
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, H, T, S)
            weights = masked_softmax(scores, attn_mask)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=fused_causal
            )
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1)), weights

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, T, D) attends to keys (B, S, D) (values are the keys: the projections differ).

        Returns the output (B, T, D) and, if asked, weights (B, H, T, S).
        """
        if values is not None and values is not keys:
            raise ValueError("MultiHeadAttention projects keys and values from one tensor")
        k, v = self.project_kv(keys)
        return self.attend(self.project_query(query), k, v, mask, causal, need_weights)
