"""Translation metrics: sacreBLEU's BLEU, chrF and TER with their signatures, plus the tokenized,
lowercased BLEU that papers report (Moses tokenizer + multi-bleu conventions), for comparison."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER
from sacremoses import MosesTokenizer


@functools.lru_cache(maxsize=8)
def _moses(lang: str) -> MosesTokenizer:
    return MosesTokenizer(lang=lang)


def moses_tokenized_lowercase(texts: Sequence[str], lang: str) -> list[str]:
    tokenizer = _moses(lang)
    return [tokenizer.tokenize(t, return_str=True, escape=False).lower() for t in texts]


def score(
    hypotheses: Sequence[str], references: Sequence[str], lang: str, ter: bool = True
) -> dict:
    """Corpus-level scores of detokenized hypotheses against one reference each.

    Returns {"bleu", "chrf", "ter", "bleu_tok_lc", "signatures": {...}, "sentences"}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    hyps, refs = list(hypotheses), [list(references)]
    bleu, chrf = BLEU(), CHRF()
    result = {
        "bleu": bleu.corpus_score(hyps, refs).score,
        "chrf": chrf.corpus_score(hyps, refs).score,
        "signatures": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())},
        "sentences": len(hyps),
    }
    if ter:
        metric = TER()
        result["ter"] = metric.corpus_score(hyps, refs).score
        result["signatures"]["ter"] = str(metric.get_signature())
    tokenized = BLEU(tokenize="none", force=True)
    result["bleu_tok_lc"] = tokenized.corpus_score(
        moses_tokenized_lowercase(hyps, lang), [moses_tokenized_lowercase(references, lang)]
    ).score
    result["signatures"]["bleu_tok_lc"] = f"moses-tok-{lang}+lc|" + str(tokenized.get_signature())
    return result
