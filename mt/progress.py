"""Where training is and what it reports: the resumable progress, the loss and throughput of the
last updates, and metrics.jsonl (one line per validation, for scripts)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mt import checkpoint

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training is; saved in every checkpoint so a re-run resumes exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    epoch_batches: int = 0  # batches in this epoch's order (0: not recorded, before 2026-11-24)
    best_score: float = -math.inf  # of train.stop_metric, signed so that higher is better
    best_step: int = 0
    bad_validations: int = 0
    lr_scale: float = 1.0  # train.schedule=plateau: the product of its decreases so far
    plateau_bad: int = 0  # regular validations without a better score since the last decrease
    train_seconds: float = 0.0
    validation_seconds: float = 0.0
    train_tokens: int = 0  # real target tokens trained on
    finished: bool = False
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        state = dict(state)
        if "best_bleu" in state:  # checkpoints written before train.stop_metric
            state["best_score"] = state.pop("best_bleu")
        return cls(**state)


class Window:
    """Loss and throughput over the updates since the last log line."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.tokens, self.loss_sum, self.start = 0, 0.0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss_sum += loss * tokens
        self.tokens += tokens

    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    def rate(self) -> float:
        return self.tokens / (time.perf_counter() - self.start)


def progress_report(
    writer: SummaryWriter, bar: tqdm, step: int, epoch: int, window: Window, lr: float
) -> None:
    """Training scalars of the last updates: TensorBoard, the progress bar, and the log when there is
    no terminal (nohup, a scheduler). Starts a new window."""
    loss, rate = window.loss(), window.rate()
    window.restart()
    values = {"loss": loss, "ppl": math.exp(min(loss, 50)), "lr": lr, "tokens_per_s": rate}
    for name, value in {**values, "epoch": epoch}.items():
        writer.add_scalar(f"train/{name}", value, step)
    bar.set_postfix(
        loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}", ep=epoch, refresh=False
    )
    if bar.disable:
        log.info(
            "step %d: loss %.3f, %.0f target tokens/s, lr %.2e, epoch %d",
            step,
            loss,
            rate,
            lr,
            epoch,
        )


def append_metrics(run_dir: Path, record: dict) -> None:
    """One validation's line of run_dir/metrics.jsonl."""
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def rewrite_metrics(run_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl as a checkpoint's history has it (drops validations a kill undid)."""
    lines = "".join(json.dumps(h) + "\n" for h in history)
    checkpoint.atomic_write_text(run_dir / "metrics.jsonl", lines)
