"""Attention -> word alignments: subword rows and columns merged into words, hard (argmax) links in
Pharaoh `i-j` format, alignment error rate, and heatmaps as PNG figures or terminal shades."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


@dataclass
class Alignment:
    """A word-level soft alignment: weights[j, i] is how much target word j attended to source word i."""

    source: list[str]
    target: list[str]
    weights: Tensor  # (len(target), len(source))
    translation: str | None = None  # the translation aligned, when known
    score: float | None = None  # its score, when known

    @property
    def links(self) -> list[tuple[int, int]]:
        """Hard links (source index, target index), as `pharaoh()` writes them."""
        return self.hard()

    @classmethod
    def from_subwords(
        cls, src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Tensor
    ) -> Alignment:
        """attention (T, S) over pieces. Source pieces of a word are summed (the attention mass the
        word got); target pieces of a word are averaged (one distribution per word). The end-of-sentence
        token is dropped from both sides."""
        src_pieces, tgt_pieces = list(src_pieces), list(tgt_pieces)
        if src_pieces and src_pieces[-1] == "</s>":
            src_pieces, attention = src_pieces[:-1], attention[:, :-1]
        if tgt_pieces and tgt_pieces[-1] == "</s>":
            tgt_pieces, attention = tgt_pieces[:-1], attention[:-1]
        src_groups, tgt_groups = word_groups(src_pieces), word_groups(tgt_pieces)
        columns = torch.stack([attention[:, g].sum(1) for g in src_groups], 1)  # (T, S_words)
        weights = (
            torch.stack([columns[g].mean(0) for g in tgt_groups]) if tgt_groups else columns[:0]
        )
        return cls(
            [word_text(src_pieces, g) for g in src_groups],
            [word_text(tgt_pieces, g) for g in tgt_groups],
            weights,
        )

    def hard(self) -> list[tuple[int, int]]:
        """(source index, target index) links: each target word to the source word it attends most."""
        return (
            [(int(i), j) for j, i in enumerate(self.weights.argmax(1).tolist())]
            if len(self.target)
            else []
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


def parse_pharaoh(text: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """'0-1 2?2' -> sure links {(0, 1)} and possible links {(2, 2)} ('?' marks a possible link)."""
    sure, possible = set(), set()
    for item in text.split():
        links = possible if "?" in item else sure
        i, j = item.replace("?", "-").split("-")
        links.add((int(i), int(j)))
    return sure, possible


def alignment_error_rate(
    predicted: Iterable[set[tuple[int, int]]],
    sure: Iterable[set[tuple[int, int]]],
    possible: Iterable[set[tuple[int, int]]] | None = None,
) -> float:
    """AER (Och and Ney 2003): 1 - (|A∩S| + |A∩P|) / (|A| + |S|), summed over sentences; S ⊆ P."""
    predicted, sure = list(predicted), list(sure)
    possible = (
        [s | p for s, p in zip(sure, possible, strict=True)] if possible is not None else sure
    )
    a_s = sum(len(a & s) for a, s in zip(predicted, sure, strict=True))
    a_p = sum(len(a & p) for a, p in zip(predicted, possible, strict=True))
    total = sum(map(len, predicted)) + sum(map(len, sure))
    return 1.0 - (a_s + a_p) / total if total else 0.0
