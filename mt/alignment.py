"""Attention -> word alignments: subword rows and columns merged into words, hard (argmax) links in
Pharaoh `i-j` format, alignment error rate, and heatmaps as PNG figures or terminal shades."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

WORD_START = "\u2581"  # sentencepiece's word-boundary mark
SHADES = " ░▒▓█"


def word_groups(pieces: Sequence[str]) -> list[list[int]]:
    """Indices of the pieces of each word: a new word starts at a piece beginning with '▁'."""
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def word_text(pieces: Sequence[str], group: list[int]) -> str:
    return "".join(pieces[i] for i in group).replace(WORD_START, "") or WORD_START


# how hard links are read from a soft alignment: each target word to the source word it attends most
# ("argmax"); only the links that are strongest both ways — the source word is the target word's
# strongest and the target word the source word's ("mutual": fewer links, more of them right); or
# the mutual links grown as Koehn et al. (2003) grow two directions' links, the rows' strongest
# links as one direction and the columns' as the other ("grow-diag": neighbours of the links that
# align a word still unaligned; "grow-diag-final": then any strongest link of a word still unaligned)
LINK_RULES = ("argmax", "mutual", "grow-diag", "grow-diag-final")


@dataclass
class Alignment:
    """A word-level soft alignment: weights[j, i] is how much target word j attended to source word i."""

    source: list[str]
    target: list[str]
    weights: Tensor  # (len(target), len(source))
    translation: str | None = None  # the translation aligned, when known
    score: float | None = None  # its score, when known
    rule: str = "argmax"  # how hard links are read from the weights: LINK_RULES
    threshold: float = 0.0  # also link every pair weighing at least this (0: none)

    @property
    def links(self) -> list[tuple[int, int]]:
        """Hard links (source index, target index), as `pharaoh()` writes them."""
        return self.hard()

    @classmethod
    def from_subwords(
        cls, src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Tensor
    ) -> Alignment:
        """attention (T, S) over pieces, words found from the pieces' '▁' marks. Source pieces of a
        word are summed (the attention mass the word got); target pieces of a word are averaged
        (one distribution per word). The end-of-sentence token is dropped from both sides."""
        src_pieces, tgt_pieces = list(src_pieces), list(tgt_pieces)
        if src_pieces and src_pieces[-1] == "</s>":
            src_pieces, attention = src_pieces[:-1], attention[:, :-1]
        if tgt_pieces and tgt_pieces[-1] == "</s>":
            tgt_pieces, attention = tgt_pieces[:-1], attention[:-1]
        src_groups, tgt_groups = word_groups(src_pieces), word_groups(tgt_pieces)
        return cls.from_groups(
            [word_text(src_pieces, g) for g in src_groups],
            [word_text(tgt_pieces, g) for g in tgt_groups],
            src_groups,
            tgt_groups,
            attention,
        )

    @classmethod
    def from_groups(
        cls,
        source: list[str],
        target: list[str],
        src_groups: list[list[int]],
        tgt_groups: list[list[int]],
        attention: Tensor,
    ) -> Alignment:
        """Words given with the indices of their pieces in `attention` (T, S): a source word gets
        its pieces' attention mass, a target word the mean of its pieces' rows; a word without
        pieces gets zeros (and no link)."""
        rows, columns = attention.shape
        zeros = attention.new_zeros
        by_source = torch.stack(
            [attention[:, g].sum(1) if g else zeros(rows) for g in src_groups] or [zeros(rows)], 1
        )[:, : len(src_groups)]  # (T, S_words)
        width = len(src_groups)
        weights = (
            torch.stack([by_source[g].mean(0) if g else zeros(width) for g in tgt_groups])
            if tgt_groups
            else zeros(0, width)
        )
        return cls(list(source), list(target), weights)

    def hard(self) -> list[tuple[int, int]]:
        """(source index, target index) links, read by `self.rule` (LINK_RULES), and with a
        `self.threshold` every pair weighing at least that; a word that got no attention at all
        has no link."""
        links = self._by_rule()
        if not self.threshold:
            return links
        confident = (self.weights >= self.threshold).nonzero().tolist()
        more = {(i, j) for j, i in confident} - set(links)
        return sorted([*links, *more], key=lambda link: (link[1], link[0]))

    def _by_rule(self) -> list[tuple[int, int]]:
        if not len(self.target) or not len(self.source):
            return []
        if self.rule not in LINK_RULES:
            raise ValueError(f"link rule {self.rule!r}: one of {', '.join(LINK_RULES)}")
        best = self.weights.argmax(1).tolist()
        has = (self.weights.sum(1) > 0).tolist()
        rows = [(int(i), j) for j, (i, real) in enumerate(zip(best, has, strict=True)) if real]
        if self.rule == "argmax":
            return rows
        back = self.weights.argmax(0).tolist()
        attended = (self.weights.sum(0) > 0).tolist()
        columns = {
            (i, int(j)) for i, (j, real) in enumerate(zip(back, attended, strict=True)) if real
        }
        if self.rule == "mutual":
            return [link for link in rows if link in columns]
        return sorted(
            symmetrize(set(rows), columns, self.rule), key=lambda link: (link[1], link[0])
        )

    def pharaoh(self) -> str:
        """Hard links as 'i-j' pairs (source-target, 0-based), the format of fast_align and Moses."""
        return " ".join(f"{i}-{j}" for i, j in self.hard())

    def terminal(self, width: int = 12) -> str:
        """The heatmap in shade characters: one row per target word, one column per source word."""
        src = [w[:width] for w in self.source]
        label = max((len(w) for w in self.target), default=0)
        cell = max(3, max((len(w) for w in src), default=3))
        lines = []
        # source words written vertically above their columns
        for row in range(max(len(w) for w in src)):
            lines.append(
                " " * (label + 1)
                + "".join(f"{w[row] if row < len(w) else ' ':^{cell}}" for w in src)
            )
        for word, weights in zip(self.target, self.weights.tolist(), strict=True):
            shades = "".join(
                SHADES[min(int(w * len(SHADES)), len(SHADES) - 1)] * (cell - 1) + " "
                for w in weights
            )
            lines.append(f"{word:>{label}} {shades}")
        return "\n".join(lines)

    def figure(self, title: str | None = None):
        """A matplotlib heatmap (source words across, target words down)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        longest = max((len(w) for w in self.source), default=1)
        size = (1.6 + 0.6 * len(self.source), 1.4 + 0.45 * len(self.target) + 0.07 * longest)
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.imshow(self.weights.numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_xticks(range(len(self.source)), self.source, rotation=50)
        ax.set_yticks(range(len(self.target)), self.target)
        ax.xaxis.tick_top()
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("left")
        if title:
            ax.set_xlabel(title, fontsize=9)
        return fig

    def save_png(self, path, title: str | None = None) -> None:
        from mt.checkpoint import atomic_write

        fig = self.figure(title)
        atomic_write(path, lambda f: fig.savefig(f, format="png"))


def shifted(attention: Tensor) -> Tensor:
    """Shift-att (Chen et al. 2020): the row of target token t becomes the row of the step whose
    input is t — the step after the one that predicted it; the last keeps its own row."""
    if attention.shape[0] < 2:
        return attention
    return torch.cat([attention[1:], attention[-1:]])


# how attention rows are read for an alignment: the step that predicts a word, or the step that
# reads it (model.align_method, `mt align --method`)
METHODS = {"attention": lambda attention: attention, "shift": shifted}


def diagonal_prior(weights: Tensor, strength: float) -> Tensor:
    """Word-level weights (T, S) times fast_align's diagonal prior exp(-strength |i/S - j/T|)
    (word centres), each row rescaled to the mass it had: links favour the diagonal as strongly as
    `strength` says (0: unchanged)."""
    rows, columns = weights.shape
    if not strength or not rows or not columns:
        return weights
    j = (torch.arange(rows, dtype=weights.dtype) + 0.5) / rows
    i = (torch.arange(columns, dtype=weights.dtype) + 0.5) / columns
    weighted = weights * torch.exp(-strength * (j[:, None] - i[None, :]).abs())
    mass = weights.sum(1, keepdim=True)
    return weighted * (mass / weighted.sum(1, keepdim=True).clamp_min(1e-30))


@dataclass(frozen=True)
class Reading:
    """How a hypothesis's attention is read into a word alignment — model.align_method,
    align_prior, align_links and align_threshold; `mt align --method --diagonal --links
    --threshold`."""

    method: str = "attention"  # METHODS: the row of the step that predicts a word, or that reads it
    prior: float = 0.0  # a diagonal prior's strength (0: none)
    links: str = "argmax"  # LINK_RULES: how hard links are picked
    threshold: float = 0.0  # links weighing at least this are kept too, whatever the rule (0: none)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"alignment method {self.method!r}: one of {', '.join(METHODS)}")
        if not self.prior >= 0:
            raise ValueError(f"diagonal prior {self.prior}: a strength of 0 (none) or more")
        if self.links not in LINK_RULES:
            raise ValueError(f"link rule {self.links!r}: one of {', '.join(LINK_RULES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"link threshold {self.threshold}: a weight from 0 (none) to 1")

    @classmethod
    def of(
        cls,
        model_cfg,
        method: str | None = None,
        prior: float | None = None,
        links: str | None = None,
        threshold: float | None = None,
    ) -> Reading:
        """The reading a model config names (its align_* keys), the arguments not None instead."""
        return cls(
            method or model_cfg.get("align_method", "attention"),
            float(model_cfg.get("align_prior", 0.0) if prior is None else prior),
            links or model_cfg.get("align_links", "argmax"),
            float(model_cfg.get("align_threshold", 0.0) if threshold is None else threshold),
        )

    def rows(self, attention: Tensor) -> Tensor:
        """Piece-level attention (T, S) with the rows this reading takes for each target piece."""
        return METHODS[self.method](attention.float())

    def words(self, alignment: Alignment) -> Alignment:
        """A word-level alignment weighted by the prior, its links picked by this reading's rule
        and threshold."""
        weights = diagonal_prior(alignment.weights, self.prior)
        return replace(alignment, weights=weights, rule=self.links, threshold=self.threshold)


Links = set[tuple[int, int]]


def parse_pharaoh(text: str, one_based: bool = False) -> tuple[Links, Links]:
    """'0-1 2?2 3p4' -> sure links {(0, 1)} and possible links {(2, 2), (3, 4)} ('?' or 'p' marks a
    possible link); `one_based` numbers words from 1."""
    sure, possible = set(), set()
    shift = 1 if one_based else 0
    for item in text.split():
        links = possible if ("?" in item or "p" in item) else sure
        i, j = item.replace("?", "-").replace("p", "-").split("-")
        links.add((int(i) - shift, int(j) - shift))
    return sure, possible


NAACL_LINK = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)(\s+[SP])?(\s+[\d.]+)?\s*$")
NAACL_SENTENCE = re.compile(r"^\s*<s snum=\s*(\d+)\s*>(.*)</s>\s*$")


def read_sentences(path: str | Path) -> list[str]:
    """One sentence per line; the `<s snum=N> ... </s>` wrapper of the NAACL 2003 files is removed."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [m.group(2).strip() if (m := NAACL_SENTENCE.match(line)) else line for line in lines]


def read_gold(
    path: str | Path, sentences: int, one_based: bool = False
) -> tuple[list[Links], list[Links]]:
    """Gold alignments of `sentences` sentence pairs -> (sure, possible) link sets per sentence,
    0-based, possible ⊇ nothing of sure. Two formats: Pharaoh (a line per sentence: `i-j` sure,
    `i?j` or `ipj` possible; `one_based` if numbered from 1), or the NAACL 2003 `.wa` format (a line
    per link: `sentence source target [S|P]`, 1-based, sentences numbered in file order)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    links = [line for line in lines if line.strip()]
    if links and all(NAACL_LINK.match(line) for line in links):
        numbers: dict[int, int] = {}
        sure: list[Links] = [set() for _ in range(sentences)]
        possible: list[Links] = [set() for _ in range(sentences)]
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            m = NAACL_LINK.match(line)
            index = numbers.setdefault(int(m.group(1)), len(numbers))
            if index >= sentences:
                raise ValueError(
                    f"{path}, line {n}: sentence {m.group(1)} is beyond the {sentences} sentences"
                )
            kind = (m.group(4) or "S").strip()
            link = (int(m.group(2)) - 1, int(m.group(3)) - 1)
            (sure if kind == "S" else possible)[index].add(link)
        return sure, possible
    if len(lines) != sentences:
        raise ValueError(f"{path}: {len(lines)} lines of links for {sentences} sentence pairs")
    sure, possible = [], []
    for n, line in enumerate(lines, 1):
        try:
            s, p = parse_pharaoh(line, one_based)
        except ValueError:
            raise ValueError(
                f"{path}, line {n}: not Pharaoh links (i-j, i?j): {line[:60]!r}"
            ) from None
        sure.append(s)
        possible.append(p)
    return sure, possible


def alignment_scores(
    predicted: Iterable[Links], sure: Iterable[Links], possible: Iterable[Links] | None = None
) -> dict[str, float]:
    """AER, precision and recall (Och and Ney 2003), summed over sentences; possible ⊇ sure is
    assumed (sure links are added to the possible ones)."""
    predicted, sure = list(predicted), list(sure)
    possible = (
        [s | p for s, p in zip(sure, possible, strict=True)] if possible is not None else sure
    )
    a_s = sum(len(a & s) for a, s in zip(predicted, sure, strict=True))
    a_p = sum(len(a & p) for a, p in zip(predicted, possible, strict=True))
    n_a, n_s = sum(map(len, predicted)), sum(map(len, sure))
    return {
        "aer": 1.0 - (a_s + a_p) / (n_a + n_s) if n_a + n_s else 0.0,
        "precision": a_p / n_a if n_a else 0.0,
        "recall": a_s / n_s if n_s else 0.0,
        "links": n_a,
    }


def alignment_error_rate(
    predicted: Iterable[Links], sure: Iterable[Links], possible: Iterable[Links] | None = None
) -> float:
    """AER (Och and Ney 2003): 1 - (|A∩S| + |A∩P|) / (|A| + |S|), summed over sentences; S ⊆ P."""
    return alignment_scores(predicted, sure, possible)["aer"]


def agreement(forward: Alignment, backward: Alignment) -> Alignment:
    """Both directions' soft alignments as one: weights[j, i] = sqrt(forward[j, i] * backward[i, j])
    — high only where target word j attends to source word i and i to j (the agreement of Liang et
    al. 2006, taken at reading time). `backward` aligns forward's target words (as its source) to
    its source words; the links are read by forward's rule."""
    weights = backward.weights.T
    if weights.shape != forward.weights.shape:
        raise ValueError(
            f"the reverse alignment is {weights.shape[1]} x {weights.shape[0]} words, the forward "
            f"{forward.weights.shape[0]} x {forward.weights.shape[1]}: not the same sentence pair"
        )
    return replace(forward, weights=(forward.weights * weights).clamp_min(0).sqrt())


def combine(forward: Alignment, backward: Alignment, method: str, threshold: float = 0.0) -> Links:
    """Both directions' hard links (each read by its rule, without its threshold) symmetrized by
    `method`, plus every word pair whose agreement (`agreement`) weighs at least `threshold`: pairs
    the two directions' attention agree on strongly, which a hard symmetrization can drop (the
    intersection keeps only each direction's one guess per word)."""
    links = symmetrize(
        set(replace(forward, threshold=0.0).links),
        {(i, j) for j, i in replace(backward, threshold=0.0).links},
        method,
    )
    if threshold:
        confident = (agreement(forward, backward).weights >= threshold).nonzero().tolist()
        links |= {(i, j) for j, i in confident}
    return links


NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


SYMMETRIZATIONS = ("intersect", "union", "grow-diag", "grow-diag-final")


def symmetrize(forward: Links, backward: Links, method: str) -> Links:
    """Combine the links of both directions (each as (source, target)): intersection, union,
    grow-diag (Koehn et al. 2003: from the intersection, add neighbouring union links that align a
    word still unaligned) or grow-diag-final (then any union link whose source or target word is
    unaligned)."""
    if method == "intersect":
        return forward & backward
    if method == "union":
        return forward | backward
    if method not in ("grow-diag", "grow-diag-final"):
        raise ValueError(f"symmetrization {method!r}: {', '.join(SYMMETRIZATIONS)}")
    union = forward | backward
    links = set(forward & backward)
    aligned_src = {i for i, _ in links}
    aligned_tgt = {j for _, j in links}
    added = True
    while added:
        added = False
        for i, j in sorted(links):
            for di, dj in NEIGHBOURS:
                new = (i + di, j + dj)
                if (
                    new in union
                    and new not in links
                    and (new[0] not in aligned_src or new[1] not in aligned_tgt)
                ):
                    links.add(new)
                    aligned_src.add(new[0])
                    aligned_tgt.add(new[1])
                    added = True
    if method == "grow-diag":
        return links
    for direction in (forward, backward):
        for i, j in sorted(direction):
            if (i not in aligned_src or j not in aligned_tgt) and (i, j) not in links:
                links.add((i, j))
                aligned_src.add(i)
                aligned_tgt.add(j)
    return links
