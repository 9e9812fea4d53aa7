"""The run's attention beside statistical word aligners, on one gold set, in one table: eflomal
(Östling and Tiedemann 2016; IBM1 + HMM + fertility, Gibbs sampling) trained on the same parallel
corpus as the run, and the diagonal aligner, scored with the same AER code as `mt align --gold`.

    pip install eflomal
    python scripts/align_baseline.py --run runs/tatoeba_en_fr-transformer \\
        [--reverse-run runs/tatoeba_fr_en-transformer] --src GOLD.e --tgt GOLD.f --gold GOLD.wa

The corpus is the run's training split (from the stage cache or MT_DATA_DIR), Moses-tokenized and
lower-cased as the gold files are; the gold sentences are added to it (an unsupervised aligner sees
the sentences it aligns, as in the shared tasks). Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mt.alignment import (  # noqa: E402
    SYMMETRIZATIONS,
    agreement,
    alignment_scores,
    combine,
    parse_pharaoh,
    read_gold,
    read_sentences,
    symmetrize,
)


def diagonal(src: list[list[str]], tgt: list[list[str]]) -> list[set[tuple[int, int]]]:
    """Target word j linked to source word round(j·S/T)."""
    return [
        {(min(round(j * len(s) / len(t)), len(s) - 1), j) for j in range(len(t))} if s else set()
        for s, t in zip(src, tgt, strict=True)
    ]


def training_corpus(run: Path, limit: int | None) -> tuple[list[str], list[str], str, str]:
    from omegaconf import OmegaConf
    from sacremoses import MosesTokenizer

    from mt import stages

    cfg = OmegaConf.load(run / "config.yaml")
    if os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = os.environ["MT_DATA_DIR"]
    _, corpus = stages.prepare_stage(cfg)
    train = corpus["train"]
    n = min(limit or len(train), len(train))
    tokenizers = MosesTokenizer(cfg.data.src_lang), MosesTokenizer(cfg.data.tgt_lang)

    def words(tok, text: str) -> str:
        return tok.tokenize(text.lower(), escape=False, return_str=True)

    src = [words(tokenizers[0], s) for s in train["src"][:n]]
    tgt = [words(tokenizers[1], t) for t in train["tgt"][:n]]
    return src, tgt, cfg.data.src_lang, cfg.data.tgt_lang


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run whose training corpus is used")
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--gold-one-based", action="store_true")
    parser.add_argument("--limit", type=int, help="use only the first N training pairs")
    parser.add_argument(
        "--reverse-run", help="the run trained in the other direction (symmetrized)"
    )
    parser.add_argument(
        "--untokenize",
        action="store_true",
        help="the gold files are tokenized, lower-cased text: the models read them as ordinary "
        "text (`mt align --untokenize`); eflomal reads them as given",
    )
    parser.add_argument(
        "--adapt",
        type=int,
        metavar="EPOCHS",
        help="the models first learn the gold pairs' text, as eflomal does (`mt align --adapt`; "
        "never the gold links) (default: the run's model.align_adapt)",
    )
    parser.add_argument(
        "--adapt-agreement",
        type=float,
        metavar="WEIGHT",
        help="with --reverse-run: both directions adapted together, WEIGHT on their alignments' "
        "disagreement (`mt align --adapt-agreement`; default: the run's "
        "model.align_adapt_agreement)",
    )
    parser.add_argument(
        "--adapt-guided",
        type=float,
        metavar="WEIGHT",
        help="adaptation also trains the models' aligning attention towards eflomal's links of the "
        "gold pairs, learnt with the run's training split (`mt align --adapt-guided`; never the "
        "gold links) (default: the run's model.align_adapt_guided)",
    )
    parser.add_argument(
        "--adapt-guide",
        choices=SYMMETRIZATIONS,
        help="--adapt-guided: how eflomal's two directions are combined into the guiding links "
        "(`mt align --adapt-guide`; default: the run's model.align_adapt_guide)",
    )
    parser.add_argument(
        "--diagonal",
        type=float,
        metavar="STRENGTH",
        help="the models' diagonal prior (`mt align --diagonal`; default: the run's "
        "model.align_prior)",
    )
    parser.add_argument(
        "--thresholds",
        default="",
        metavar="W,W,...",
        help="with --reverse-run: also both directions' intersection grown by every word pair "
        "whose soft agreement weighs at least W (`mt align --symmetrize intersect --threshold W`), "
        "e.g. 0.3,0.5",
    )
    args = parser.parse_args()
    try:
        import eflomal
    except ImportError:
        sys.exit("pip install eflomal")

    gold_src = [s.split() for s in read_sentences(args.src)]
    gold_tgt = [t.split() for t in read_sentences(args.tgt)]
    sure, possible = read_gold(args.gold, len(gold_src), args.gold_one_based)
    rows = [("diagonal", diagonal(gold_src, gold_tgt))]
    from mt.translator import Translator

    model = Translator.load(args.run, device="cpu")
    reverse = Translator.load(args.reverse_run, device="cpu") if args.reverse_run else None
    adapting = dict(epochs=args.adapt, untokenize=args.untokenize)
    weight = args.adapt_agreement
    if weight is None:
        weight = float(model.cfg.model.get("align_adapt_agreement", 0.0))
    guided = args.adapt_guided
    if guided is None:
        guided = float(model.cfg.model.get("align_adapt_guided", 0.0))
    guide = None
    if guided:
        guide = model.guide_links(gold_src, gold_tgt, args.adapt_guide)
        adapting.update(guided_weight=guided)
    if reverse is not None and weight:
        passes = len(
            model.adapt_jointly(
                reverse, gold_src, gold_tgt, agreement=weight, guide=guide, **adapting
            )
        )
    else:
        passes = len(model.adapt(gold_src, gold_tgt, guide=guide, **adapting))
        if reverse is not None:
            backward = None if guide is None else [{(j, i) for i, j in g} for g in guide]
            reverse.adapt(gold_tgt, gold_src, guide=backward, **adapting)
    # the attention as it is, read once: each reading's prior and rule are applied by Reading.words
    raw = dict(untokenize=args.untokenize, prior=0.0)
    found = model.align_words(gold_src, gold_tgt, **raw)
    reading = model.read(prior=args.diagonal)
    forward = [set(reading.words(a).links) for a in found]
    label = f"layer {model.cfg.model.get('align_layer')}, {reading.method}, {reading.links}"
    label += f", diagonal {reading.prior:g}" if reading.prior else ""
    label += f", adapted {passes} passes" if passes else ""
    label += f" together, agreement {weight:g}" if passes and reverse is not None and weight else ""
    if passes and guide is not None:
        how = args.adapt_guide or model.cfg.model.get("align_adapt_guide", "intersect")
        label += f", guided by eflomal {how} {guided:g}"
    if passes and guide is not None:  # the teacher itself, another run of eflomal than below
        rows.append((f"eflomal {how}, the guide of the adaptation", guide))
    rows.append((f"mt {Path(args.run).name} ({label})", forward))
    if reverse is not None:
        found_back = reverse.align_words(gold_tgt, gold_src, **raw)
        reverse_reading = reverse.read(prior=args.diagonal)
        backward = [{(i, j) for j, i in reverse_reading.words(a).links} for a in found_back]
        for how in ("intersect", "grow-diag-final"):
            both = [symmetrize(f, b, how) for f, b in zip(forward, backward, strict=True)]
            rows.append((f"mt, both directions, {how}", both))
        # soft agreement (`mt align --symmetrize soft`): the prior weighs both directions' agreement
        agreed = [reading.words(agreement(f, b)) for f, b in zip(found, found_back, strict=True)]
        rows.append((f"mt, both directions, soft, {reading.links}", [set(a.links) for a in agreed]))
        for threshold in (float(w) for w in args.thresholds.split(",") if w):
            grown = [  # `mt align --reverse-run R --symmetrize intersect --threshold W`
                combine(reading.words(f), reverse_reading.words(b), "intersect", threshold)
                for f, b in zip(found, found_back, strict=True)
            ]
            rows.append((f"mt, both directions, intersect + agreement >= {threshold:g}", grown))

    src, tgt, src_lang, tgt_lang = training_corpus(Path(args.run), args.limit)
    src += [" ".join(s) for s in gold_src]
    tgt += [" ".join(t) for t in gold_tgt]
    n = len(gold_src)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").write_text("".join(s + "\n" for s in src))
        (tmp / "tgt").write_text("".join(t + "\n" for t in tgt))
        start = time.perf_counter()
        aligner = eflomal.Aligner()
        with open(tmp / "src") as s, open(tmp / "tgt") as t:
            aligner.align(
                s, t, links_filename_fwd=str(tmp / "fwd"), links_filename_rev=str(tmp / "rev")
            )
        seconds = time.perf_counter() - start
        fwd = [parse_pharaoh(line)[0] for line in (tmp / "fwd").read_text().splitlines()[-n:]]
        rev = [parse_pharaoh(line)[0] for line in (tmp / "rev").read_text().splitlines()[-n:]]
    rows += [
        ("eflomal forward", fwd),
        ("eflomal reverse", rev),
        (
            "eflomal intersect",
            [symmetrize(f, r, "intersect") for f, r in zip(fwd, rev, strict=True)],
        ),
        (
            "eflomal grow-diag-final",
            [symmetrize(f, r, "grow-diag-final") for f, r in zip(fwd, rev, strict=True)],
        ),
    ]
    print(
        f"eflomal on {len(src):,} {src_lang}-{tgt_lang} pairs ({len(src) - n:,} of the run's "
        f"training split + the {n} gold pairs), {seconds:.0f} s\n"
    )
    print("| aligner | AER | precision | recall |\n|---|---:|---:|---:|")
    for name, links in rows:
        s = alignment_scores(links, sure, possible)
        print(
            f"| {name} | {100 * s['aer']:.1f} | {100 * s['precision']:.1f} | {100 * s['recall']:.1f} |"
        )


if __name__ == "__main__":
    main()
