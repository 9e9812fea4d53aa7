"""A Markdown table comparing finished runs: model, parameters, updates, minutes, tokens/s, dev and test scores.

python scripts/compare_runs.py runs/cmp-rnn_bahdanau runs/cmp-rnn_luong runs/cmp-transformer
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from mt import checkpoint, tokenizer
from mt.run import build_for


def describe(run_dir: Path) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    progress = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    tok = tokenizer.Tokenizer.load(run_dir / "tokenizer")
    params = sum(p.numel() for p in build_for(cfg, tok).parameters())
    best = max(progress["history"], key=lambda h: h["dev_bleu"])
    row = {
        "run": run_dir.name,
        "model": cfg.model.name + (f" ({cfg.model.attention})" if cfg.model.arch == "rnn" else ""),
        "params": f"{params / 1e6:.1f}M",
        "updates": progress["step"],
        "train min": f"{progress['train_seconds'] / 60:.1f}",
        "tok/s": f"{progress.get('train_tokens', 0) / max(progress['train_seconds'], 1e-9):,.0f}",
        "dev BLEU (greedy)": f"{best['dev_bleu']:.1f}",
        "dev chrF": f"{best['dev_chrf']:.1f}",
    }
    for split in cfg.data.test_splits:
        scores_path = run_dir / "eval" / f"{split}.scores.json"
        if scores_path.exists():
            scores = json.loads(scores_path.read_text())
            row[f"{split} BLEU (beam {scores['beam_size']})"] = f"{scores['bleu']:.1f}"
            row[f"{split} chrF"] = f"{scores['chrf']:.1f}"
    return row


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(markdown([describe(run) for run in args.runs]))


if __name__ == "__main__":
    main()
