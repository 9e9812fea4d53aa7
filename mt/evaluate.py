"""Score a trained run on its test splits: beam-search decoding, metrics, eval/<split>.hyp and
.scores.json — reused while the checkpoint and the decoding settings are the same."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from pathlib import Path

from mt import checkpoint, metrics, stages, tokenizer
from mt.run import RunError, check_corpus, checkpoint_path, load_run

log = logging.getLogger(__name__)


def evaluate_run(
    run_dir: str | Path,
    splits: list[str] | None = None,
    beam_size: int | None = None,
    which: str | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    other_corpus: bool = False,
    length_penalty: float | None = None,
) -> dict:
    """Decode the test split(s) of a run with beam search; write eval/<split>.hyp and .scores.json.

    A split already scored with the same checkpoint file, decoding settings and references is not
    decoded again: its saved scores are returned.
    """
    run = load_run(run_dir, which, device)
    cfg = run.cfg
    if data_dir is not None or os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = data_dir or os.environ["MT_DATA_DIR"]
    prepare_key, corpus = stages.prepare_stage(cfg)
    if not other_corpus:
        check_corpus(
            run_dir, prepare_key, "scoring its test splits (--other-corpus to do it anyway)"
        )
    which = which or cfg.decode.checkpoint
    if (rule := cfg.tokenizer.get("normalization")) in tokenizer.LOWERCASING:
        log.warning(
            "%s writes lowercase (tokenizer.normalization=%s): BLEU and chrF count every capital "
            "of the references as an error; its score is the tokenized-lowercased BLEU",
            run_dir,
            rule,
        )
    options = run.options(beam_size=beam_size, length_penalty=length_penalty, nbest=1)
    settings = {
        "checkpoint": stages.file_fingerprint(checkpoint_path(Path(run_dir), which)),
        "corpus": prepare_key,
        **{k: v for k, v in dataclasses.asdict(options).items() if k != "batch_size"},
    }
    out = Path(run_dir) / "eval"
    results = {}
    for split in splits or list(cfg.data.test_splits):
        if split not in corpus:
            raise RunError(f"no split {split!r} in {cfg.data.name} (has {', '.join(corpus)})")
        saved = out / f"{split}.scores.json"
        if saved.exists() and (out / f"{split}.hyp").exists():
            previous = json.loads(saved.read_text())
            if previous.get("settings") == settings:
                log.info("%s: same checkpoint and decoding settings, scores reused", saved)
                results[split] = previous
                continue
        dataset = corpus[split]
        hyps = [
            run.tokenizer.decode_tgt(h[0].tokens) for h in run.translate(dataset["src"], options)
        ]
        scores = metrics.score(hyps, dataset["tgt"], cfg.data.tgt_lang)
        scores.update(
            {
                "split": split,
                "strategy": options.strategy,
                "beam_size": options.beam_size,
                "length_penalty": options.length_penalty,
                "checkpoint": which,
                "settings": settings,
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
            }
        )
        checkpoint.atomic_write_text(out / f"{split}.hyp", "".join(h + "\n" for h in hyps))
        checkpoint.atomic_write_text(saved, json.dumps(scores, indent=2) + "\n")
        log.info(
            "%s %s: BLEU %.2f, chrF %.2f, tokenized-lowercased BLEU %.2f",
            run_dir,
            split,
            scores["bleu"],
            scores["chrf"],
            scores["bleu_tok_lc"],
        )
        results[split] = scores
    return results
