"""A generated toy language pair: English-like sentences and French-like translations in which
adjectives follow their nouns ("the black cat ate the mouse" -> "le chat noir a mangé la souris").

Small enough to learn in about a minute on a laptop CPU, and its word alignments are known, so it
serves the tests and `make demo` without any download.
"""

from __future__ import annotations

import random

# noun -> (French noun, gender)
NOUNS = {
    "cat": ("chat", "m"),
    "mouse": ("souris", "f"),
    "dog": ("chien", "m"),
    "bird": ("oiseau", "m"),
    "cow": ("vache", "f"),
    "fish": ("poisson", "m"),
    "girl": ("fille", "f"),
    "boy": ("garçon", "m"),
    "house": ("maison", "f"),
    "car": ("voiture", "f"),
    "apple": ("pomme", "f"),
    "horse": ("cheval", "m"),
}
# adjective -> (masculine, feminine); all of them follow the noun in the target language
ADJECTIVES = {
    "black": ("noir", "noire"),
    "white": ("blanc", "blanche"),
    "green": ("vert", "verte"),
    "red": ("rouge", "rouge"),
    "blue": ("bleu", "bleue"),
    "grey": ("gris", "grise"),
    "happy": ("heureux", "heureuse"),
    "tired": ("fatigué", "fatiguée"),
}
VERBS = {
    "ate": "a mangé",
    "saw": "a vu",
    "chased": "a chassé",
    "found": "a trouvé",
    "liked": "a aimé",
    "bit": "a mordu",
    "followed": "a suivi",
}
DETERMINERS = {"the": {"m": "le", "f": "la"}, "a": {"m": "un", "f": "une"}}


def noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    det, noun = rng.choice(list(DETERMINERS)), rng.choice(list(NOUNS))
    french_noun, gender = NOUNS[noun]
    src, tgt = [det], [DETERMINERS[det][gender]]
    if rng.random() < 0.6:
        adjective = rng.choice(list(ADJECTIVES))
        src += [adjective, noun]
        tgt += [french_noun, ADJECTIVES[adjective][gender == "f"]]
    else:
        src.append(noun)
        tgt.append(french_noun)
    return src, tgt


def sentence(rng: random.Random) -> tuple[str, str]:
    """One pair: subject, verb, object, each side capitalized and ending in a full stop."""
    subject, verb, obj = noun_phrase(rng), rng.choice(list(VERBS)), noun_phrase(rng)
    src = subject[0] + [verb] + obj[0]
    tgt = subject[1] + VERBS[verb].split() + obj[1]
    return " ".join(src).capitalize() + ".", " ".join(tgt).capitalize() + "."


def generate(sizes: dict[str, int], seed: int) -> dict[str, list[tuple[str, str]]]:
    """Disjoint splits of distinct pairs: no source sentence occurs in two splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits = {}
    for name, size in sizes.items():
        pairs = []
        while len(pairs) < size:
            src, tgt = sentence(rng)
            if src not in seen:
                seen.add(src)
                pairs.append((src, tgt))
        splits[name] = pairs
    return splits


def _phrase_links(src: list[str], tgt: list[str], i: int, j: int) -> tuple[set, int, int]:
    """Links of the noun phrase at source word i and target word j; the words after it."""
    if src[i + 1].lower() in ADJECTIVES:  # det adj noun -> det noun adj
        return {(i, j), (i + 1, j + 2), (i + 2, j + 1)}, i + 3, j + 3
    return {(i, j), (i + 1, j + 1)}, i + 2, j + 2


def alignment(src: str, tgt: str) -> set[tuple[int, int]]:
    """The true word alignment of a generated pair, (source word, target word) over whitespace
    words: determiners, nouns and adjectives to their translations (adjective and noun cross), the
    verb to both words of its translation, the sentence to its sentence."""
    s, t = src.split(), tgt.split()
    subject, i, j = _phrase_links(s, t, 0, 0)
    verb = {(i, j), (i, j + 1)}
    obj, _, _ = _phrase_links(s, t, i + 1, j + 2)
    return subject | verb | obj
