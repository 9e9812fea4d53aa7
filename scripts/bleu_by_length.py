"""BLEU by source-sentence length for several runs, from their evaluated test output (eval/<split>.hyp,
written by `mt eval`; nothing is decoded again): the plot that shows where attention matters — a model
without it (`model.attention=none`) falls off as sentences grow (Bahdanau et al. 2015, figure 2).

    python scripts/bleu_by_length.py runs/a runs/b -o docs/img/bleu_by_length.png [--split test]

The hypotheses are those of the run's last `mt eval` of the split; the table names the checkpoint
they came from (`mt eval --run R --checkpoint best-40min` for a budget checkpoint). Sentences are
bucketed by source words (`--buckets 1,10,15,20,30,1000`: [1, 10), [10, 15), ...); each bucket's
BLEU is sacreBLEU's corpus BLEU of its sentences. Prints the table as Markdown too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def test_pairs(run: Path, split: str | None) -> tuple[str, list[str], list[str], list[str], str]:
    """(split, sources, references, hypotheses, the checkpoint they came from) of an evaluated run."""
    import json

    from omegaconf import OmegaConf

    from mt import stages

    cfg = OmegaConf.load(run / "config.yaml")
    if os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = os.environ["MT_DATA_DIR"]
    split = split or cfg.data.test_splits[0]
    hyp_file = run / "eval" / f"{split}.hyp"
    if not hyp_file.exists():
        sys.exit(f"{hyp_file}: no such file; run `mt eval --run {run} --split {split}` first")
    _, corpus = stages.prepare_stage(cfg)
    data = corpus[split]
    hyps = hyp_file.read_text(encoding="utf-8").splitlines()
    if len(hyps) != len(data):
        sys.exit(f"{hyp_file}: {len(hyps)} lines for {len(data)} sentences of {split}")
    scores = run / "eval" / f"{split}.scores.json"
    which = json.loads(scores.read_text()).get("checkpoint", "?") if scores.exists() else "?"
    return split, list(data["src"]), list(data["tgt"]), hyps, which


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--split")
    parser.add_argument("--label", action="append", help="a label per run (default: its name)")
    parser.add_argument("--buckets", default="1,10,15,20,25,30,1000")
    args = parser.parse_args()
    import sacrebleu

    edges = [int(x) for x in args.buckets.split(",")]
    names = [
        f"{a}–{b - 1}" if b < 1000 else f"{a}+" for a, b in zip(edges, edges[1:], strict=False)
    ]
    fig, axes = plt.subplots(figsize=(7, 4), layout="constrained")
    table = ["| run | checkpoint | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for i, run in enumerate(args.runs):
        split, sources, refs, hyps, which = test_pairs(run, args.split)
        scores, counts = [], []
        for low, high in zip(edges, edges[1:], strict=False):
            chosen = [k for k, s in enumerate(sources) if low <= len(s.split()) < high]
            counts.append(len(chosen))
            scores.append(
                sacrebleu.corpus_bleu([hyps[k] for k in chosen], [[refs[k] for k in chosen]]).score
                if chosen
                else float("nan")
            )
        label = args.label[i] if args.label and i < len(args.label) else run.name
        axes.plot(names, scores, marker="o", label=label)
        table.append(
            f"| {label} | {which} | "
            + " | ".join(f"{s:.1f} ({n})" for s, n in zip(scores, counts, strict=True))
            + " |"
        )
    axes.set_xlabel(f"source words ({split})")
    axes.set_ylabel("BLEU")
    axes.grid(alpha=0.3)
    axes.legend()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print("\n".join(table) + "\n\n(sentences per bucket in parentheses)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
