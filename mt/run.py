"""A run directory: its config check, the lock its training holds, and `Run` — a trained model loaded
for decoding. Nothing here imports training, TensorBoard or `datasets`."""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mt import checkpoint, tokenizer
from mt.alignment import Alignment, Reading
from mt.batching import pad
from mt.decoding import DecodeOptions, Hypothesis, forced_decode, translate_ids
from mt.errors import MTError
from mt.models import Seq2Seq, build_model
from mt.process import git_commit, resolve_device

log = logging.getLogger(__name__)

# keys a run may change between invocations without becoming another run
RESUMABLE_KEYS = {
    "train.budget_checkpoints",
    "train.ddp_timeout_minutes",
    "train.max_steps",
    "train.max_minutes",
    "train.max_epochs",
    "train.patience",
    "train.validate_every",
    "train.log_every",
    "train.threads",
    "train.processes",
    "train.metrics",  # what validation reports; train.stop_metric is what it decides by  # the layout, not the recipe: an update's batch is the same
    "train.save_every_minutes",
    "device",
    "data_dir",
    "cache_dir",
    "overwrite",
    "meta",
    "model.align_layer",  # how alignments are read, not what is trained
    "model.align_head",
    "model.align_method",
    "model.align_prior",
    "model.align_links",
    "model.align_threshold",
    "model.align_adapt",
    "model.align_adapt_lr",
    "model.align_adapt_agreement",
    "model.align_adapt_guided",
    "model.align_adapt_guide",
}


# keys added after runs were made with the defaults they stand for: a saved config without them
# holds these values
ADDED_KEYS = {
    "train.stop_metric": "bleu",
    "train.metrics": ["bleu", "chrf"],
    "model.attention_mode": "soft",
    "model.align_prior": 0.0,
    "model.align_links": "argmax",
    "model.align_threshold": 0.0,
    "model.align_adapt": 0,
    "model.align_adapt_lr": 3.0e-4,
    "model.align_full_context": False,
    "model.gumbel_temperature": 1.0,
    "data.streaming": False,
    "train.guided_alignment": None,
    "train.guided_weight": 0.05,
    "train.guided_symmetrize": "grow-diag-final",
    "train.join_extra": 0.0,
    "train.join_most": 3,
    "train.schedule": "inverse_sqrt",
    "train.plateau_patience": 2,
    "train.plateau_factor": 0.5,
    "model.align_adapt_agreement": 0.0,
    "model.align_adapt_guided": 0.0,
    "model.align_adapt_guide": "intersect",
    "train.ema_decay": None,
    "model.norm": "pre",
    "tokenizer.normalization": "nmt_nfkc",
}


