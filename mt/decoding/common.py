"""What every decoding strategy shares: its options, the hypothesis it returns, and one step that
turns the model's logits into log-probabilities with the masks every strategy needs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from mt.models.base import Seq2Seq
from mt.tokenizer import BOS, EOS, PAD


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; built from a run's `decode` config section (`from_config`)."""

    strategy: str = "beam"  # greedy | beam | sample | forced (mt.decoding.STRATEGIES)
    beam_size: int = 5
    nbest: int = 1  # hypotheses returned per sentence (beam: the best; sample: that many draws)
    length_penalty: float = 1.0  # hypotheses scored by log p / length^alpha
    max_len_a: float = 1.5  # a target may be at most a * source length + b tokens long
    max_len_b: int = 10
    temperature: float = 1.0  # sampling: < 1 sharper, > 1 flatter
    top_k: int = 0  # sampling: only the k most probable tokens (0: all)
    top_p: float = 1.0  # sampling: only the smallest set of tokens with this much probability
    batch_size: int = 64  # sentences decoded together

    @classmethod
    def from_config(cls, decode_cfg, **overrides) -> DecodeOptions:
        """Options from a `decode` config section; keys it lacks take their defaults, and
        `overrides` that are None are ignored."""
        names = {f.name for f in fields(cls)}
        values = {k: decode_cfg[k] for k in names if k in decode_cfg}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class Hypothesis:
    """One translation: target ids ending in EOS (unless cut at the length limit), its length-normalized
    log-probability, and the cross-attention rows that produced each token: (len(tokens), S_real)."""

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def normalized(log_prob: float, length: int, length_penalty: float) -> float:
    """Score of a hypothesis: log p / length^alpha (alpha 0: raw log p; 1: per-token average)."""
    return log_prob / max(length, 1) ** length_penalty


def max_lengths(src: Tensor, options: DecodeOptions, model: Seq2Seq) -> Tensor:
    """(B,) the longest target allowed for each source: a * real source length + b, within what the
    model can take."""
    limits = (options.max_len_a * (src != PAD).sum(1) + options.max_len_b).long()
    return limits.clamp(max=model.max_positions) if model.max_positions else limits


def step_log_probs(logits: Tensor, at_limit: Tensor | None = None) -> Tensor:
    """(N, V) logits of one step -> log-probabilities every strategy may use.

    PAD and BOS are never produced (the distribution is renormalized without them); where `at_limit`
    (N,) is set the target has reached its length limit, and only EOS may come (its probability is
    the model's, not renormalized, so a cut hypothesis pays for it).
    """
    logits = logits.float()
    logits[:, PAD] = float("-inf")
    logits[:, BOS] = float("-inf")
    log_probs = torch.log_softmax(logits, dim=-1)
    if at_limit is not None and bool(at_limit.any()):
        only_eos = torch.full_like(log_probs[0], float("-inf"))
        only_eos[EOS] = 0.0
        log_probs[at_limit] = log_probs[at_limit] + only_eos
    return log_probs
