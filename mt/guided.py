"""Guided alignment (Garg et al. 2019): the cross-attention the model aligns with (its
`model.align_layer` / `model.align_head` reading) is trained to agree with a statistical aligner's
links on the training corpus, so that reading it gives word alignments worth having.

The training split is cut into words (runs of letters and digits, and single punctuation marks),
aligned with eflomal (`pip install 'mt[align]'`) in both directions and symmetrized; each word link
then links every sentencepiece piece of the two words (pieces and words are matched by their byte
spans in the text). The links are a cached stage, like the token ids: a run and its resumption
train on the same links. eflomal samples at random without a seed, so rebuilding the stage gives
slightly different links.

`links_in_context` gives the same aligner's links of other pairs (those `mt align --adapt-guided`
adapts a model to): learnt together with the training split, as an unsupervised aligner learns.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mt.alignment import Links, parse_pharaoh, symmetrize
from mt.errors import MTError

log = logging.getLogger(__name__)

ALIGNERS = ("eflomal",)
WORD = re.compile(r"\w+|[^\w\s]")

Span = tuple[int, int]  # [begin, end) in bytes of the UTF-8 text


class GuidedAlignmentError(MTError):
    """Guided alignment cannot run as configured; the message says what to install or set."""


def words(text: str) -> tuple[list[str], list[Span]]:
    """The aligner's words of `text` (lower-cased) and their byte spans."""
    tokens, spans = [], []
    for m in WORD.finditer(text):
        begin = len(text[: m.start()].encode())
        tokens.append(m.group().lower())
        spans.append((begin, begin + len(m.group().encode())))
    return tokens, spans


def pieces_of_words(piece_spans: Sequence[Span], word_spans: Sequence[Span]) -> list[list[int]]:
    """For each piece, the words whose bytes it overlaps (a piece of only a space overlaps none)."""
    out, w = [], 0
    for begin, end in piece_spans:
        while w < len(word_spans) and word_spans[w][1] <= begin:
            w += 1
        hits, k = [], w
        while k < len(word_spans) and word_spans[k][0] < end:
            if word_spans[k][1] > begin:
                hits.append(k)
            k += 1
        out.append(hits)
    return out


def piece_links(
    links: Links, src_words: list[list[int]], tgt_words: list[list[int]]
) -> list[tuple[int, int]]:
    """Word links (source word, target word) -> piece links (target piece, source piece): a pair of
    pieces is linked when a word of one is linked to a word of the other."""
    by_target: dict[int, set[int]] = {}
    for i, j in links:
        by_target.setdefault(j, set()).add(i)
    out = []
    for t, tw in enumerate(tgt_words):
        linked = set().union(*(by_target.get(j, set()) for j in tw)) if tw else set()
        if linked:
            out += [(t, s) for s, sw in enumerate(src_words) if linked.intersection(sw)]
    return out


def run_eflomal(
    src: list[list[str]], tgt: list[list[str]], how: str, last: int | None = None
) -> tuple[list[Links], float]:
    """eflomal's links of the word-split pairs, both directions symmetrized by `how` (of the `last`
    pairs only, when given); and seconds."""
    try:
        import eflomal
    except ImportError:
        raise GuidedAlignmentError(
            "train.guided_alignment=eflomal needs eflomal: pip install 'mt[align]' (or eflomal)"
        ) from None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # eflomal skips nothing but cannot read an empty line as a sentence: a lone token stands in
        for name, side in (("src", src), ("tgt", tgt)):
            (tmp / name).write_text("".join((" ".join(s) or "∅") + "\n" for s in side))
        with open(tmp / "src") as s, open(tmp / "tgt") as t:
            try:
                eflomal.Aligner().align(
                    s, t, links_filename_fwd=str(tmp / "fwd"), links_filename_rev=str(tmp / "rev")
                )
            except subprocess.CalledProcessError as e:
                raise GuidedAlignmentError(f"eflomal failed: {e}") from None
        fwd = (tmp / "fwd").read_text().splitlines()
        rev = (tmp / "rev").read_text().splitlines()
    if len(fwd) != len(src) or len(rev) != len(src):
        raise GuidedAlignmentError(
            f"eflomal wrote {len(fwd)}/{len(rev)} lines of links for {len(src)} sentence pairs"
        )
    first = len(src) - (len(src) if last is None else last)
    links = [
        symmetrize(parse_pharaoh(f)[0], parse_pharaoh(r)[0], how) if s and t else set()
        for f, r, s, t in zip(fwd[first:], rev[first:], src[first:], tgt[first:], strict=True)
    ]
    return links, time.perf_counter() - start


