"""docs/results.csv, one row per reported result, and the Markdown tables made from it.

    python scripts/results.py add --run RUN [--split S] --command "make train ARGS=…" [--note …] [--headline] [--replace]
    python scripts/results.py render          # the tables in README.md and docs/RESULTS.md

`add` reads what the run wrote — config.yaml, metrics.jsonl (training minutes and updates),
train.log (how training ended), eval/<split>.scores.json (`mt eval`) — and appends a row with this
machine and today's date. `render` rewrites the blocks between `<!-- results:NAME -->` and
`<!-- /results -->` in the documents; NAME picks the rows (`all`; `headline`: the rows marked so,
which the README shows; or a data name such as `multi30k_en_de`).

A run that trains on after it was reported (resumed in a later session) is reported again with
`add --replace`: the row takes the place of the run's earlier rows — those with the same data,
split, model, experiment, command and checkpoint — instead of standing beside them.

How a training ended (`ended`): `converged` (early stopping: train.patience validations without a
better dev score), `budget` (train.max_minutes), `update limit` / `epoch limit` (train.max_steps /
max_epochs), `stopped` (by a signal or by hand, before any of these).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mt.checkpoint import atomic_write_text  # noqa: E402

CSV = ROOT / "docs" / "results.csv"
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "RESULTS.md"]
FIELDS = [
    "date",
    "machine",
    "data",
    "split",
    "model",
    "params_m",
    "experiment",
    "command",
    "train_minutes",
    "updates",
    "best_step",
    "checkpoint",
    "beam",
    "bleu",
    "chrf",
    "bleu_tok_lc",
    "note",
    "ended",
    "headline",
]
ENDINGS = {  # train.log's "training ended at step N: REASON" -> the `ended` column
    "train.patience": "converged",
    "train.max_minutes": "budget",
    "train.max_steps": "update limit",
    "train.max_epochs": "epoch limit",
}
BLOCK = re.compile(r"(<!-- results:(\S+) -->\n)(.*?)(<!-- /results -->)", re.S)


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The core count, CPU model and widest vector extension of this machine, e.g. "2-core AMD
    EPYC, AVX-512-BF16": hosts with the same model name differ by 2-3x in training speed when one
    lacks AVX-512, so a figure in minutes names it."""
    info: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    cpu = info.get("model name") or platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    isa = next((name for flag, name in VECTOR_EXTENSIONS if flag in flags), "")
    return f"{os.cpu_count()}-core {cpu}" + (f", {isa}" if isa else "")