class RunError(MTError):
    """A run directory that cannot be used as asked; the message names it and what to do."""


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ between two configs, ignoring those a resumed run may change."""
    b = flatten(current)
    a = {**{k: v for k, v in ADDED_KEYS.items() if k in b}, **flatten(saved)}

    def relevant(k: str) -> bool:
        return not any(
            k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS
        ) and not k.startswith("decode.")

    return sorted(k for k in set(a) | set(b) if relevant(k) and a.get(k) != b.get(k))


class RunLock:
    """An exclusive lock on a run directory (`<run>/.lock`, flock), held while a process trains it.

    A second training of the same run stops at once, naming the process that holds it. The kernel
    releases the lock when the process ends, also after SIGKILL. Re-entrant within one process.
    """

    _held: dict[Path, tuple[int, int]] = {}  # path -> (file descriptor, depth)

    def __init__(self, run_dir: str | Path):
        self.path = (Path(run_dir) / ".lock").resolve()

    def __enter__(self) -> RunLock:
        if self.path in self._held:
            fd, depth = self._held[self.path]
            self._held[self.path] = (fd, depth + 1)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(
                f"{self.path.parent} is being trained by {holder}; wait for it to end or stop it, "
                "or choose another name=..."
            ) from None
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.write(fd, f"process {os.getpid()} (since {started})\n".encode())
        self._held[self.path] = (fd, 1)
        return self

    def __exit__(self, *exc) -> None:
        fd, depth = self._held[self.path]
        if depth > 1:
            self._held[self.path] = (fd, depth - 1)
            return
        del self._held[self.path]
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock


CORPUS_FILE = "corpus.json"  # the prepared corpus a run trained on: {"prepare": stage key}


def trained_corpus(run_dir: Path) -> str | None:
    """The key of the prepared corpus the run was trained on (None: a run from before it was kept)."""
    path = Path(run_dir) / CORPUS_FILE
    return json.loads(path.read_text())["prepare"] if path.exists() else None


def check_corpus(run_dir: Path, prepare_key: str, doing: str) -> None:
    """Refuse to go on with a run whose corpus, as prepared now, is not the one it trained on: its
    held-out splits could hold training sentences (a changed file, or a version of mt that cleans
    or splits differently)."""
    trained = trained_corpus(run_dir)
    if trained is not None and trained != prepare_key:
        raise RunError(
            f"{run_dir} was trained on prepared corpus {trained}, but its config now prepares "
            f"{prepare_key} (the source files changed, or this version of mt cleans or splits them "
            f"differently): {doing} could mix training and held-out sentences"
        )


def best_dev_score(run_dir: str | Path) -> float | None:
    """The run's best dev score of train.stop_metric, signed so that higher is better (a loss comes
    back negated); None before its first validation. What a sweep tunes: dev, never test."""
    progress = checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")["progress"]
    return progress["best_score"] if progress["history"] else None


def record_corpus(run_dir: Path, prepare_key: str) -> None:
    if trained_corpus(run_dir) is None:
        checkpoint.atomic_write_text(
            Path(run_dir) / CORPUS_FILE, json.dumps({"prepare": prepare_key}) + "\n"
        )


def init_run(cfg: DictConfig, tokenizer_folder: Path) -> Path:
    """Create (or re-open) the run directory; refuse one that holds a different run."""
    run_dir = Path(cfg.run_dir)
    current = OmegaConf.to_container(cfg, resolve=True)
    saved_path = run_dir / "config.yaml"
    if saved_path.exists():
        saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True)
        differences = config_differences(saved, current)
        if differences and not cfg.overwrite:
            shown = ", ".join(
                f"{k} ({flatten(saved).get(k)!r} -> {flatten(current).get(k)!r})"
                for k in differences[:6]
            )
            raise RunError(
                f"{run_dir} holds a run with another config: {shown}. "
                f"Choose a new name=..., or pass overwrite=true to start it afresh."
            )
        if cfg.overwrite:
            log.warning("overwrite=true: removing %s", run_dir)
            for entry in run_dir.iterdir():
                if entry.name != ".lock":  # held by this process
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    current["meta"] = {
        "git_commit": git_commit(),
        "torch": str(torch.__version__),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if not saved_path.exists():
        checkpoint.atomic_write_text(saved_path, OmegaConf.to_yaml(OmegaConf.create(current)))
    if (run_dir / "tokenizer").exists():
        for model in sorted(Path(tokenizer_folder).glob("*.model")):
            own = run_dir / "tokenizer" / model.name
            if not own.exists() or own.read_bytes() != model.read_bytes():
                raise RunError(
                    f"{own} differs from the tokenizer this config "
                    f"makes now ({model}): the run's token ids would not match its model. "
                    "Choose a new name=..., or pass overwrite=true to start it afresh."
                )
    else:
        tmp = run_dir / ".tokenizer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tokenizer_folder, tmp)
        os.replace(tmp, run_dir / "tokenizer")
    return run_dir


def build_for(cfg: DictConfig, tok: tokenizer.Tokenizer) -> Seq2Seq:
    """The model of config `cfg` for the vocabularies of `tok`."""
    return build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, shared_vocab=tok.joint)


@dataclass
class Run:
    """A trained run, loaded for decoding: everything comes from its directory."""

    dir: Path
    cfg: DictConfig
    tokenizer: tokenizer.Tokenizer
    model: Seq2Seq
    device: torch.device
    checkpoint_file: Path | None = None  # the file its weights came from

    def options(self, **overrides) -> DecodeOptions:
        """The run's decoding options (its `decode` config section), with `overrides` not None."""
        return DecodeOptions.from_config(self.cfg.decode, **overrides)

    def translate(
        self,
        sentences: list[str],
        options: DecodeOptions | None = None,
        need_attn: bool = False,
        first_number: int = 1,
    ) -> Iterator[list[Hypothesis]]:
        """Hypotheses per sentence (options.nbest each), in order, as they are decoded; warnings
        number the sentences from `first_number`."""
        return translate_ids(
            self.model,
            self.tokenizer.encode_src(sentences),
            self.device,
            options or self.options(),
            need_attn,
            first_number,
        )

    def force(self, sentence: str, target: str, options: DecodeOptions) -> Hypothesis:
        """The given `target` as a hypothesis of `sentence`: its attention, and its score as search
        scores its own translations."""
        tok = self.tokenizer
        return self.force_ids(tok.encode_src([sentence]), tok.encode_tgt([target]), options)[0]

    def force_ids(
        self, sources: list[list[int]], targets: list[list[int]], options: DecodeOptions
    ) -> list[Hypothesis]:
        """Forced decoding of each target (ids ending in EOS) given its source, in batches of
        similar length: one hypothesis each, with attention, in input order."""
        order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), len(targets[i])))
        out: dict[int, Hypothesis] = {}
        for start in range(0, len(order), options.batch_size):
            chunk = order[start : start + options.batch_size]
            src = pad([torch.tensor(sources[i]) for i in chunk]).to(self.device)
            tgt = pad([torch.tensor(targets[i]) for i in chunk]).to(self.device)
            hyps = forced_decode(self.model, src, tgt, options, need_attn=True)
            out.update((i, h[0]) for i, h in zip(chunk, hyps, strict=True))
        return [out[i] for i in range(len(sources))]

    def align(
        self, sentence: str, target: str | None = None, options: DecodeOptions | None = None
    ) -> tuple[str, float, Alignment]:
        """The translation of `sentence` (or the given `target`, forced) with its word alignment:
        (translation, score, alignment), read as model.align_method says."""
        return align_sentence(self, sentence, target, options or self.options())


