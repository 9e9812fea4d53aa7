"""Orchestration of `mt train`: the cached stages, the run directory, training, and the validation
that decodes the dev set and draws the probe sentences' alignments."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import datasets
import torch
from omegaconf import DictConfig, OmegaConf

from mt import batching, distributed, guided, metrics, process, tokenizer
from mt.alignment import SYMMETRIZATIONS
from mt.models import Seq2Seq
from mt.run import (
    Run,
    RunError,
    RunLock,
    build_for,
    check_corpus,
    flatten,
    init_run,
    record_corpus,
)
from mt.stages import build_stages
from mt.tokenizer import Tokenizer
from mt.train import Trainer, Validate


def log_probes(run: Run, probes: list[str], step: int, writer) -> None:
    """Alignment heatmaps of the probe sentences, greedy and beam, as TensorBoard images."""
    if not run.model.has_attention:
        return
    for i, sentence in enumerate(probes):
        for beam in sorted({1, run.cfg.decode.beam_size}):
            translation, _, alignment = run.align(sentence, options=run.options(beam_size=beam))
            search_name = "greedy" if beam == 1 else f"beam{beam}"
            tag = f"alignment/probe{i}_{search_name}"
            writer.add_figure(
                tag, alignment.figure(f"{search_name}: {translation}"), step, close=True
            )
            writer.add_text(tag, f"{translation}  \n`{alignment.pharaoh()}`", step)


def dev_validation(
    cfg: DictConfig, tok: Tokenizer, dev: datasets.Dataset, device: torch.device
) -> Validate:
    """The validation callback: greedy-decode up to train.dev_max_sentences dev sentences and score
    them with train.metrics; probe heatmaps to TensorBoard."""
    n = min(cfg.train.dev_max_sentences, len(dev))
    sources, references = dev["src"][:n], dev["tgt"][:n]
    probes = list(cfg.data.get("probes") or [])
    names = list(dict.fromkeys([cfg.train.stop_metric, *cfg.train.metrics]))

    def validate(model: Seq2Seq, step: int, writer) -> dict[str, float]:
        run = Run(Path(cfg.run_dir), cfg, tok, model.eval(), device)
        greedy = run.options(strategy="greedy", nbest=1)
        hyps = [tok.decode_tgt(h[0].tokens) for h in run.translate(sources, greedy)]
        scores = metrics.score(hyps, references, cfg.data.tgt_lang, names)
        for i in range(min(3, n)):
            writer.add_text(
                f"dev/sample_{i}", f"{sources[i]}  \n→ {hyps[i]}  \n(ref: {references[i]})", step
            )
        log_probes(run, probes, step, writer)
        return {name: scores[name] for name in names}

    return validate


def check_config(cfg: DictConfig) -> None:
    """Values the config must have before anything runs: one error naming the keys."""
    values = flatten(OmegaConf.to_container(cfg, resolve=False))
    if missing := sorted(k for k, v in values.items() if v == "???"):
        raise RunError(
            f"the config leaves {', '.join(missing)} unset (???): give them on the command line"
        )
    for name in [cfg.train.stop_metric, *cfg.train.metrics]:
        if name not in metrics.METRICS:
            raise RunError(
                f"train.metrics / train.stop_metric: unknown metric {name!r} (known: {', '.join(metrics.METRICS)})"
            )
    if cfg.tokenizer.normalization not in tokenizer.NORMALIZATIONS:
        raise RunError(
            f"tokenizer.normalization: unknown {cfg.tokenizer.normalization!r} "
            f"(known: {', '.join(tokenizer.NORMALIZATIONS)})"
        )
    if (aligner := cfg.train.get("guided_alignment")) is not None:
        check_guided(cfg, aligner)
    if not cfg.train.join_extra >= 0:
        raise RunError(
            f"train.join_extra: {cfg.train.join_extra} — 0 (none) or more pairs per pair"
        )
    if cfg.train.join_most < 2:
        raise RunError(
            f"train.join_most: {cfg.train.join_most} — a joined pair has 2 or more parts"
        )


def check_guided(cfg: DictConfig, aligner: str) -> None:
    """Guided alignment needs a known aligner, installed, and a model with attention to guide."""
    if aligner not in guided.ALIGNERS:
        raise RunError(
            f"train.guided_alignment: unknown aligner {aligner!r} (null or {', '.join(guided.ALIGNERS)})"
        )
    if cfg.train.guided_symmetrize not in SYMMETRIZATIONS:
        raise RunError(
            f"train.guided_symmetrize: {cfg.train.guided_symmetrize!r} is not one of "
            + ", ".join(SYMMETRIZATIONS)
        )
    if cfg.model.get("attention") == "none":
        raise RunError("train.guided_alignment: model.attention=none has no attention to guide")
    if importlib.util.find_spec(aligner) is None:
        raise RunError(
            f"train.guided_alignment={aligner} needs the {aligner} package: pip install 'mt[align]'"
        )


def train_pipeline(cfg: DictConfig) -> Path:
    """prepare -> tokenize -> encode -> train, into cfg.run_dir. Returns the run directory.

    Under torchrun, rank 0 locks the run, builds the cached stages and the run directory while the
    others wait, then every rank reads them from the cache.
    """
    check_config(cfg)
    ddp_device = distributed.init(cfg.train.ddp_timeout_minutes)
    process.setup_logging(main=distributed.is_main())
    process.set_threads(cfg.train.threads)
    with RunLock(cfg.run_dir) if distributed.is_main() else contextlib.nullcontext():
        if distributed.is_main():
            try:
                built = build_stages(cfg)
                check_corpus(cfg.run_dir, built.prepare_key, "resuming it")
                init_run(cfg, built.tokenizer_folder)
                record_corpus(cfg.run_dir, built.prepare_key)
            except Exception as e:
                distributed.rank0_outcome(str(e) or type(e).__name__)
                raise
            distributed.rank0_outcome(None)
        else:
            distributed.rank0_outcome()  # waits for rank 0 to fill the cache and make the run
            built = build_stages(cfg)
        run_dir = Path(cfg.run_dir)
        process.setup_logging(run_dir, main=distributed.is_main())
        device = ddp_device or process.resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_for(cfg, built.tokenizer)
        dev = cfg.data.dev_split
        validate = dev_validation(cfg, built.tokenizer, built.corpus[dev], device)
        encoded = built.encoded
        train = batching.joined(
            encoded["train"], cfg.train.join_extra, cfg.train.join_most, cfg.seed
        )
        Trainer(cfg.train, model, train, encoded[dev], run_dir, device, cfg.seed, validate).train()
    return run_dir
