"""Tokenized text back to the ordinary text a model was trained on, with each given word's place in it.

Gold word-alignment sets (the NAACL 2003 Hansards sets among them) are tokenized and lower-cased,
with French contractions split: "de les" for "des", "je ne ai" for "je n'ai", "aujourd' hui",
"lui - même". A model trained on ordinary sentences reads such input as text it has never seen, and
its attention over it is worth little. `untokenize` writes the words back as ordinary text and keeps,
for every given word, the characters it became: the model aligns text it knows, and its links are
mapped back onto the given words (two words contracted into one share its links).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# French words that drop their last vowel before a vowel or a mute h: "le avenir" -> "l'avenir"
ELIDED = {
    "le",
    "la",
    "de",
    "je",
    "me",
    "te",
    "se",
    "ne",
    "que",
    "ce",
    "jusque",
    "lorsque",
    "puisque",
}
# "de les" -> "des", "à le" -> "au", ...
FUSED = {("de", "le"): "du", ("de", "les"): "des", ("à", "le"): "au", ("à", "les"): "aux"}
VOWELS = set("aeiouyhàâäéèêëîïôöùûüœæ")
# no space before these (French keeps its space before ; : ! ?)
CLOSING = {"en": set(",.;:!?)]}%"), "fr": set(",.)]}%")}
CLITICS_EN = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}


@dataclass
class Untokenized:
    """`text`, and for each given word the [begin, end) characters of `text` it became."""

    text: str
    spans: list[tuple[int, int]]


@dataclass
class _Unit:
    """A run of output text and the given words in it, each with its span inside `text`."""

    text: str
    words: list[tuple[int, int, int]]  # (word index, begin, end)

    def join(self, other: _Unit, glue: str = "") -> _Unit:
        """Both units written one after the other: their words keep their own characters."""
        offset = len(self.text) + len(glue)
        moved = [(w, b + offset, e + offset) for w, b, e in other.words]
        return _Unit(self.text + glue + other.text, self.words + moved)

    def fuse(self, text: str) -> _Unit:
        """Both words became one (`text`): each of them is the whole of it."""
        return _Unit(text, [(w, 0, len(text)) for w, _, _ in self.words])


def _starts_with_vowel(word: str) -> bool:
    return bool(word) and word[0].lower() in VOWELS


def _elided(unit: _Unit) -> _Unit:
    """ "le" -> "l'": the word keeps its (shorter) characters."""
    text = unit.text[:-1] + "'"
    return _Unit(text, [(w, 0, len(text)) for w, _, _ in unit.words])


def _french(units: list[_Unit]) -> list[_Unit]:
    """French contractions restored: "de les" -> "des", "à le" -> "au", "ne a" -> "n'a",
    "si il" -> "s'il", "aujourd' hui" -> "aujourd'hui"; "de le avenir" -> "de l'avenir"."""
    out: list[_Unit] = []
    k = 0
    while k < len(units):
        unit = units[k]
        nxt = units[k + 1] if k + 1 < len(units) else None
        after = units[k + 2] if k + 2 < len(units) else None
        low, next_low = unit.text.lower(), nxt.text.lower() if nxt else ""
        if (
            nxt
            and (low, next_low) in FUSED
            and not (next_low == "le" and after and _starts_with_vowel(after.text))
        ):
            fused = FUSED[low, next_low]
            fused = fused[0].upper() + fused[1:] if unit.text[:1].isupper() else fused
            out.append(unit.join(nxt, " ").fuse(fused))
            k += 2
        elif nxt and (
            (low in ELIDED and _starts_with_vowel(nxt.text))
            or (low == "si" and next_low in ("il", "ils"))
        ):
            out.append(_elided(unit).join(nxt))
            k += 2
        elif nxt and len(unit.text) > 1 and unit.text.endswith("'") and nxt.text[:1].isalpha():
            out.append(unit.join(nxt))
            k += 2
        else:
            out.append(unit)
            k += 1
    return out


def _hyphens(units: list[_Unit]) -> list[_Unit]:
    """ "lui - même" -> "lui-même", "C - 49" -> "C-49": a lone hyphen between two words joins them."""
    out: list[_Unit] = []
    k = 0
    while k < len(units):
        unit = units[k]
        if (
            out
            and unit.text == "-"
            and k + 1 < len(units)
            and out[-1].text[-1:].isalnum()
            and units[k + 1].text[:1].isalnum()
        ):
            out[-1] = out[-1].join(unit).join(units[k + 1])
            k += 2
        else:
            out.append(unit)
            k += 1
    return out


def untokenize(words: Sequence[str], lang: str, *, sentence_case: bool = True) -> Untokenized:
    """`words` (one tokenized sentence) as ordinary text in language `lang` ("en", "fr"; another
    gets spacing, hyphens and case only), with each word's characters in it.

    sentence_case: the first letter upper-cased (and English "i" as "I"), as training text has it.
    """
    units = [_Unit(w, [(i, 0, len(w))]) for i, w in enumerate(words)]
    if lang == "fr":
        units = _french(units)
    units = _hyphens(units)
    closing = CLOSING.get(lang, CLOSING["en"])
    text = ""
    spans = [(0, 0)] * len(words)
    for k, unit in enumerate(units):
        glued = k == 0 or (
            (len(unit.text) == 1 and unit.text in closing)
            or (lang == "en" and unit.text.lower() in CLITICS_EN)
            or text.endswith(("(", "[", "{"))
        )
        if lang == "en" and unit.text == "i":
            unit = _Unit("I", unit.words)
        start = len(text) + (0 if glued else 1)
        text += ("" if glued else " ") + unit.text
        for w, b, e in unit.words:
            spans[w] = (start + b, start + e)
    if sentence_case:
        first = next((k for k, c in enumerate(text) if c.isalpha()), None)
        if first is not None:
            text = text[:first] + text[first].upper() + text[first + 1 :]
    return Untokenized(text, spans)