def group_links(
    links: Links, src_groups: Sequence[Sequence[int]], tgt_groups: Sequence[Sequence[int]]
) -> list[tuple[int, int]]:
    """Word links (source word i, target word j) -> piece links (target piece, source piece), where
    word i is made of pieces src_groups[i] (the groups `Tokenizer.encode_words` gives)."""
    return sorted({(t, s) for i, j in links for t in tgt_groups[j] for s in src_groups[i]})


def check_aligner(aligner: str, key: str = "") -> None:
    """One clear error for an aligner mt does not know; `key` names the setting it came from."""
    if aligner not in ALIGNERS:
        raise GuidedAlignmentError(f"{key}unknown aligner {aligner!r} ({', '.join(ALIGNERS)})")


def links_in_context(
    corpus_src: Sequence[str],
    corpus_tgt: Sequence[str],
    sources: Sequence[Sequence[str]],
    targets: Sequence[Sequence[str]],
    symmetrization: str,
    aligner: str = "eflomal",
) -> list[Links]:
    """The aligner's word links (source word, target word) of the pairs `sources` / `targets` (given
    as words, kept as they are but lower-cased), learnt together with a corpus of raw text pairs
    (cut into `words`): a few pairs alone are too little for an unsupervised aligner."""
    check_aligner(aligner)
    if len(sources) != len(targets) or len(corpus_src) != len(corpus_tgt):
        raise GuidedAlignmentError(
            f"pairs of unequal sides: {len(sources)}/{len(targets)} sentences to align, "
            f"{len(corpus_src)}/{len(corpus_tgt)} in the corpus"
        )
    src = [words(t)[0] for t in corpus_src] + [[w.lower() for w in s] for s in sources]
    tgt = [words(t)[0] for t in corpus_tgt] + [[w.lower() for w in t] for t in targets]
    links, seconds = run_eflomal(src, tgt, symmetrization, last=len(sources))
    log.info(
        "eflomal aligned %d pairs with %d corpus pairs in %.0f s (%s)",
        len(sources),
        len(corpus_src),
        seconds,
        symmetrization,
    )
    return links


def training_links(
    src_texts: Sequence[str],
    tgt_texts: Sequence[str],
    src_pieces: Sequence[Sequence[Span]],
    tgt_pieces: Sequence[Sequence[Span]],
    aligner: str,
    symmetrization: str,
) -> list[list[tuple[int, int]]]:
    """Per training pair, the (target piece, source piece) links of guided alignment."""
    check_aligner(aligner, "train.guided_alignment: ")
    src_split = [words(t) for t in src_texts]
    tgt_split = [words(t) for t in tgt_texts]
    links, seconds = run_eflomal(
        [w for w, _ in src_split], [w for w, _ in tgt_split], symmetrization
    )
    log.info(
        "guided alignment: eflomal aligned %d pairs in %.0f s (%s, %.1f links per pair)",
        len(links),
        seconds,
        symmetrization,
        sum(map(len, links)) / max(len(links), 1),
    )
    return [
        piece_links(word_links, pieces_of_words(sp, s_spans), pieces_of_words(tp, t_spans))
        for word_links, sp, (_, s_spans), tp, (_, t_spans) in zip(
            links, src_pieces, src_split, tgt_pieces, tgt_split, strict=True
        )
    ]
