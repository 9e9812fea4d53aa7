"""Write a synthetic parallel corpus of N sentence pairs (DIR/all.en, DIR/all.fr), to measure how mt
scales with the corpus without downloading one (`data=synthetic data.local=DIR`).

    python scripts/make_corpus.py --pairs 1000000 --out data/synthetic-1M

Words are drawn from a 30,000-word invented vocabulary with Zipf frequencies (a few words are
everywhere, most are rare, as in text), 3–40 words a sentence; the "French" side maps each word to
its own invented translation and puts every adjective-like word after the next word, so there is
something to learn and to align. The same --seed writes the same files; about 1 GB per 10M pairs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

SYLLABLES_EN = [
    "ba",
    "be",
    "bi",
    "bo",
    "bu",
    "da",
    "de",
    "di",
    "do",
    "du",
    "ka",
    "ke",
    "ki",
    "ko",
    "ku",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "mu",
    "na",
    "ne",
    "ni",
    "no",
    "nu",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "su",
    "ta",
    "te",
    "ti",
    "to",
    "tu",
]
SYLLABLES_FR = [
    "pa",
    "pe",
    "pi",
    "po",
    "pu",
    "ga",
    "ge",
    "gi",
    "go",
    "gu",
    "fa",
    "fe",
    "fi",
    "fo",
    "fu",
    "va",
    "ve",
    "vi",
    "vo",
    "vu",
    "za",
    "ze",
    "zi",
    "zo",
    "zu",
    "ja",
    "je",
    "ji",
    "jo",
    "ju",
    "cha",
    "che",
    "chi",
    "cho",
    "chu",
]


def vocabulary(size: int, syllables: list[str], rng: np.random.Generator) -> list[str]:
    """`size` distinct invented words of 1–4 syllables."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(syllables, rng.integers(1, 5)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    en = np.array(vocabulary(args.vocab, SYLLABLES_EN, rng), dtype=object)
    fr = np.array(vocabulary(args.vocab, SYLLABLES_FR, rng), dtype=object)
    weights = 1.0 / (np.arange(args.vocab) + 2.7) ** 1.07
    cumulative = np.cumsum(weights / weights.sum())
    adjective = rng.random(args.vocab) < 0.15

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = {lang: args.out / f".all.{lang}.tmp" for lang in ("en", "fr")}
    with open(tmp["en"], "w") as fen, open(tmp["fr"], "w") as ffr:
        written = 0
        while written < args.pairs:
            n = min(100_000, args.pairs - written)
            lengths = np.clip(rng.poisson(9, n) + 3, 3, 40)
            ids = np.searchsorted(cumulative, rng.random(lengths.sum()))
            ids = np.minimum(ids, args.vocab - 1)
            src_lines, tgt_lines = [], []
            for sentence in np.split(ids, np.cumsum(lengths)[:-1]):
                target = sentence.copy()
                k = 0
                while k < len(target) - 1:  # an adjective-like word goes after the next word
                    if adjective[target[k]]:
                        target[k], target[k + 1] = target[k + 1], target[k]
                        k += 2
                    else:
                        k += 1
                src_lines.append(" ".join(en[sentence]).capitalize() + " .")
                tgt_lines.append(" ".join(fr[target]).capitalize() + " .")
            fen.write("\n".join(src_lines) + "\n")
            ffr.write("\n".join(tgt_lines) + "\n")
            written += n
    for lang, path in tmp.items():
        os.replace(path, args.out / f"all.{lang}")
    print(f"wrote {written:,} pairs to {args.out}/all.en, all.fr")


if __name__ == "__main__":
    main()
