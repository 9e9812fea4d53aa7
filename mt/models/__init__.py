"""build_model: the one place that knows every architecture."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from mt.errors import MTError
from mt.models.base import DecoderState, Memory, Seq2Seq
from mt.models.rnn import RNNSeq2Seq
from mt.models.transformer import Transformer

__all__ = ["DecoderState", "Memory", "ModelConfigError", "Seq2Seq", "build_model"]


class ModelConfigError(MTError, ValueError):
    """A model config that cannot be built; the message names the keys."""


# arch name -> (model config section, source vocab size, target vocab size, shared vocab) -> model
ARCHITECTURES: dict[str, Callable[[DictConfig, int, int, bool], Seq2Seq]] = {
    "transformer": Transformer.from_config,
    "rnn": RNNSeq2Seq.from_config,
}


def build_model(cfg: DictConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool) -> Seq2Seq:
    """The model described by `cfg` (a conf/model entry) for the given vocabulary sizes."""
    if cfg.arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"model.arch: unknown architecture {cfg.arch!r} ({' or '.join(ARCHITECTURES)})"
        )
    try:
        return ARCHITECTURES[cfg.arch](cfg, src_vocab, tgt_vocab, shared_vocab)
    except ValueError as e:
        raise ModelConfigError(str(e)) from None
