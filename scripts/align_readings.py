"""Every reading of a run's attention scored on a gold word alignment: each decoder layer and their
average, heads averaged and one by one, as predicted ("attention") and one step later ("shift"),
and — with a run trained in the other direction — both directions combined: their hard links
symmetrized (intersection, grow-diag-final), and their soft weights multiplied (`mt align
--symmetrize soft`) then read by each rule and prior. The same code as
`mt align --src --tgt --gold`; prints a Markdown table.

    python scripts/align_readings.py --run runs/tatoeba_en_fr-transformer \\
        --reverse-run runs/tatoeba_fr_en-transformer --src GOLD.e --tgt GOLD.f --gold GOLD.wa
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mt.alignment import (  # noqa: E402
    LINK_RULES,
    Alignment,
    agreement,
    alignment_scores,
    diagonal_prior,
    read_gold,
    read_sentences,
    symmetrize,
)
from mt.translator import Translator  # noqa: E402


def hard(
    alignment: Alignment, strength: float = 0.0, rule: str = "argmax", threshold: float = 0.0
) -> set[tuple[int, int]]:
    """Hard links of `alignment` read by `rule` with a diagonal prior of `strength`
    (`mt align --diagonal`), and every pair weighing at least `threshold` (`--threshold`)."""
    weights = diagonal_prior(alignment.weights, strength)
    return set(replace(alignment, weights=weights, rule=rule, threshold=threshold).links)


def readings(translator: Translator) -> list[tuple[str, dict]]:
    """(name, align_words options) of every reading worth scoring."""
    out = []
    layers = (
        translator.cfg.model.decoder_layers if translator.cfg.model.arch == "transformer" else 0
    )
    for method in ("attention", "shift"):
        if not layers:
            out.append((f"{method}", {"method": method}))
            continue
        for layer in range(layers):
            out.append((f"{method}, layer {layer}", {"method": method, "layer": layer}))
        out.append((f"{method}, layers averaged", {"method": method, "layer": list(range(layers))}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--reverse-run")
    parser.add_argument("--src", required=True)
    parser.add_argument("--tgt", required=True)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--gold-one-based", action="store_true")
    parser.add_argument("--checkpoint")
    parser.add_argument("--heads", action="store_true", help="also score each head of each layer")
    parser.add_argument(
        "--diagonal",
        default="",
        help="comma-separated strengths: also score the forward readings with each diagonal prior "
        "(`mt align --diagonal`), e.g. 4,8",
    )
    parser.add_argument(
        "--untokenize",
        action="store_true",
        help="the files are tokenized, lower-cased text: the models read it as ordinary text",
    )
    parser.add_argument(
        "--rules",
        default="argmax",
        help=f"comma-separated link rules to score each reading with ({', '.join(LINK_RULES)})",
    )
    parser.add_argument(
        "--thresholds",
        default="",
        help="comma-separated weights: also score each rule with every pair weighing at least "
        "each linked too (`mt align --threshold`), e.g. 0.3",
    )
    parser.add_argument(
        "--split-length",
        type=int,
        default=0,
        metavar="N",
        help="also score each reading on the pairs under N source words and on the rest",
    )
    parser.add_argument(
        "--adapt",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="first train each model this many passes over the pairs, translation loss only "
        "(`mt align --adapt`; never the gold links)",
    )
    parser.add_argument("--adapt-lr", type=float, default=3e-4, help="learning rate of --adapt")
    parser.add_argument(
        "--only",
        default="",
        metavar="WORDS",
        help="comma-separated: print only the readings whose name contains one of them, e.g. "
        "'soft,the run'",
    )
    args = parser.parse_args()

    src = [s.split() for s in read_sentences(args.src)]
    tgt = [t.split() for t in read_sentences(args.tgt)]
    gold = read_gold(args.gold, len(src), args.gold_one_based)
    forward = Translator.load(args.run, args.checkpoint, device="cpu")
    adapting = dict(epochs=args.adapt, lr=args.adapt_lr, untokenize=args.untokenize)
    forward.adapt(src, tgt, **adapting)
    rows: list[tuple[str, list]] = []
    links: dict[str, list] = {}
    strengths = [0.0, *(float(x) for x in args.diagonal.split(",") if x)]
    rules = args.rules.split(",")
    thresholds = [0.0, *(float(x) for x in args.thresholds.split(",") if x)]
    if unknown := set(rules) - set(LINK_RULES):
        parser.error(
            f"--rules: unknown {', '.join(sorted(unknown))} (one of {', '.join(LINK_RULES)})"
        )

    def add(name: str, found: list) -> list:
        """Rows for `found` alignments, read by each link rule with each diagonal prior; the links
        of the first rule without a prior."""
        first = len(rows)
        for rule in rules:
            for threshold in thresholds:
                for strength in strengths:
                    label = name + (f", {rule}" if rule != "argmax" else "")
                    label += f", threshold {threshold:g}" if threshold else ""
                    label += f", diagonal {strength:g}" if strength else ""
                    rows.append((label, [hard(a, strength, rule, threshold) for a in found]))
        return rows[first][1]

    # every reading starts from the attention as it is: a run's own model.align_prior and
    # align_links are not applied, so each row's label says all that was done to it
    raw = {"untokenize": args.untokenize, "prior": 0.0, "links": "argmax"}
    soft: dict[str, list] = {}  # each forward reading's alignments, to combine with the reverse's
    model = forward.model.model
    own_name = "the run's reading"
    if getattr(model, "align_head", None) is not None:
        # a run that aligns with one head (model.align_head, e.g. a guided one): score that reading
        # first, then read "heads averaged" as averaged
        name = f"{own_name}: layer(s) {list(model.align_layers)}, head {model.align_head}"
        soft[own_name] = forward.align_words(src, tgt, **raw)
        add(name, soft[own_name])
        model.align_head = None
    for name, options in readings(forward):
        soft[name] = forward.align_words(src, tgt, **raw, **options)
        links[name] = add(name, soft[name])
        if args.heads and "layer" in options and isinstance(options["layer"], int):
            for head in range(forward.cfg.model.heads):
                found = forward.align_words(src, tgt, head=head, **raw, **options)
                add(f"{name}, head {head}", found)
    if args.reverse_run:
        backward = Translator.load(args.reverse_run, args.checkpoint, device="cpu")
        backward.adapt(tgt, src, **adapting)
        reverse_model = backward.model.model
        plans = readings(backward)
        if own_name in soft and getattr(reverse_model, "align_head", None) is not None:
            plans.insert(0, (own_name, {}))
        for name, options in plans:
            found = backward.align_words(tgt, src, **raw, **options)
            if name == own_name:
                reverse_model.align_head = None  # the readings after it average the heads
            reverse = [{(i, j) for j, i in a.links} for a in found]
            rows.append((f"reverse run: {name}", reverse))
            if name not in soft:
                continue
            for strength in strengths:  # each direction's argmax links, with the same prior
                forward_links = [hard(a, strength) for a in soft[name]]
                reverse_links = [{(i, j) for j, i in hard(a, strength)} for a in found]
                for how in ("intersect", "grow-diag-final"):
                    both = [
                        symmetrize(f, r, how)
                        for f, r in zip(forward_links, reverse_links, strict=True)
                    ]
                    label = f"both directions, {name}, {how}"
                    rows.append((label + (f", diagonal {strength:g}" if strength else ""), both))
            agreed = [agreement(f, b) for f, b in zip(soft[name], found, strict=True)]
            add(f"both directions, {name}, soft", agreed)
    print(
        f"{len(src)} sentence pairs; {args.run}"
        + (f" + {args.reverse_run}" if args.reverse_run else "")
        + ("; read untokenized" if args.untokenize else "")
        + (f"; adapted {args.adapt} passes at lr {args.adapt_lr:g}" if args.adapt else "")
    )
    short = [k for k, words in enumerate(src) if len(words) < args.split_length]
    long = [k for k in range(len(src)) if k not in set(short)]
    header, rule = "| reading | AER | precision | recall |", "|---|---:|---:|---:|"
    if args.split_length:
        header += (
            f" AER, {len(short)} pairs < {args.split_length} words | AER, {len(long)} longer |"
        )
        rule += "---:|---:|"
    print(f"\n{header}\n{rule}")
    wanted = [w for w in args.only.split(",") if w]
    for name, found in rows:
        if wanted and not any(w in name for w in wanted):
            continue
        s = alignment_scores(found, *gold)
        line = f"| {name} | {100 * s['aer']:.1f} | {100 * s['precision']:.1f} | {100 * s['recall']:.1f} |"
        for part in (short, long) if args.split_length else ():
            picked = [[side[k] for k in part] for side in (found, *gold)]
            line += f" {100 * alignment_scores(*picked)['aer']:.1f} |"
        print(line)


if __name__ == "__main__":
    main()
