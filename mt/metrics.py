"""Translation metrics by name: sacreBLEU's BLEU, chrF and TER with their signatures, and the
tokenized, lowercased BLEU that papers report (Moses tokenizer + multi-bleu conventions).

A new metric is one function registered with `@metric(name, higher_is_better)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF, TER
from sacremoses import MosesTokenizer

# (hypotheses, references, target language) -> (score, signature)
MetricFn = Callable[[list[str], list[str], str], tuple[float, str]]


@dataclass(frozen=True)
class Metric:
    name: str
    compute: MetricFn
    higher_is_better: bool


METRICS: dict[str, Metric] = {}


def metric(name: str, higher_is_better: bool = True) -> Callable[[MetricFn], MetricFn]:
    """Register a corpus-level metric under `name`."""

    def register(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, fn, higher_is_better)
        return fn

    return register


def get(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    return METRICS[name]


def _sacrebleu(scorer, hyps: list[str], refs: list[str]) -> tuple[float, str]:
    return scorer.corpus_score(hyps, [refs]).score, str(scorer.get_signature())


@metric("bleu")
def bleu(hyps: list[str], refs: list[str], lang: str) -> tuple[float, str]:
    return _sacrebleu(BLEU(), hyps, refs)


@metric("bleu_long")
def bleu_long(hyps: list[str], refs: list[str], lang: str) -> tuple[float, str]:
    """BLEU on the longer half of the sentences, by reference length in words (ties: the later
    sentences): how a model does beyond the short sentences that most corpora are made of."""
    by_length = sorted(range(len(refs)), key=lambda i: len(refs[i].split()))
    longer = sorted(by_length[len(refs) - max(len(refs) // 2, 1) :]) if refs else []
    value, signature = _sacrebleu(BLEU(), [hyps[i] for i in longer], [refs[i] for i in longer])
    return value, f"longer-half|{signature}"


@metric("chrf")
def chrf(hyps: list[str], refs: list[str], lang: str) -> tuple[float, str]:
    return _sacrebleu(CHRF(), hyps, refs)


@metric("ter", higher_is_better=False)
def ter(hyps: list[str], refs: list[str], lang: str) -> tuple[float, str]:
    return _sacrebleu(TER(), hyps, refs)


@functools.lru_cache(maxsize=8)
def _moses(lang: str) -> MosesTokenizer:
    return MosesTokenizer(lang=lang)


def moses_tokenized_lowercase(texts: Sequence[str], lang: str) -> list[str]:
    tokenizer = _moses(lang)
    return [tokenizer.tokenize(t, return_str=True, escape=False).lower() for t in texts]


@metric("bleu_tok_lc")
def bleu_tok_lc(hyps: list[str], refs: list[str], lang: str) -> tuple[float, str]:
    """BLEU on Moses-tokenized, lowercased text: comparable with papers' multi-bleu figures."""
    value, signature = _sacrebleu(
        BLEU(tokenize="none", force=True),
        moses_tokenized_lowercase(hyps, lang),
        moses_tokenized_lowercase(refs, lang),
    )
    return value, f"moses-tok-{lang}+lc|{signature}"


def score(
    hypotheses: Sequence[str],
    references: Sequence[str],
    lang: str,
    names: Sequence[str] = ("bleu", "chrf", "ter", "bleu_tok_lc"),
) -> dict:
    """Corpus-level scores of detokenized hypotheses against one reference each.

    Returns {name: score for each of `names`, "signatures": {name: ...}, "sentences": n}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    hyps, refs = list(hypotheses), list(references)
    result: dict = {"signatures": {}, "sentences": len(hyps)}
    for name in names:
        result[name], result["signatures"][name] = get(name).compute(hyps, refs, lang)
    return result
