"""build_model: the one place that knows every architecture."""

from __future__ import annotations

from omegaconf import DictConfig

from mt.models.base import DecoderState, Memory, Seq2Seq
from mt.models.rnn import RNNSeq2Seq
from mt.models.transformer import Transformer

__all__ = ["DecoderState", "Memory", "ModelConfigError", "Seq2Seq", "build_model"]


class ModelConfigError(ValueError):
    """A model config that cannot be built; the message names the keys."""


def build_model(cfg: DictConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool) -> Seq2Seq:
    """The model described by `cfg` (a conf/model entry) for the given vocabulary sizes."""
    try:
        return _build(cfg, src_vocab, tgt_vocab, shared_vocab)
    except ValueError as e:
        raise ModelConfigError(str(e)) from None


def _build(cfg: DictConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool) -> Seq2Seq:
    if cfg.arch == "transformer":
        return Transformer(
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
            align_layer=cfg.align_layer,
            align_head=cfg.align_head,
        )
    if cfg.arch == "rnn":
        return RNNSeq2Seq(
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
        )
    raise ValueError(f"model.arch: unknown architecture {cfg.arch!r} (transformer or rnn)")