VECTOR_EXTENSIONS = [  # /proc/cpuinfo flag -> the name in the machine column, widest first
    ("avx512_bf16", "AVX-512-BF16"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
]


def read_rows() -> list[dict]:
    if not CSV.exists():
        return []
    with CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(CSV, out.getvalue())


def how_it_ended(run: Path) -> str:
    """The `ended` value of a run, from the last "training ended" line of its train.log."""
    log = run / "train.log"
    lines = log.read_text().splitlines() if log.exists() else []
    ends = [line for line in lines if "training ended at step" in line]
    if not ends:
        return "stopped"
    reason = ends[-1].split(": ", 2)[-1]
    return next((ended for key, ended in ENDINGS.items() if key in reason), "stopped")


def experiment(command: str, name: str) -> str:
    """The `experiment` value of a row: the recipe its command names (`experiment=multi30k_tiny`),
    else the run's name."""
    named = re.search(r"(?<![\w.])experiment=([\w/.-]+)", command)
    return named.group(1) if named else name


def run_row(run: Path, split: str | None, command: str, note: str, headline: bool) -> dict:
    """A row for `run`'s scores on `split` (its first test split by default)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    split = split or cfg["data"]["test_splits"][0]
    scores_path = run / "eval" / f"{split}.scores.json"
    if not scores_path.exists():
        sys.exit(f"{scores_path} not found: run `mt eval --run {run}` first")
    scores = json.loads(scores_path.read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if not records:
        sys.exit(f"{run}/metrics.jsonl has no validation yet")
    budget = re.fullmatch(r"best-([\d.e+-]+)min(?:\.pt)?", Path(scores.get("checkpoint", "")).name)
    if budget:  # train.budget_checkpoints: the run as it was at that many training minutes
        minutes = float(budget.group(1))
        cut = next((k for k, r in enumerate(records) if r["minutes"] >= minutes), None)
        if cut is None:
            sys.exit(f"{run}/metrics.jsonl never reaches {minutes:g} training minutes")
        records = records[: cut + 1]
    stop = cfg["train"].get("stop_metric", "bleu")
    best = max(records, key=lambda r: r.get(f"dev_{stop}", float("-inf")))
    from mt import checkpoint

    state = checkpoint.load(run / "checkpoints" / "best.pt")
    seen, params = set(), 0
    for v in state["model"].values():  # tied weights are one tensor saved under several names
        if v.untyped_storage().data_ptr() not in seen:
            seen.add(v.untyped_storage().data_ptr())
            params += v.numel()
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "data": cfg["data"]["name"],
        "split": split,
        "model": cfg["model"]["name"],
        "params_m": f"{params / 1e6:.2f}",
        "experiment": experiment(command, cfg["name"]),
        "command": command,
        "train_minutes": f"{records[-1]['minutes']:.1f}",
        "updates": records[-1]["step"],
        "best_step": best["step"],
        "checkpoint": scores.get("checkpoint", ""),
        "beam": scores.get("beam_size", ""),
        "bleu": f"{scores['bleu']:.2f}",
        "chrf": f"{scores['chrf']:.2f}",
        "bleu_tok_lc": f"{scores['bleu_tok_lc']:.2f}",
        "note": note,
        "ended": "budget" if budget else how_it_ended(run),  # a budget checkpoint: its own end
        "headline": "yes" if headline else "",
    }


SAME_RUN = ("data", "split", "model", "experiment", "command", "checkpoint")


def replace_rows(rows: list[dict], new: dict) -> tuple[list[dict], list[dict]]:
    """`rows` with `new` in the place of the earlier rows of the same run (equal in SAME_RUN), or
    appended when there are none; and the rows it replaced."""
    out, replaced = [], []
    for row in rows:
        if any(row[k] != str(new[k]) for k in SAME_RUN):
            out.append(row)
        else:
            if not replaced:
                out.append(new)
            replaced.append(row)
    return (out if replaced else [*rows, new]), replaced


def table(rows: list[dict]) -> str:
    lines = [
        "| data | split | model | training | test BLEU | chrF | tok-lc BLEU | date, machine |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        training = f"{float(r['train_minutes']):,.0f} min, {int(r['updates']):,} updates"
        if r.get("ended"):
            training += f", {r['ended']}"
        if r["note"]:
            training += f"; {r['note']}"
        model = f"`{r['model']}` ({r['params_m']}M)"
        if r["experiment"]:
            model += f", `{r['experiment']}`"
        lines.append(
            f"| {r['data']} | {r['split']} | {model} | {training} | {r['bleu']} | {r['chrf']} "
            f"| {r['bleu_tok_lc']} | {r['date']}, {r['machine']} |"
        )
    return "\n".join(lines) + "\n"


def chosen(rows: list[dict], name: str) -> list[dict]:
    """The rows of a `<!-- results:NAME -->` block."""
    if name == "all":
        return rows
    if name == "headline":
        return [r for r in rows if r.get("headline") == "yes"]
    return [r for r in rows if r["data"] == name]


def render(rows: list[dict]) -> None:
    for path in DOCUMENTS:
        text = path.read_text()

        def block(m: re.Match) -> str:
            return m.group(1) + table(chosen(rows, m.group(2))) + m.group(4)

        new = BLOCK.sub(block, text)
        if new != text:
            atomic_write_text(path, new)
            print(f"rewrote the results tables of {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="append a row for a run's test scores")
    add.add_argument("--run", type=Path, required=True)
    add.add_argument("--split", help="the test split (default: the run's first)")
    add.add_argument("--command", required=True, help="the command that reproduces the run")
    add.add_argument("--note", default="", help="anything a reader must know (shared cores, …)")
    add.add_argument("--headline", action="store_true", help="shown in the README's table too")
    add.add_argument(
        "--replace",
        action="store_true",
        help="the run was reported before (and trained on since): its earlier rows give way",
    )
    sub.add_parser("render", help="rewrite the results tables of README.md and docs/RESULTS.md")
    args = parser.parse_args()
    rows = read_rows()
    if args.action == "add":
        new = run_row(args.run, args.split, args.command, args.note, args.headline)
        if args.replace:
            rows, replaced = replace_rows(rows, new)
            if not replaced:
                sys.exit(
                    f"--replace: no earlier row of this run ({', '.join(SAME_RUN)} as "
                    f"{', '.join(str(new[k]) for k in SAME_RUN)}); nothing written"
                )
            for old in replaced:
                print(
                    f"replaces the row of {old['date']}: {old['updates']} updates, BLEU {old['bleu']}"
                )
        else:
            rows.append(new)
        write_rows(rows)
        print(table([new]))
    render(rows)


if __name__ == "__main__":
    main()
