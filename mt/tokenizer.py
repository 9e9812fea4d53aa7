"""sentencepiece subword models, joint or one per language: training, ids <-> text, special ids."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from mt.checkpoint import atomic_write_bytes

PAD, UNK, BOS, EOS = 0, 1, 2, 3

# tokenizer.normalization: the sentencepiece rules a model is trained with and, saved in it, applies
# to every text it encodes (piece spans still point into the text as given)
NORMALIZATIONS = {
    "nmt_nfkc": "Unicode NFKC, with the cleanups for translation (sentencepiece's default)",
    "nmt_nfkc_cf": "nmt_nfkc, then lowercased: a lowercased model, whose outputs are lowercase",
    "nfkc": "Unicode NFKC alone",
    "identity": "the text as it is",
}
LOWERCASING = {"nmt_nfkc_cf"}  # the rules whose models write lowercase


class Tokenizer:
    """Source and target sentencepiece models (the same object when the vocabulary is joint)."""

    def __init__(
        self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor, joint: bool
    ):
        self.src, self.tgt, self.joint = src, tgt, joint

    @classmethod
    def load(cls, folder: Path) -> Tokenizer:
        """The tokenizer saved in `folder` (spm.model, or src.model + tgt.model)."""
        folder = Path(folder)
        if (folder / "spm.model").exists():
            model = _load_model(folder / "spm.model")
            return cls(model, model, joint=True)
        return cls(
            _load_model(folder / "src.model"), _load_model(folder / "tgt.model"), joint=False
        )

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids, each sentence ending in EOS."""
        return [ids + [EOS] for ids in self.src.encode(list(texts))]

    def encode_tgt(self, texts: Sequence[str]) -> list[list[int]]:
        """Target ids, each sentence ending in EOS (BOS is prepended by the model's input shift)."""
        return [ids + [EOS] for ids in self.tgt.encode(list(texts))]

    def encode_words(self, words: Sequence[str], side: str) -> tuple[list[int], list[list[int]]]:
        """Ids of a sentence given as words (whitespace tokens kept as they are), ending in EOS, and
        the indices of each word's pieces (sentencepiece never joins two words into one piece)."""
        sp = self.src if side == "src" else self.tgt
        ids: list[int] = []
        groups: list[list[int]] = []
        for pieces in sp.encode(list(words)) if words else []:
            groups.append(list(range(len(ids), len(ids) + len(pieces))))
            ids.extend(pieces)
        return ids + [EOS], groups

    def encode_spans(
        self, text: str, spans: Sequence[tuple[int, int]], side: str
    ) -> tuple[list[int], list[list[int]]]:
        """Ids of `text`, ending in EOS, and for each of `spans` ([begin, end) characters of `text`)
        the indices of the pieces that overlap it; a piece of only a space goes with the next."""
        from mt.guided import pieces_of_words

        (proto,) = _protos(self.src if side == "src" else self.tgt, [text])
        ids = [p.id for p in proto.pieces]
        byte = [0]
        for c in text:
            byte.append(byte[-1] + len(c.encode()))
        order = sorted(range(len(spans)), key=lambda k: spans[k])
        sorted_spans = [(byte[spans[k][0]], byte[spans[k][1]]) for k in order]
        words_of = pieces_of_words([(p.begin, p.end) for p in proto.pieces], sorted_spans)
        groups: list[list[int]] = [[] for _ in spans]
        pending: list[int] = []
        for piece, hits in enumerate(words_of):
            pending.append(piece)
            if hits:
                for k in hits:
                    groups[order[k]].extend(pending)
                pending = []
        return ids + [EOS], groups

    def piece_spans(self, texts: Sequence[str], side: str) -> list[list[tuple[int, int]]]:
        """Each piece's [begin, end) byte span in its UTF-8 text, in the order of `encode_src` /
        `encode_tgt` (EOS not included)."""
        encoded = _protos(self.src if side == "src" else self.tgt, list(texts))
        return [[(p.begin, p.end) for p in text.pieces] for text in encoded]

    def decode_tgt(self, ids: Sequence[int]) -> str:
        """Detokenized text of target ids; special ids are dropped."""
        return self.tgt.decode([i for i in ids if i > EOS])

    def unknown_source_chars(self, text: str) -> list[str]:
        """Characters of `text` the source vocabulary cannot represent (they become <unk>)."""
        if UNK not in self.src.encode(text):
            return []
        return sorted({c for c in text if not c.isspace() and UNK in self.src.encode(c)})

    def src_pieces(self, ids: Sequence[int]) -> list[str]:
        """Source subword pieces of ids (EOS is '</s>')."""
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]


def _protos(sp: spm.SentencePieceProcessor, texts: list[str]) -> list:
    """sentencepiece's encoding of `texts` with each piece's id and byte span."""
    try:
        return sp.encode(texts, out_type="proto")
    except ValueError:  # sentencepiece before 0.2.1 names it immutable_proto
        return sp.encode(texts, out_type="immutable_proto")


def _load_model(path: Path) -> spm.SentencePieceProcessor:
    if not path.exists():
        raise FileNotFoundError(f"tokenizer model not found: {path}")
    return spm.SentencePieceProcessor(model_file=str(path))


def train_model(
    sentences: Iterable[str],
    path: Path,
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    max_sentences: int,
    seed: int,
    normalization: str = "nmt_nfkc",
) -> None:
    """Train one sentencepiece model on `sentences` and write it atomically to `path`."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"tokenizer.normalization: unknown {normalization!r} ({', '.join(NORMALIZATIONS)})"
        )
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        normalization_rule_name=normalization,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    atomic_write_bytes(path, buffer.getvalue())


def train(
    src_texts: Callable[[], Iterable[str]],
    tgt_texts: Callable[[], Iterable[str]],
    folder: Path,
    *,
    vocab_size: int,
    model_type: str,
    joint: bool,
    character_coverage: float,
    max_sentences: int,
    seed: int,
    normalization: str = "nmt_nfkc",
) -> Tokenizer:
    """Train the tokenizer of a run on its training texts and save it under `folder`.

    The texts are functions that return a fresh iterator: a corpus too large to hold is streamed,
    and sentencepiece samples `max_sentences` of it, from `seed`.
    """
    options = dict(
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        seed=seed,
        normalization=normalization,
    )
    folder.mkdir(parents=True, exist_ok=True)
    if joint:
        train_model(
            itertools.chain(src_texts(), tgt_texts()),
            folder / "spm.model",
            max_sentences=max_sentences,
            **options,
        )
    else:
        train_model(iter(src_texts()), folder / "src.model", max_sentences=max_sentences, **options)
        train_model(iter(tgt_texts()), folder / "tgt.model", max_sentences=max_sentences, **options)
    return Tokenizer.load(folder)