def align_sentence(
    model,
    sentence: str,
    target: str | None,
    options: DecodeOptions,
    reading: Reading | None = None,
) -> tuple[str, float, Alignment]:
    """(translation, score, word alignment) of `sentence` by `model` (a Run or another engine with
    `tokenizer`, `cfg`, `translate` and `force`); with `target`, that translation is forced. The
    attention is read as `reading` says (default: the run's model.align_* keys)."""
    tok = model.tokenizer
    if target is None:
        hyp = next(model.translate([sentence], replace(options, nbest=1), need_attn=True))[0]
    else:
        hyp = model.force(sentence, target, options)
    reading = reading or Reading.of(model.cfg.model)
    alignment = word_alignment(tok, tok.encode_src([sentence])[0], hyp, reading)
    translation = target if target is not None else tok.decode_tgt(hyp.tokens)
    return translation, hyp.score, alignment


def word_alignment(
    tok: tokenizer.Tokenizer, src_ids: list[int], hyp: Hypothesis, reading: Reading | None = None
) -> Alignment:
    """The word-level alignment of a hypothesis decoded with attention, read as `reading` says."""
    pieces = tok.src_pieces(src_ids), tok.tgt_pieces(hyp.tokens)
    reading = reading or Reading()
    return reading.words(Alignment.from_subwords(*pieces, reading.rows(hyp.attention)))


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """The file of checkpoint `which` (best | last | averaged | a file name); best falls back to last."""
    path = run_dir / "checkpoints" / (which if which.endswith(".pt") else f"{which}.pt")
    if not path.exists() and which == "best":
        path = run_dir / "checkpoints" / "last.pt"
    return path


def load_run(run_dir: str | Path, which: str | None = None, device: str = "auto") -> Run:
    """The model of `run_dir` with checkpoint `which` (best | last | averaged | a file name; default:
    the run's decode.checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    for needed in ("config.yaml", "tokenizer", "checkpoints"):
        if not (run_dir / needed).exists():
            raise RunError(
                f"{run_dir} is not a complete run: it has no {needed} (was it trained with `mt train`?)"
            )
    cfg = OmegaConf.load(run_dir / "config.yaml")
    tok = tokenizer.Tokenizer.load(run_dir / "tokenizer")
    model = build_for(cfg, tok)
    path = checkpoint_path(run_dir, which or cfg.decode.checkpoint)
    checkpoint.load_model_state(model, checkpoint.load(path)["model"], path)
    target = resolve_device(device)
    return Run(run_dir, cfg, tok, model.to(target).eval(), target, path)
