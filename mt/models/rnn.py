"""RNN encoder-decoder with attention, in both classic forms.

- Bahdanau et al. (2015): attend with the previous decoder state, then step the RNN on
  [previous word; context].
- Luong et al. (2015): step the RNN on [previous word; previous attentional vector] (input feeding),
  then attend with the new state.
- Conditional (Nematus, Sennrich et al. 2017): Bahdanau's model with the attention's query brought
  up to date — a first RNN step on the previous word, attend with its state, then a second step on
  the context. Bahdanau's query has not seen the word just emitted; this one has.

Either way the output is tanh(W [state; context]) (the attentional vector) projected to the vocabulary.

Soft attention weighs every source position; hard attention (`attention_mode="hard"`) takes exactly
one: a straight-through Gumbel-softmax sample in training (one-hot forward, the soft weights'
gradient backward), the argmax at inference. `attention="none"` is the encoder-decoder without
attention (Cho et al. 2014): every step sees the same summary of the source, the encoder's final
state — the baseline that shows what attention buys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mt.attention import build_scored_attention
from mt.models.base import Dropout, Memory, Seq2Seq, embedding_pair, reorder_tensors

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}
CELLS = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}
STYLES = ("bahdanau", "luong", "conditional")  # model.style: where the decoder attends (see above)


class RNNEncoder(nn.Module):
    """Bidirectional GRU/LSTM over embedded source tokens; padding is packed away, never computed."""

    def __init__(
        self, embedding: nn.Embedding, cell: str, hidden: int, layers: int, dropout: float
    ):
        super().__init__()
        self.embedding = embedding
        self.dropout = Dropout(dropout)
        self.rnn = RNNS[cell](
            embedding.embedding_dim,
            hidden,
            layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, src_ids: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> states (B, S, 2H), final (B, 2H): the last forward and first backward state of the top layer."""
        lengths = src_mask.sum(1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.embedding(src_ids)), lengths, batch_first=True, enforce_sorted=False
        )
        states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src_ids.shape[1])
        if isinstance(final, tuple):  # LSTM: (h, c)
            final = final[0]
        return states, torch.cat([final[-2], final[-1]], dim=-1)


@dataclass
class RNNState:
    """hidden: (B, layers, H) (and cell, for an LSTM); feed: (B, H) the last attentional vector
    (Luong input feeding)."""

    hidden: Tensor
    cell: Tensor | None
    feed: Tensor

    def reorder(self, index: Tensor) -> RNNState:
        return reorder_tensors(self, index)


