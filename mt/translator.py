"""`Translator`: a trained run put to use from Python — translations with scores, n-best lists and
word alignments, decoded by mt's own PyTorch code or by CTranslate2 (`engine="ctranslate2"`, after
`mt export`). The CLI's translate and align, and the server, use it. It imports nothing of training.

    from mt import Translator
    translator = Translator.load("runs/multi30k_en_de-transformer_tiny")
    translator.translate(["A man rides a bike."], beam=5)[0].text
    alignment = translator.align("The black cat ate the mouse.")
    alignment.pharaoh(); alignment.save_png("cat.png")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig

from mt.alignment import Alignment, Links, Reading
from mt.decoding import DecodeOptions, Hypothesis
from mt.errors import MTError
from mt.run import align_sentence, checkpoint_path, load_run, word_alignment
from mt.tokenizer import Tokenizer

ENGINES = ("torch", "ctranslate2")


class Engine(Protocol):
    """What a Translator decodes with: mt.run.Run (mt's own PyTorch decoding, any architecture) or
    mt.ct2.CTranslate2Model (an exported Transformer). Ids in, hypotheses out."""

    dir: Path
    cfg: DictConfig
    tokenizer: Tokenizer

    def options(self, **overrides) -> DecodeOptions: ...

    def translate(
        self,
        sentences: list[str],
        options: DecodeOptions | None = None,
        need_attn: bool = False,
        first_number: int = 1,
    ) -> Iterator[list[Hypothesis]]: ...

    def force(self, sentence: str, target: str, options: DecodeOptions) -> Hypothesis: ...

    def force_ids(
        self, sources: list[list[int]], targets: list[list[int]], options: DecodeOptions
    ) -> list[Hypothesis]: ...


class TranslatorError(MTError, ValueError):
    """Decoding options or input that cannot be used; the message names the option."""


@dataclass(frozen=True)
class Candidate:
    """One hypothesis: its text and score (log p / length^length_penalty)."""

    text: str
    score: float


@dataclass(frozen=True)
class Translation:
    """The translation of one sentence: the best hypothesis, the n-best list (best first, the best
    included) and, when asked for, the word alignment of the best."""

    source: str
    text: str
    score: float
    nbest: tuple[Candidate, ...]
    alignment: Alignment | None = None


class Translator:
    """A trained run loaded for decoding. `engine` is "torch" (mt's own decoding; any architecture)
    or "ctranslate2" (a Transformer run exported with `mt export --format ctranslate2`)."""

    def __init__(self, model: Engine, engine: str):
        self.model, self.engine = model, engine
        self.tokenizer = model.tokenizer
        self.cfg = model.cfg
        self.dir: Path = Path(model.dir)
        # False for a model without attention (an RNN with model.attention=none)
        self.has_attention: bool = getattr(getattr(model, "model", None), "has_attention", True)

    def needs_attention(self) -> None:
        if not self.has_attention:
            raise TranslatorError(
                f"{self.dir} has no attention (model.attention={self.cfg.model.attention}): "
                "there is nothing to align with"
            )

    @classmethod
    def load(
        cls,
        run: str | Path,
        checkpoint: str | None = None,
        device: str = "auto",
        engine: str = "torch",
        export_dir: str | Path | None = None,
    ) -> Translator:
        """The run directory `run` with checkpoint `checkpoint` (best | last | averaged | a file in
        checkpoints/; default: the run's decode.checkpoint)."""
        if engine not in ENGINES:
            raise TranslatorError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
        if engine == "torch":
            return cls(load_run(run, checkpoint, device), engine)
        from omegaconf import OmegaConf

        from mt import tokenizer
        from mt.ct2 import CTranslate2Model
        from mt.run import RunError

        if device not in ("auto", "cpu"):
            raise TranslatorError(f"device {device!r}: the ctranslate2 engine runs on the CPU")
        run = Path(run)
        if not (run / "config.yaml").exists():
            raise RunError(f"{run} is not a run directory (it has no config.yaml)")
        cfg = OmegaConf.load(run / "config.yaml")
        tok = tokenizer.Tokenizer.load(run / "tokenizer")
        which = checkpoint or cfg.decode.checkpoint
        model = CTranslate2Model.load(run, cfg, tok, checkpoint_path(run, which), export_dir)
        return cls(model, engine)

    def options(
        self,
        beam: int | None = None,
        nbest: int | None = None,
        strategy: str | None = None,
        batch_size: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> DecodeOptions:
        """The run's decoding options (its `decode` section) with those given; checked."""
        options = self.model.options(
            beam_size=beam,
            nbest=nbest,
            strategy=strategy,
            batch_size=batch_size,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        for name in ("beam_size", "nbest", "batch_size"):
            if getattr(options, name) < 1:
                raise TranslatorError(f"{name} must be at least 1, not {getattr(options, name)}")
        if options.strategy not in ("greedy", "beam", "sample"):
            raise TranslatorError(f"strategy {options.strategy!r}: greedy, beam or sample")
        if options.strategy == "beam" and options.nbest > options.beam_size:
            raise TranslatorError(f"nbest {options.nbest} needs a beam of at least {options.nbest}")
        if options.strategy == "greedy" and options.nbest > 1:
            raise TranslatorError(
                "nbest > 1 needs strategy beam or sample: greedy search finds one"
            )
        return options

    @contextmanager
    def reading(self, layer: int | None, head: int | None):
        """Attention read from decoder layer `layer` and head `head` (None: the model's choice)
        while the block runs."""
        if layer is None and head is None:
            yield
            return
        if self.engine != "torch":
            raise TranslatorError(
                "layer/head: the ctranslate2 engine returns the attention chosen at export (layer "
                f"{self.model.info['align_layer']}, head {self.model.info.get('align_head')}; "
                "None: averaged); use engine torch"
            )
        model = self.model.model
        saved = {k: getattr(model, k) for k in ("align_layers", "align_head") if hasattr(model, k)}
        try:
            model.choose_alignment(layer, head)
        except ValueError as e:
            raise TranslatorError(f"layer/head: {e}") from None
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(model, k, v)

    def stream(
        self,
        sentences: Sequence[str],
        options: DecodeOptions,
        align: bool = False,
        first_number: int = 1,
        reading: Reading | None = None,
    ) -> Iterator[Translation]:
        """Translations of `sentences` in order, each as soon as it and those before it are done;
        with `align`, their alignments read as `reading` says (default: the run's)."""
        tok = self.tokenizer
        reading = reading or self.read()
        sentences = list(sentences)
        sources = tok.encode_src(sentences) if align else None
        hypotheses = self.model.translate(sentences, options, align, first_number)
        for i, hyps in enumerate(hypotheses):
            nbest = tuple(Candidate(tok.decode_tgt(h.tokens), h.score) for h in hyps)
            alignment = None
            if align and hyps[0].attention is not None:
                alignment = word_alignment(tok, sources[i], hyps[0], reading)
                alignment = replace(alignment, translation=nbest[0].text, score=nbest[0].score)
            elif align:  # an empty source: nothing to align
                alignment = Alignment([], [], _empty(), nbest[0].text, nbest[0].score)
            yield Translation(sentences[i], nbest[0].text, nbest[0].score, nbest, alignment)

    def translate(
        self,
        sentences: Sequence[str],
        *,
        beam: int | None = None,
        nbest: int | None = None,
        strategy: str | None = None,
        batch_size: int | None = None,
        align: bool = False,
        layer: int | list[int] | None = None,
        head: int | None = None,
        method: str | None = None,
        prior: float | None = None,
        links: str | None = None,
        threshold: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> list[Translation]:
        """Translate `sentences` (a list of strings). beam 1 is greedy search; `align=True` adds the
        word alignment of each best translation, read from decoder `layer` (a list: their average)
        and `head` by `method` ("attention" or "shift"; default: the run's model.align_method),
        with a diagonal prior of strength `prior` (default: model.align_prior), its links picked
        by `links` (alignment.LINK_RULES; default: model.align_links), and every pair weighing at
        least `threshold` linked too (default: model.align_threshold)."""
        if isinstance(sentences, str):
            raise TranslatorError("sentences: give a list of strings, not one string")
        if bad := [i for i, s in enumerate(sentences) if not isinstance(s, str)]:
            raise TranslatorError(f"sentences: item {bad[0]} is not a string")
        options = self.options(beam, nbest, strategy, batch_size, temperature, top_k, top_p)
        reading = self.read(method, prior, links, threshold)
        if align:
            self.needs_attention()
        with self.reading(layer, head):
            return list(self.stream(sentences, options, align, reading=reading))

    def align(
        self,
        sentence: str,
        target: str | None = None,
        *,
        beam: int | None = None,
        layer: int | list[int] | None = None,
        head: int | None = None,
        method: str | None = None,
        prior: float | None = None,
        links: str | None = None,
        threshold: float | None = None,
    ) -> Alignment:
        """The word alignment of `sentence` and its translation (or the given `target`, forced):
        `.weights` (target words × source words), `.source`, `.target`, `.pharaoh()`, `.links`,
        `.save_png(path)`, `.translation` and `.score`."""
        if not sentence.strip():
            raise TranslatorError("an empty sentence was given to align")
        if target is not None and not target.strip():
            raise TranslatorError("an empty target was given: give the translation to align")
        reading = self.read(method, prior, links, threshold)
        self.needs_attention()
        options = replace(self.options(beam=beam), nbest=1)
        if options.strategy == "sample":
            options = replace(options, strategy="beam")
        with self.reading(layer, head):
            translation, score, alignment = align_sentence(
                self.model, sentence, target, options, reading
            )
        return replace(alignment, translation=translation, score=score)

    def read(
        self,
        method: str | None = None,
        prior: float | None = None,
        links: str | None = None,
        threshold: float | None = None,
    ) -> Reading:
        """How alignments are read: the run's model.align_method, align_prior, align_links and
        align_threshold, each argument not None instead; checked."""
        try:
            return Reading.of(self.cfg.model, method, prior, links, threshold)
        except ValueError as e:
            raise TranslatorError(str(e)) from None

    def _encode_words(
        self, sentences: Sequence[Sequence[str]], side: str, untokenize: bool
    ) -> list[tuple[list[int], list[list[int]]]]:
        """Ids of sentences given as words, and each word's pieces (see `align_words`)."""
        if not untokenize:
            return [self.tokenizer.encode_words(words, side) for words in sentences]
        from mt.untokenize import untokenize as ordinary

        lang = self.cfg.data.src_lang if side == "src" else self.cfg.data.tgt_lang
        out = []
        for words in sentences:
            text = ordinary(words, lang)
            out.append(self.tokenizer.encode_spans(text.text, text.spans, side))
        return out

    def adapt(
        self,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        *,
        epochs: int | None = None,
        lr: float | None = None,
        untokenize: bool = False,
        report: Callable[[str], None] | None = None,
        guide: Sequence[Links] | None = None,
        guided_weight: float | None = None,
    ) -> list[float]:
        """Train the loaded model (not the run's files) for `epochs` passes over these sentence pairs,
        given as words as `align_words` takes them, with its translation loss (mt.adapt): the
        pairs' own domain, learnt before they are aligned. Default: the run's model.align_adapt
        and align_adapt_lr. With `guide` (each pair's word links (source word, target word), e.g.
        `guide_links`), the attention the model aligns with is also trained towards them, weighted
        by `guided_weight` (default: the run's model.align_adapt_guided). `report(line)` tells each
        pass (default: logged). Returns each pass's loss per target token ([] for 0 passes)."""
        epochs, lr = self._adaptation(sources, targets, epochs, lr)
        guided_weight = self._guided_weight(guide, guided_weight, len(sources))
        if epochs == 0:
            return []
        from mt.adapt import adapt

        src = self._encode_words(sources, "src", untokenize)
        tgt = self._encode_words(targets, "tgt", untokenize)
        return adapt(
            self.model.model,
            [s[0] for s in src],
            [t[0] for t in tgt],
            epochs=epochs,
            lr=lr,
            report=report,
            links=self._piece_links(guide, src, tgt) if guided_weight else None,
            guided_weight=guided_weight,
            **self._adaptation_settings(),
        )

    def guide_links(
        self,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        symmetrization: str | None = None,
    ) -> list[Links]:
        """A statistical aligner's word links of these pairs (given as words), learnt together
        with the run's training split, as an unsupervised aligner learns (mt.guided): what
        `adapt(guide=...)` trains the attention towards. The aligner is the run's
        train.guided_alignment (eflomal for a run trained without guidance); its two directions
        are combined by `symmetrization` (default: the run's model.align_adapt_guide). The corpus
        is prepared from MT_DATA_DIR when it is set."""
        import copy
        import os

        from mt import guided, stages

        cfg = copy.deepcopy(self.cfg)
        if os.environ.get("MT_DATA_DIR"):
            cfg.data_dir = os.environ["MT_DATA_DIR"]
        _, corpus = stages.prepare_stage(cfg)
        train = corpus["train"]
        try:
            return guided.links_in_context(
                train["src"],
                train["tgt"],
                sources,
                targets,
                symmetrization or cfg.model.get("align_adapt_guide", "intersect"),
                cfg.train.get("guided_alignment") or "eflomal",
            )
        except guided.GuidedAlignmentError as e:
            raise TranslatorError(f"guided adaptation: {e}") from None

    def _guided_weight(
        self, guide: Sequence[Links] | None, weight: float | None, pairs: int
    ) -> float:
        """The weight of guided adaptation (the run's model.align_adapt_guided where None; 0
        without `guide`), checked."""
        if weight is None:
            weight = float(self.cfg.model.get("align_adapt_guided", 0.0))
        if not weight >= 0:
            raise TranslatorError(f"adaptation: guided weight {weight}: 0 or more")
        if guide is None:
            return 0.0
        if len(guide) != pairs:
            raise TranslatorError(f"adaptation: links of {len(guide)} pairs for {pairs} pairs")
        return weight

    @staticmethod
    def _piece_links(
        guide: Sequence[Links], src: list[tuple[list[int], list[list[int]]]], tgt: list
    ) -> list[list[tuple[int, int]]]:
        """Word links -> each pair's (target piece, source piece) links, by the words' pieces."""
        from mt.guided import group_links

        return [
            group_links(links, s_groups, t_groups)
            for links, (_, s_groups), (_, t_groups) in zip(guide, src, tgt, strict=True)
        ]

    def _adaptation_settings(self) -> dict:
        """What adaptation takes from the run: its batch size, label smoothing, and the device."""
        return dict(
            batch_tokens=int(self.cfg.train.batch_tokens),
            label_smoothing=float(self.cfg.train.label_smoothing),
            device=self.model.device,
        )

    def _adaptation(
        self,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        epochs: int | None,
        lr: float | None,
    ) -> tuple[int, float]:
        """Passes and learning rate of an adaptation (the run's model.align_adapt and
        align_adapt_lr where None), checked with the pairs and the engine."""
        model_cfg = self.cfg.model
        epochs = int(model_cfg.get("align_adapt", 0)) if epochs is None else epochs
        lr = float(model_cfg.get("align_adapt_lr", 3e-4)) if lr is None else lr
        if epochs < 0 or not lr > 0:
            raise TranslatorError(
                f"adaptation: {epochs} passes at learning rate {lr}; passes are 0 or more, the "
                "learning rate above 0"
            )
        if len(sources) != len(targets):
            raise TranslatorError(f"{len(sources)} source sentences but {len(targets)} targets")
        if epochs and self.engine != "torch":
            raise TranslatorError(
                f"adaptation trains the model: the {self.engine} engine cannot (use the torch "
                "engine, or --adapt 0)"
            )
        return epochs, lr

    def direction(
        self,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        untokenize: bool = False,
        method: str | None = None,
        guide: Sequence[Links] | None = None,
    ):
        """The pairs (given as words, as `align_words` takes them) as this model trains on them and
        reads their alignment, with `guide`'s word links as piece links: an `mt.adapt.Direction`."""
        from mt.adapt import Direction

        src = self._encode_words(sources, "src", untokenize)
        tgt = self._encode_words(targets, "tgt", untokenize)
        return Direction(
            self.model.model,
            [ids for ids, _ in src],
            [ids for ids, _ in tgt],
            [groups for _, groups in src],
            [groups for _, groups in tgt],
            self.read(method).rows,
            None if guide is None else self._piece_links(guide, src, tgt),
        )

    def adapt_jointly(
        self,
        reverse: Translator,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        *,
        agreement: float | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        untokenize: bool = False,
        layer: int | list[int] | None = None,
        head: int | None = None,
        method: str | None = None,
        report: Callable[[str], None] | None = None,
        guide: Sequence[Links] | None = None,
        guided_weight: float | None = None,
    ) -> list[tuple[float, float]]:
        """`adapt` for this model and `reverse` (a run of the other direction, which aligns
        `targets` to `sources`) together, with the agreement of their word alignments weighted by
        `agreement` (mt.adapt.adapt_jointly; default: this run's model.align_adapt_agreement), and
        both guided by `guide` (this direction's word links; the reverse model learns them
        transposed) as `adapt` is. This model's alignment is read from `layer`, `head` and
        `method` as `align_words` reads it, the reverse model's as its run says. Returns each
        pass's mean translation loss and disagreement per word ([] for 0 passes)."""
        epochs, lr = self._adaptation(sources, targets, epochs, lr)
        guided_weight = self._guided_weight(guide, guided_weight, len(sources))
        if not guided_weight:
            guide = None
        backward = None if guide is None else [{(j, i) for i, j in links} for links in guide]
        if agreement is None:
            agreement = float(self.cfg.model.get("align_adapt_agreement", 0.0))
        if not agreement >= 0:
            raise TranslatorError(f"adaptation: agreement weight {agreement}: 0 or more")
        reverse._adaptation(targets, sources, epochs, lr)
        self.needs_attention()
        reverse.needs_attention()
        if epochs == 0:
            return []
        from mt.adapt import adapt_jointly

        with self.reading(layer, head):
            return adapt_jointly(
                self.direction(sources, targets, untokenize, method, guide),
                reverse.direction(targets, sources, untokenize, method, backward),
                agreement=agreement,
                guided_weight=guided_weight,
                epochs=epochs,
                lr=lr,
                report=report,
                **self._adaptation_settings(),
            )

    def align_words(
        self,
        sources: Sequence[Sequence[str]],
        targets: Sequence[Sequence[str]],
        *,
        layer: int | list[int] | None = None,
        head: int | None = None,
        method: str | None = None,
        batch_size: int | None = None,
        untokenize: bool = False,
        prior: float | None = None,
        links: str | None = None,
        threshold: float | None = None,
    ) -> list[Alignment]:
        """Forced alignment of sentence pairs given as words (tokenization kept as given: the
        alignment's words are exactly these), in batches; a word the vocabulary cannot represent
        at all gets no link.

        untokenize: the words are tokenized, lower-cased text (as gold alignment sets are): the
        model reads them written back as ordinary text in the run's languages (`mt.untokenize`),
        and each given word gets the links of the characters it became. method, prior, links,
        threshold: as in `translate`."""
        if len(sources) != len(targets):
            raise TranslatorError(f"{len(sources)} source sentences but {len(targets)} targets")
        self.needs_attention()
        reading = self.read(method, prior, links, threshold)
        options = self.options(batch_size=batch_size)
        src = self._encode_words(sources, "src", untokenize)
        tgt = self._encode_words(targets, "tgt", untokenize)
        with self.reading(layer, head):
            hyps = self.model.force_ids([s[0] for s in src], [t[0] for t in tgt], options)
        out = []
        for words, (_, src_groups), target, (_, tgt_groups), hyp in zip(
            sources, src, targets, tgt, hyps, strict=True
        ):
            attention = reading.rows(hyp.attention)
            alignment = Alignment.from_groups(words, target, src_groups, tgt_groups, attention)
            out.append(replace(reading.words(alignment), score=hyp.score))
        return out


def _empty():
    import torch

    return torch.zeros(0, 0)
