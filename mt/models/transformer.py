"""Transformer encoder-decoder (Vaswani et al. 2017) with sinusoidal positions, tied embeddings and
key/value-cached incremental decoding; its layer normalization before each sublayer, with a final one
after each stack (pre-norm, Wang et al. 2019), or after each residual addition (post-norm, the
original's and fairseq's default)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mt.attention import MultiHeadAttention
from mt.models.base import Dropout, Memory, Seq2Seq, embedding_pair, reorder_tensors
from mt.tokenizer import PAD


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """(length, d_model): sin on even dimensions, cos on odd, wavelengths 2π .. 10000·2π."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class Embeddings(nn.Module):
    """Token embeddings scaled by sqrt(d_model), plus sinusoidal positions, then dropout."""

    def __init__(self, embedding: nn.Embedding, max_positions: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.scale = math.sqrt(embedding.embedding_dim)
        self.register_buffer(
            "positions",
            sinusoidal_positions(max_positions, embedding.embedding_dim),
            persistent=False,
        )
        self.dropout = Dropout(dropout)

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids (B, T) at positions offset .. offset+T-1 -> (B, T, D)."""
        positions = self.positions[offset : offset + ids.shape[1]]
        return self.dropout(self.embedding(ids) * self.scale + positions)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ff_dim: int, dropout: float):
        super().__init__(
            nn.Linear(d_model, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, d_model)
        )


NORMS = ("pre", "post")  # model.norm: where each sublayer's layer normalization sits


class Sublayers(nn.Module):
    """Residual sublayers, normalized pre-norm, x + f(LN(x)), or post-norm, LN(x + f(x))."""

    def __init__(self, dropout: float, norm: str):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"model.norm: unknown {norm!r} ({', '.join(NORMS)})")
        self.pre_norm = norm == "pre"
        self.dropout = Dropout(dropout)

    def inputs(self, layer_norm: nn.LayerNorm, x: Tensor) -> Tensor:
        """What a sublayer reads of x."""
        return layer_norm(x) if self.pre_norm else x

    def add(self, layer_norm: nn.LayerNorm, x: Tensor, out: Tensor) -> Tensor:
        """x after the residual addition of a sublayer's output."""
        x = x + self.dropout(out)
        return x if self.pre_norm else layer_norm(x)


class EncoderLayer(Sublayers):
    """Self-attention, then a feed-forward network, each a residual sublayer (Sublayers)."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        norm: str = "pre",
    ):
        super().__init__(dropout, norm)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.inputs(self.self_attn_norm, x)
        x = self.add(self.self_attn_norm, x, self.self_attn(h, h, mask=mask)[0])
        return self.add(self.ff_norm, x, self.ff(self.inputs(self.ff_norm, x)))


class DecoderLayer(Sublayers):
    """Causal self-attention, cross-attention to the memory, then a feed-forward network, each a
    residual sublayer (Sublayers)."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        norm: str = "pre",
    ):
        super().__init__(dropout, norm)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim, dropout)

    def full_context_weights(
        self, x: Tensor, cross_kv: tuple[Tensor, Tensor], src_mask: Tensor, tgt_mask: Tensor
    ) -> Tensor:
        """The cross-attention weights (B, H, T, S) this layer would have if its self-attention saw
        the whole target (`tgt_mask` (B, T): True at real positions) — the alignment of Garg et al.
        (2019), read but never used to predict."""
        h = self.inputs(self.self_attn_norm, x)
        k, v = self.self_attn.project_kv(h)
        # every position sees every real target position, later ones too
        out = self.self_attn.attend(self.self_attn.project_query(h), k, v, tgt_mask)[0]
        x = self.add(self.self_attn_norm, x, out)
        query = self.cross_attn.project_query(self.inputs(self.cross_attn_norm, x))
        return self.cross_attn.attend(query, *cross_kv, mask=src_mask, need_weights=True)[1]

    def forward(
        self,
        x: Tensor,
        self_kv: tuple[Tensor, Tensor] | None,
        cross_kv: tuple[Tensor, Tensor],
        src_mask: Tensor,
        need_weights: bool,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """x (B, T, D): the new positions; self_kv: cached keys/values of earlier positions, or None.

        Returns x, the keys/values of all positions so far, and cross-attention weights (B, H, T, S).
        """
        h = self.inputs(self.self_attn_norm, x)
        k, v = self.self_attn.project_kv(h)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        causal = x.shape[1] > 1  # one new position may see every cached one
        out = self.self_attn.attend(self.self_attn.project_query(h), k, v, causal=causal)[0]
        x = self.add(self.self_attn_norm, x, out)
        h = self.inputs(self.cross_attn_norm, x)
        out, weights = self.cross_attn.attend(
            self.cross_attn.project_query(h), *cross_kv, mask=src_mask, need_weights=need_weights
        )
        x = self.add(self.cross_attn_norm, x, out)
        x = self.add(self.ff_norm, x, self.ff(self.inputs(self.ff_norm, x)))
        return x, (k, v), weights


@dataclass
class TransformerState:
    """Incremental decoding state: per layer, self-attention keys/values so far and the source's
    cross-attention keys/values (computed once); `step` is the next target position."""

    self_kv: list[tuple[Tensor, Tensor]]
    cross_kv: list[tuple[Tensor, Tensor]]
    step: int

    def reorder(self, index: Tensor) -> TransformerState:
        return reorder_tensors(self, index)


class Transformer(Seq2Seq):
    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        d_model: int,
        heads: int,
        ff_dim: int,
        encoder_layers: int,
        decoder_layers: int,
        dropout: float,
        attention_dropout: float,
        tie_embeddings: bool,
        shared_vocab: bool,
        max_positions: int,
        align_layer: int | Sequence[int],
        align_head: int | None,
        align_full_context: bool = False,
        norm: str = "pre",
    ):
        super().__init__()
        src_embedding, tgt_embedding = embedding_pair(
            src_vocab, tgt_vocab, d_model, share=tie_embeddings and shared_vocab
        )
        for embedding in {src_embedding, tgt_embedding}:
            nn.init.normal_(embedding.weight, std=d_model**-0.5)
            nn.init.zeros_(embedding.weight[PAD])
        self.src_embed = Embeddings(src_embedding, max_positions, dropout)
        self.tgt_embed = Embeddings(tgt_embedding, max_positions, dropout)
        layer_args = (d_model, heads, ff_dim, dropout, attention_dropout, norm)
        # pre-norm stacks end with a normalization; post-norm layers end normalized already (the
        # order of the parameters is that of checkpoints' optimizer states: keep it)
        self.pre_norm = norm == "pre"
        final_norm = lambda: nn.LayerNorm(d_model) if self.pre_norm else nn.Identity()  # noqa: E731
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(*layer_args) for _ in range(encoder_layers)
        )
        self.encoder_norm = final_norm()
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(*layer_args) for _ in range(decoder_layers)
        )
        self.decoder_norm = final_norm()
        self.output = nn.Linear(d_model, tgt_vocab, bias=False)
        if tie_embeddings:
            self.output.weight = tgt_embedding.weight
        self.max_positions = max_positions
        self.heads = heads
        self.align_layers: tuple[int, ...] = (decoder_layers - 1,)
        self.align_head: int | None = None
        self.choose_alignment(align_layer, align_head)
        # the aligned layers' attention read with the whole target in view (model.align_full_context)
        self.alignment_needs_target = align_full_context

    @classmethod
    def from_config(cls, cfg, src_vocab: int, tgt_vocab: int, shared_vocab: bool) -> Transformer:
        """The Transformer of a conf/model section (arch: transformer)."""
        return cls(
            src_vocab,
            tgt_vocab,
            d_model=cfg.d_model,
            heads=cfg.heads,
            ff_dim=cfg.ff_dim,
            encoder_layers=cfg.encoder_layers,
            decoder_layers=cfg.decoder_layers,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            tie_embeddings=cfg.tie_embeddings,
            shared_vocab=shared_vocab,
            max_positions=cfg.max_positions,
            align_layer=cfg.align_layer
            if isinstance(cfg.align_layer, int)
            else list(cfg.align_layer),
            align_head=cfg.align_head,
            align_full_context=cfg.get("align_full_context", False),
            norm=cfg.get("norm", "pre"),  # runs made before model.norm were pre-norm
        )

    def choose_alignment(
        self, layer: int | Sequence[int] | None = None, head: int | None = None
    ) -> None:
        """Align with cross-attention `layer` (negative: from the last; a list: those layers'
        average) and `head` (None: the heads' average)."""
        layers, heads = len(self.decoder_layers), self.heads
        if layer is not None:
            chosen = [layer] if isinstance(layer, int) else list(layer)
            if not chosen:
                raise ValueError("layer: give at least one layer")
            for one in chosen:
                if not -layers <= one < layers:
                    raise ValueError(f"layer {one}: the decoder has {layers} layers")
            self.align_layers = tuple(sorted({one % layers for one in chosen}))
        if head is not None:
            if not 0 <= head < heads:
                raise ValueError(f"head {head}: the model has {heads} heads")
            self.align_head = head

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> Memory:
        x = self.src_embed(src_ids)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        return Memory(self.encoder_norm(x), src_mask)

    def _decode(
        self, tgt_ids: Tensor, memory: Memory, state: TransformerState | None, need_attn: bool
    ) -> tuple[Tensor, TransformerState, Tensor | None]:
        """Decode the positions `tgt_ids` (B, T) after those in `state` -> logits (B, T, V)."""
        if state is None:
            state = TransformerState(
                self_kv=[None] * len(self.decoder_layers),
                cross_kv=[
                    layer.cross_attn.project_kv(memory.states) for layer in self.decoder_layers
                ],
                step=0,
            )
        x = self.tgt_embed(tgt_ids, offset=state.step)
        self_kv, read = [], []
        full_context = self.alignment_needs_target and need_attn
        if full_context and state.step:
            raise ValueError(
                "model.align_full_context: the alignment needs the whole target; decode it at once "
                "(forced decoding), not step by step"
            )
        for i, layer in enumerate(self.decoder_layers):
            want = need_attn and i in self.align_layers
            layer_input = x
            x, kv, weights = layer(
                x, state.self_kv[i], state.cross_kv[i], memory.mask, want and not full_context
            )
            if want and full_context:  # the same layer again, seeing the whole target
                weights = layer.full_context_weights(
                    layer_input, state.cross_kv[i], memory.mask, tgt_ids != PAD
                )
            self_kv.append(kv)
            if want:  # (B, H, T, S) -> (B, T, S)
                read.append(
                    weights.mean(1) if self.align_head is None else weights[:, self.align_head]
                )
        attn = torch.stack(read).mean(0) if read else None
        logits = self.output(self.decoder_norm(x))
        return (
            logits,
            TransformerState(self_kv, state.cross_kv, state.step + tgt_ids.shape[1]),
            attn,
        )

    def decode(
        self, memory: Memory, tgt_in_ids: Tensor, need_attn: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        logits, _, attn = self._decode(tgt_in_ids, memory, None, need_attn)
        return logits, attn

    def decode_step(
        self,
        tokens: Tensor,
        memory: Memory,
        state: TransformerState | None,
        need_attn: bool = False,
    ) -> tuple[Tensor, TransformerState, Tensor | None]:
        logits, state, attn = self._decode(tokens[:, None], memory, state, need_attn)
        return logits[:, 0], state, attn[:, 0] if attn is not None else None
