"""The Seq2Seq contract that every architecture implements, so that one trainer, one search and one
alignment extractor serve them all."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch
from torch import Tensor, nn

from mt.tokenizer import PAD


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU masks are cut from 64-bit random words, four 16-bit draws per word.

    torch's CPU dropout draws one Bernoulli sample per element; this is about 3x faster, which is
    about a tenth of a CPU Transformer update (docs/BENCHMARKS.md). Dropped elements are zeroed by a
    product with a mask of 0 and 1: on a CPU, `masked_fill` with a boolean mask (and its backward)
    costs several times that product. The drop probability is rounded to a multiple
    of 1/65536. On other devices it is nn.Dropout.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        keep = words.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def reorder_tensors(obj, index: Tensor):
    """A copy of dataclass `obj` with every tensor field (or list/tuple of tensors) index-selected on dim 0."""

    def pick(value):
        if isinstance(value, Tensor):
            return value.index_select(0, index)
        if isinstance(value, list | tuple):
            return type(value)(pick(v) for v in value)
        return value

    return replace(obj, **{f.name: pick(getattr(obj, f.name)) for f in fields(obj)})


def embedding_pair(
    src_vocab: int, tgt_vocab: int, dim: int, share: bool
) -> tuple[nn.Embedding, nn.Embedding]:
    """Source and target embeddings; one module for both when `share` (a joint vocabulary, tied)."""
    tgt = nn.Embedding(tgt_vocab, dim, padding_idx=PAD)
    return (tgt if share else nn.Embedding(src_vocab, dim, padding_idx=PAD)), tgt


@dataclass
class Memory:
    """What the encoder hands the decoder.

    states: (B, S, D) encoder states; mask: (B, S) True at real source positions;
    final: an architecture's summary of the source (the RNN's last hidden state), or None;
    keys: per-sentence work on the states that every decoder step re-uses (the RNN attention's
    projected keys), or None. Beam search re-orders the memory only when the batch's sentences
    change, so what lives here is not copied at every step.
    """

    states: Tensor
    mask: Tensor
    final: Tensor | tuple[Tensor, ...] | None = None
    keys: Tensor | tuple[Tensor, ...] | None = None

    def reorder(self, index: Tensor) -> Memory:
        """Rows `index` (N,) of the batch: to expand for beams or to drop finished sentences."""
        return reorder_tensors(self, index)


class DecoderState(Protocol):
    """A decoder's incremental state (hidden states, key/value caches), reorderable by beam search."""

    def reorder(self, index: Tensor) -> DecoderState: ...


class Seq2Seq(nn.Module):
    """An encoder-decoder translation model.

        memory = model.encode(src_ids, src_mask)
        logits, attn = model(src_ids, tgt_in_ids)                      # teacher forcing
        logits, state, attn = model.decode_step(tokens, memory, state)  # one step, incremental
        state = state.reorder(beam_index)

    `attn` is the cross-attention the model aligns with: (B, T_tgt, T_src) in `forward`, (B, T_src)
    in `decode_step`; it is computed only when `need_attn` is set and never changes the output.
    """

    max_positions: int | None = None  # the longest sequence the model can take (None: no limit)
    has_attention: bool = True  # False: nothing to align with (an RNN with model.attention=none)

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> Memory:
        """src_ids (B, S), src_mask (B, S) -> Memory."""
        raise NotImplementedError

    def decode(
        self, memory: Memory, tgt_in_ids: Tensor, need_attn: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding: tgt_in_ids (B, T) -> logits (B, T, V), attn (B, T, S) or None."""
        raise NotImplementedError

    def decode_step(
        self, tokens: Tensor, memory: Memory, state: DecoderState | None, need_attn: bool = False
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tokens (B,) the previous output (BOS first, with state None) -> logits (B, V), state, attn (B, S)."""
        raise NotImplementedError

    def choose_alignment(self, layer=None, head: int | None = None) -> None:
        """Align with cross-attention `layer` (negative: from the last; a list: their average) and
        `head` (None: the heads' average). A model with a single attention takes neither; a bad choice raises ValueError."""
        if layer is not None or head is not None:
            raise ValueError("this model has a single attention: a layer or head cannot be chosen")

    def forward(
        self, src_ids: Tensor, tgt_in_ids: Tensor, need_attn: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        return self.decode(self.encode(src_ids, src_ids != PAD), tgt_in_ids, need_attn)
