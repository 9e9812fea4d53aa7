"""Dev scores against training minutes for several runs, in one PNG, from each run's metrics.jsonl
(the history its validations wrote; nothing is re-trained).

python scripts/plot_curves.py runs/a runs/b -o docs/img/curves.png [--metric bleu] [--with-validation]
    [--x minutes|updates|tokens] [--marks 30,35,40]

Minutes depend on the machine; updates and target tokens trained on do not, so `--x updates` (or
`--x tokens`, for runs of different batch sizes) compares runs trained on different machines.

A run may also be given as a copy of its metrics.jsonl (docs/curves/ keeps those of the reported
runs, so their curves can be drawn again once the run directories are gone).

With --marks, also prints a Markdown table: for each run, the first validation that reached each
dev score, as training minutes and as minutes with validation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

X_AXES = {  # --x: (the key of a metrics.jsonl line, the axis label)
    "minutes": ("minutes", "training minutes"),
    "updates": ("step", "updates"),
    "tokens": ("tokens", "target tokens trained on"),
}


def read_history(run: Path) -> list[dict]:
    """The validations of a run, one dict per line of its metrics.jsonl (`run`: the run directory
    or the file itself)."""
    path = run if run.is_file() else run / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"{path}: no such file (a run trained with `mt train` writes it)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_name(run: Path) -> str:
    """A run directory's name, or a metrics file's stem (docs/curves/<run>.jsonl)."""
    return run.stem if run.is_file() else run.name


def curve(run: Path, metric: str, x_key: str) -> tuple[list[float], list[float]]:
    """A run's validations as (x, dev score) lists; x is the metrics.jsonl key `x_key`."""
    history = [h for h in read_history(run) if f"dev_{metric}" in h]
    missing = next((h for h in history if x_key not in h), None)
    if missing is not None:
        raise SystemExit(
            f"{run}: the validation at update {missing['step']} records no {x_key!r} "
            "(older runs record no tokens: use --x updates)"
        )
    return [h[x_key] for h in history], [h[f"dev_{metric}"] for h in history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories (or their metrics.jsonl files)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--metric", default="bleu", help="dev metric to plot (default: bleu)")
    parser.add_argument(
        "--with-validation",
        action="store_true",
        help="x axis: minutes including validation (default: training minutes alone)",
    )
    parser.add_argument(
        "--x",
        choices=sorted(X_AXES),
        default="minutes",
        help="x axis: training minutes (default), updates, or target tokens trained on",
    )
    parser.add_argument("--label", action="append", help="a label per run (default: its name)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--marks", help="dev scores (e.g. 30,35,40): print the minutes each run took to reach them"
    )
    args = parser.parse_args()
    x_key, x_label = X_AXES[args.x]
    if args.with_validation:
        if args.x != "minutes":
            parser.error("--with-validation goes with --x minutes")
        x_key, x_label = "minutes_with_validation", "training minutes (with validation)"
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, run_dir in enumerate(args.runs):
        label = args.label[i] if args.label and i < len(args.label) else run_name(run_dir)
        axes.plot(*curve(run_dir, args.metric, x_key), marker=".", label=label)
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"dev {args.metric} (greedy)")
    axes.grid(alpha=0.3)
    axes.legend()
    if args.title:
        axes.set_title(args.title)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output)
    print(f"wrote {args.output}")
    if args.marks:
        marks = [float(m) for m in args.marks.split(",")]
        print(time_to_marks(args.runs, args.metric, marks, args.label or []))


def time_to_marks(runs: list[Path], metric: str, marks: list[float], labels: list[str]) -> str:
    """Markdown: per run and mark, 'training minutes / with validation (update)' of the first
    validation whose dev score reached the mark; '—' where none did."""
    lines = [
        f"| run | {' | '.join(f'dev {metric} ≥ {m:g}' for m in marks)} |",
        "|---|" + "---:|" * len(marks),
    ]
    for i, run_dir in enumerate(runs):
        history = read_history(run_dir)
        cells = []
        for mark in marks:
            first = next((h for h in history if h.get(f"dev_{metric}", -1e9) >= mark), None)
            cells.append(
                f"{first['minutes']:.1f} / {first['minutes_with_validation']:.1f} min "
                f"(update {first['step']:,})"
                if first
                else "—"
            )
        label = labels[i] if i < len(labels) else run_name(run_dir)
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
