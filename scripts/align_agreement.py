"""How often a run's alignment reading agrees with eflomal on its own training data: for a sample
of training pairs, the share of target pieces (among those eflomal links) whose most-attended
source piece is one eflomal links them to. The links are guided alignment's cached stage
(`train.guided_alignment=eflomal`, built here if the run was trained without it).

    python scripts/align_agreement.py --run runs/tatoeba-guided [--layer 1] [--head 0] [--pairs 400]

`--offset K` reads each target piece's row from the step K later (1: shift-att; -1: the step
before): where attention lags or leads the words it predicts, another offset agrees more.
Transformer and RNN runs alike (--layer and --head are the Transformer's).

Prints one line; nothing is written but the stage cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--layer", type=int, help="decoder layer (default: the run's reading)")
    parser.add_argument("--head", type=int, help="head (default: the run's; -1: heads averaged)")
    parser.add_argument("--pairs", type=int, default=400, help="training pairs, evenly spaced")
    parser.add_argument("--checkpoint", help="best | last | a file in checkpoints/ (default: best)")
    parser.add_argument("--offset", type=int, default=0, help="read the row of the step K later")
    args = parser.parse_args()

    import torch
    from omegaconf import OmegaConf

    from mt import stages
    from mt.batching import collate
    from mt.translator import Translator

    cfg = OmegaConf.load(Path(args.run) / "config.yaml")
    if os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = os.environ["MT_DATA_DIR"]
    if not cfg.train.get("guided_alignment"):
        cfg.train.guided_alignment = "eflomal"
        cfg.train.guided_symmetrize = cfg.train.get("guided_symmetrize", "grow-diag-final")
    built = stages.build_stages(cfg)
    for name in ("spm.model", "src.model", "tgt.model"):
        mine, stage = Path(args.run) / "tokenizer" / name, built.tokenizer_folder / name
        if mine.exists() and (not stage.exists() or mine.read_bytes() != stage.read_bytes()):
            sys.exit(
                f"{args.run}: its corpus, prepared now, gives another tokenizer than the run's "
                "(the corpus or the way mt prepares it changed since it trained)"
            )
    train = built.encoded["train"]
    model = Translator.load(args.run, args.checkpoint, device="cpu").model.model.eval()
    transformer = cfg.model.arch == "transformer"
    if transformer:
        if args.head is not None:
            model.align_head = None if args.head < 0 else args.head
        model.choose_alignment(args.layer)
    step = max(len(train) // args.pairs, 1)
    batch = collate(train, list(range(0, len(train), step))[: args.pairs])
    with torch.inference_mode():
        _, attn = model(batch.src, batch.tgt_in, need_attn=True)
    steps = attn.shape[1]
    rows = (torch.arange(steps) + args.offset).clamp(0, steps - 1)
    attn = attn[:, rows]  # each target piece's row from the step `offset` later (edges repeated)
    linked = batch.align.sum(-1) > 0
    picked = batch.align.gather(-1, attn.argmax(-1, keepdim=True)).squeeze(-1) > 0
    share = picked[linked].float().mean().item()
    if transformer:
        head = "heads averaged" if model.align_head is None else f"head {model.align_head}"
        reading = f"layer(s) {list(model.align_layers)}, {head}"
    else:
        reading = cfg.model.name
    reading += f", offset {args.offset:+d}" if args.offset else ""
    print(
        f"{args.run}: {reading}: {share:.1%} of "
        f"{int(linked.sum()):,} linked target pieces ({batch.src.shape[0]} training pairs) attend "
        "most to a source piece eflomal links them to"
    )


if __name__ == "__main__":
    main()