class RNNSeq2Seq(Seq2Seq):
    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        style: str,
        attention: str,
        cell: str,
        embedding_dim: int,
        encoder_hidden: int,
        decoder_hidden: int,
        encoder_layers: int,
        decoder_layers: int,
        dropout: float,
        tie_embeddings: bool,
        shared_vocab: bool,
        attention_mode: str = "soft",
        gumbel_temperature: float = 1.0,
    ):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"model.style: unknown {style!r} ({', '.join(STYLES)})")
        if attention_mode not in ("soft", "hard"):
            raise ValueError(f"model.attention_mode: unknown {attention_mode!r} (soft or hard)")
        if not gumbel_temperature > 0:
            raise ValueError(f"model.gumbel_temperature must be above 0, not {gumbel_temperature}")
        self.attention_mode, self.gumbel_temperature = attention_mode, gumbel_temperature
        self.has_attention = attention != "none"
        if cell not in RNNS:
            raise ValueError(f"model.cell: unknown {cell!r} (gru or lstm)")
        self.style, self.cell_type = style, cell
        src_embedding, tgt_embedding = embedding_pair(
            src_vocab, tgt_vocab, embedding_dim, share=tie_embeddings and shared_vocab
        )
        self.encoder = RNNEncoder(src_embedding, cell, encoder_hidden, encoder_layers, dropout)
        self.tgt_embedding = tgt_embedding
        memory_dim = 2 * encoder_hidden
        self.bridge = nn.Linear(memory_dim, decoder_hidden)
        # Bahdanau feeds the context into the RNN; Luong feeds the previous attentional vector;
        # the conditional RNN reads the previous word in a step of its own, then the context
        rnn_input = {
            "bahdanau": embedding_dim + memory_dim,
            "luong": embedding_dim + decoder_hidden,
            "conditional": memory_dim,
        }[style]
        self.decoder_layers = decoder_layers
        self.first_step = (
            CELLS[cell](embedding_dim, decoder_hidden) if style == "conditional" else None
        )
        self.rnn = RNNS[cell](
            rnn_input,
            decoder_hidden,
            decoder_layers,
            batch_first=True,
            dropout=dropout if decoder_layers > 1 else 0.0,
        )
        try:
            self.attention = (
                build_scored_attention(attention, decoder_hidden, memory_dim, decoder_hidden)
                if self.has_attention
                else None
            )
        except ValueError as e:
            raise ValueError(
                f"{e}: the encoder states are 2 x model.encoder_hidden = {memory_dim}, "
                f"model.decoder_hidden = {decoder_hidden}"
            ) from None
        self.combine = nn.Linear(
            decoder_hidden + memory_dim, decoder_hidden, bias=False
        )  # W [state; context]
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(decoder_hidden, tgt_vocab, bias=False)
        if tie_embeddings:
            if embedding_dim != decoder_hidden:
                raise ValueError(
                    f"model.tie_embeddings needs embedding_dim ({embedding_dim}) = decoder_hidden "
                    f"({decoder_hidden})"
                )
            self.output.weight = tgt_embedding.weight

    @classmethod
    def from_config(cls, cfg, src_vocab: int, tgt_vocab: int, shared_vocab: bool) -> RNNSeq2Seq:
        """The RNN of a conf/model section (arch: rnn)."""
        return cls(
            src_vocab,
            tgt_vocab,
            style=cfg.style,
            attention=cfg.attention,
            cell=cfg.cell,
            embedding_dim=cfg.embedding_dim,
            encoder_hidden=cfg.encoder_hidden,
            decoder_hidden=cfg.decoder_hidden,
            encoder_layers=cfg.encoder_layers,
            decoder_layers=cfg.decoder_layers,
            dropout=cfg.dropout,
            tie_embeddings=cfg.tie_embeddings,
            shared_vocab=shared_vocab,
            attention_mode=cfg.get("attention_mode", "soft"),
            gumbel_temperature=cfg.get("gumbel_temperature", 1.0),
        )

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> Memory:
        states, final = self.encoder(src_ids, src_mask)
        keys = self.attention.prepare(states) if self.attention is not None else None
        return Memory(states, src_mask, final, keys=keys)

    def initial_state(self, memory: Memory) -> RNNState:
        batch = memory.states.shape[0]
        hidden = (
            torch.tanh(self.bridge(memory.final))[:, None, :]
            .expand(-1, self.decoder_layers, -1)
            .contiguous()
        )
        cell = torch.zeros_like(hidden) if self.cell_type == "lstm" else None
        feed = memory.states.new_zeros(batch, hidden.shape[-1])
        return RNNState(hidden, cell, feed)

    def _rnn_step(self, x: Tensor, state: RNNState) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (B, input) one time step -> top output (B, H), hidden (B, L, H), cell."""
        hidden = state.hidden.transpose(0, 1).contiguous()  # (L, B, H)
        if self.cell_type == "lstm":
            out, (h, c) = self.rnn(x[:, None], (hidden, state.cell.transpose(0, 1).contiguous()))
            return out[:, 0], h.transpose(0, 1), c.transpose(0, 1)
        out, h = self.rnn(x[:, None], hidden)
        return out[:, 0], h.transpose(0, 1), None

    def _attend(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """query (B, H) -> context (B, 2H_enc), weights (B, S) (None without attention)."""
        if self.attention is None:  # the same summary of the source at every step
            return memory.final, None
        context, weights = self.attention(
            query[:, None], memory.states, memory.states, memory.mask, memory.keys
        )
        if self.attention_mode == "soft":
            return context[:, 0], weights[:, 0]
        scores = torch.log(weights[:, 0].clamp_min(1e-30)).masked_fill(~memory.mask, float("-inf"))
        if self.training:  # one position forward, the soft weights' gradient backward
            one = F.gumbel_softmax(scores, tau=self.gumbel_temperature, hard=True)
        else:
            one = F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)
        return (one[:, None] @ memory.states)[:, 0], one

    def _step(
        self, embedded: Tensor, memory: Memory, state: RNNState
    ) -> tuple[Tensor, RNNState, Tensor]:
        """embedded (B, E) previous word -> attentional vector (B, H), new state, weights (B, S)."""
        if self.style == "bahdanau":
            context, weights = self._attend(state.hidden[:, -1], memory)
            top, hidden, cell = self._rnn_step(torch.cat([embedded, context], -1), state)
        elif self.style == "conditional":
            # the first layer's state, updated on the previous word, is the query; the second step
            # starts from it and reads the context
            if self.cell_type == "lstm":
                query, first_cell = self.first_step(
                    embedded, (state.hidden[:, 0], state.cell[:, 0])
                )
                cells = torch.cat([first_cell[:, None], state.cell[:, 1:]], 1)
            else:
                query, cells = self.first_step(embedded, state.hidden[:, 0]), None
            context, weights = self._attend(query, memory)
            hidden = torch.cat([query[:, None], state.hidden[:, 1:]], 1)
            top, hidden, cell = self._rnn_step(context, RNNState(hidden, cells, state.feed))
        else:
            top, hidden, cell = self._rnn_step(torch.cat([embedded, state.feed], -1), state)
            context, weights = self._attend(top, memory)
        attentional = torch.tanh(self.combine(torch.cat([top, context], -1)))
        return attentional, RNNState(hidden, cell, attentional), weights

    def decode(
        self, memory: Memory, tgt_in_ids: Tensor, need_attn: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        state = self.initial_state(memory)
        embedded = self.dropout(self.tgt_embedding(tgt_in_ids))  # (B, T, E)
        outputs, attention = [], []
        for t in range(tgt_in_ids.shape[1]):
            out, state, weights = self._step(embedded[:, t], memory, state)
            outputs.append(out)
            attention.append(weights)
        logits = self.output(self.dropout(torch.stack(outputs, 1)))  # (B, T, V)
        return logits, torch.stack(attention, 1) if need_attn and self.has_attention else None

    def decode_step(
        self, tokens: Tensor, memory: Memory, state: RNNState | None, need_attn: bool = False
    ) -> tuple[Tensor, RNNState, Tensor | None]:
        if state is None:
            state = self.initial_state(memory)
        out, state, weights = self._step(self.dropout(self.tgt_embedding(tokens)), memory, state)
        return self.output(self.dropout(out)), state, weights if need_attn else None
