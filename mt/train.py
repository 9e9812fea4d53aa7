"""The training loop: label-smoothed cross-entropy, AdamW with inverse-square-root warm-up, clipping,
accumulation, validation by dev BLEU, early stopping, resumable checkpoints, TensorBoard."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mt import checkpoint, distributed
from mt.batching import Batch, EncodedCorpus, collate, epoch_batches, shard_updates, token_batches
from mt.models.base import Seq2Seq
from mt.tokenizer import PAD

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


class TrainingInterrupted(Exception):
    """Training was stopped by a signal after saving its state; the same command resumes it."""

    def __init__(self, signal_name: str, step: int, checkpoint_path: Path):
        self.signal_name, self.step = signal_name, step
        super().__init__(
            f"training stopped by {signal_name} at step {step}; saved {checkpoint_path}. "
            "Run the same command again to resume."
        )


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of (N, V) logits, with the gradient written in one pass.

    loss_i = logsumexp(x_i) - (1 - e) x_i[t_i] - e mean(x_i); its gradient is
    softmax(x_i) - e / V - (1 - e) onehot(t_i). Autograd through log_softmax + nll + smoothing
    keeps log-probabilities and adds three (N, V) gradients; on CPU this is about a quarter faster
    and holds one (N, V) tensor less.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        lse = torch.logsumexp(logits, -1)
        real = target != PAD
        picked = logits.gather(1, target[:, None]).squeeze(1)
        loss = lse - (1 - smoothing) * picked - smoothing * logits.mean(-1)
        ctx.save_for_backward(logits, lse, target, real)
        ctx.smoothing = smoothing
        return loss.masked_fill(~real, 0.0).sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, lse, target, real = ctx.saved_tensors
        e = ctx.smoothing
        grad = torch.sub(logits, lse[:, None]).exp_().sub_(e / logits.size(-1))
        grad.scatter_add_(1, target[:, None], grad.new_full((target.numel(), 1), e - 1))
        return grad.mul_((real * grad_out)[:, None]), None, None


def label_smoothed_loss(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Summed cross-entropy against targets smoothed by `smoothing` (Szegedy et al. 2016); PAD ignored.

    logits (B, T, V), target (B, T). Equal to F.cross_entropy(..., label_smoothing=smoothing,
    ignore_index=PAD, reduction="sum"), gradient included (tests/test_transformer.py).
    """
    return _SmoothedCrossEntropy.apply(logits.flatten(0, 1).float(), target.flatten(), smoothing)


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1 at `warmup` updates, then sqrt(warmup / step)."""

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))

    return factor


@dataclass
class Progress:
    """Where training is; saved in every checkpoint so a re-run resumes exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    train_seconds: float = 0.0
    train_tokens: int = 0  # real target tokens trained on
    finished: bool = False
    history: list[dict] = field(default_factory=list)


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between updates (a second signal: exit now)."""

    def __init__(self):
        self.requested, self.previous = None, {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


class Trainer:
    """Trains `model` on `train_data`, validating on `dev_data`; everything it writes is in `run_dir`.

    `validate_bleu(model, step, writer) -> (bleu, chrf)` decodes the dev set; the pipeline gives it,
    knowing the tokenizer and the references. Under torchrun the model is wrapped in DDP, each rank
    trains on its share of every update, and rank 0 alone validates and writes.
    """

    def __init__(
        self,
        cfg: DictConfig,
        model: Seq2Seq,
        train_data: EncodedCorpus,
        dev_data: EncodedCorpus,
        run_dir: Path,
        device: torch.device,
        seed: int,
        validate_bleu: Callable[[Seq2Seq, int, SummaryWriter], tuple[float, float]],
    ):
        self.cfg, self.model, self.device, self.seed = cfg, model.to(device), device, seed
        self.train_data, self.dev_data = train_data, dev_data
        self.run_dir, self.ckpt_dir = run_dir, run_dir / "checkpoints"
        self.validate_bleu = validate_bleu
        self.world, self.rank, self.main = (
            distributed.world_size(),
            distributed.rank(),
            distributed.is_main(),
        )
        self.train_model = self.model
        if self.world > 1:
            device_ids = [device.index] if device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
            fused=device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, inverse_sqrt(cfg.warmup))
        self.progress = Progress()
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        self._seed_dropout()

    def _seed_dropout(self) -> None:
        """Ranks other than 0 draw their own dropout masks (rank 0 keeps the checkpointed RNG state)."""
        if self.rank:
            torch.manual_seed(self.seed + 7919 * self.rank + self.progress.step)

    # --- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": vars(self.progress),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def save(self, name: str) -> None:
        if self.main:
            checkpoint.save(self.ckpt_dir / name, self.state())

    def resume(self) -> bool:
        """Load the newest readable checkpoint of the run, if any; a corrupt last.pt falls back to step-N.pt."""
        candidates = [self.ckpt_dir / "last.pt"] + sorted(
            self.ckpt_dir.glob("step-*.pt"), key=lambda p: -int(p.stem.split("-")[1])
        )
        for path in candidates:
            if not path.exists():
                continue
            try:
                state = checkpoint.load(path, map_location=self.device)
            except checkpoint.CheckpointError as e:
                log.warning("%s; trying an older checkpoint", e)
                continue
            load_model_state(self.model, state["model"], path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.progress = Progress(**state["progress"])
            torch.set_rng_state(state["rng"]["torch"].cpu())
            if state["rng"]["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
            self._seed_dropout()
            log.info(
                "resumed from %s at step %d (epoch %d)",
                path,
                self.progress.step,
                self.progress.epoch,
            )
            return True
        return False

    def _average_checkpoints(self) -> None:
        """averaged.pt: the mean weights of the kept step-N.pt checkpoints (the last few validations)."""
        steps = sorted(self.ckpt_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        if len(steps) >= 2:
            checkpoint.save(
                self.ckpt_dir / "averaged.pt",
                {"model": checkpoint.average(steps), "averaged": [p.name for p in steps]},
            )
            log.info(
                "averaged %s into %s",
                ", ".join(p.name for p in steps),
                self.ckpt_dir / "averaged.pt",
            )

    def _prune_step_checkpoints(self) -> None:
        steps = sorted(self.ckpt_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        for path in steps[: max(0, len(steps) - self.cfg.keep_checkpoints)]:
            path.unlink()

    # --- one update ---------------------------------------------------------------------------
    def _loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            logits, _ = model(batch.src, batch.tgt_in)
        return label_smoothed_loss(logits, batch.tgt_out, self.cfg.label_smoothing)

    def _update(self, batches: list[Batch]) -> tuple[float, int] | None:
        """One optimiser step over this rank's `batches`; None (on every rank) when a loss was not finite.

        The gradient is that of the summed loss over every rank's target tokens divided by their number,
        so N ranks take the same step as one rank accumulating their batches.
        """
        tokens = int(distributed.all_sum(sum(b.tgt_tokens for b in batches), self.device))
        scale = self.world / tokens  # DDP averages gradients over ranks
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            with (
                self.train_model.no_sync()
                if self.world > 1 and not last
                else contextlib.nullcontext()
            ):
                loss = self._loss(self.train_model, batch)
                (loss * scale).backward()
            total += loss.detach()
        loss_sum = distributed.all_sum(total.item(), self.device)
        if not math.isfinite(loss_sum):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum / tokens, tokens

    def updates(self) -> Iterator[tuple[int, int, bool, list[Batch]]]:
        """For each update from the saved position on, epoch after epoch: (epoch, the position after it,
        whether it ends the epoch, this rank's batches). The caller records the position once the
        update is done, so a checkpoint never counts an update that was not made."""
        while True:
            p = self.progress
            order = epoch_batches(self.train_data, self.cfg.batch_tokens, self.seed, p.epoch)
            shares = list(
                shard_updates(
                    len(order), p.batch_in_epoch, self.world, self.rank, self.cfg.accumulate
                )
            )
            if not shares and p.batch_in_epoch == 0:
                raise TrainingError(
                    f"an epoch has {len(order)} batches but one update needs {self.world * self.cfg.accumulate} "
                    "(processes x train.accumulate): lower train.batch_tokens or train.accumulate"
                )
            for k, (position, indices) in enumerate(shares):
                batches = [collate(self.train_data, order[i]).to(self.device) for i in indices]
                yield p.epoch, position, k == len(shares) - 1, batches
            if not shares:  # a checkpoint taken at the very end of an epoch
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0

    # --- validation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def dev_loss(self) -> float:
        self.model.eval()
        total, tokens = 0.0, 0
        lengths = ([len(s) for s in self.dev_data.src], [len(t) for t in self.dev_data.tgt])
        for indices in token_batches(*lengths, self.cfg.batch_tokens, seed=None):
            batch = collate(self.dev_data, indices).to(self.device)
            total += self._loss(self.model, batch).item()
            tokens += batch.tgt_tokens
        return total / tokens

    def validate(self, writer: SummaryWriter) -> None:
        p = self.progress
        loss = self.dev_loss()
        bleu, chrf = self.validate_bleu(self.model, p.step, writer)
        self.model.train()
        improved = bleu > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.bad_validations = bleu, p.step, 0
        else:
            p.bad_validations += 1
        p.history.append(
            {
                "step": p.step,
                "minutes": round(p.train_seconds / 60, 2),
                "dev_loss": round(loss, 4),
                "dev_bleu": round(bleu, 2),
                "dev_chrf": round(chrf, 2),
            }
        )
        for name, value in (
            ("loss", loss),
            ("ppl", math.exp(min(loss, 50))),
            ("bleu", bleu),
            ("chrf", chrf),
        ):
            writer.add_scalar(f"dev/{name}", value, p.step)
        best = " (best)" if improved else f" (best {p.best_bleu:.2f} at step {p.best_step})"
        log.info("step %d: dev loss %.3f, BLEU %.2f, chrF %.2f%s", p.step, loss, bleu, chrf, best)
        self.save(f"step-{p.step}.pt")
        self._prune_step_checkpoints()
        if improved:
            self.save("best.pt")
        self.save("last.pt")

    # --- the loop -----------------------------------------------------------------------------
    def _should_stop(self) -> str | None:
        p, cfg = self.progress, self.cfg
        if p.step >= cfg.max_steps:
            return f"reached train.max_steps={cfg.max_steps}"
        if p.epoch >= cfg.max_epochs:
            return f"reached train.max_epochs={cfg.max_epochs}"
        if cfg.max_minutes is not None and p.train_seconds >= cfg.max_minutes * 60:
            return f"reached train.max_minutes={cfg.max_minutes}"
        if p.bad_validations >= cfg.patience:
            return f"no better dev BLEU in {cfg.patience} validations (train.patience)"
        return None

    def _agree_to_stop(self, stop: StopRequest) -> tuple[str | None, bool]:
        """(reason to stop or None, interrupted by a signal), the same on every rank.

        Rank 0's limits decide (only it validates, so only it knows the patience); a signal on any rank
        stops all of them.
        """
        reason = self._should_stop() if self.main else None
        code = 2 if stop.requested else 1 if reason else 0
        code = int(distributed.all_max(code, self.device))
        if code == 2:
            return f"stopped by {stop.requested or 'a signal to another rank'}", True
        return (reason or "rank 0 reached a limit") if code else None, False

    def train(self) -> Progress:
        cfg = self.cfg
        if self.resume() and (done := self._should_stop()):
            log.info(
                "training already finished at step %d (%s); nothing to do", self.progress.step, done
            )
            return self.progress
        p = self.progress
        self.model.train()
        writer = (
            SummaryWriter(str(self.run_dir / "tb"), purge_step=p.step or None)
            if self.main
            else None
        )
        params = sum(t.numel() for t in self.model.parameters())
        limits = f"step {cfg.max_steps}" + (f" or {cfg.max_minutes} min" if cfg.max_minutes else "")
        ranks = f" x {self.world} processes" if self.world > 1 else ""
        log.info(
            "training %s parameters on %s%s, %d sentence pairs; stops at %s",
            f"{params:,}",
            self.device,
            ranks,
            len(self.train_data),
            limits,
        )
        updates = self.updates()
        window_tokens, window_loss, window_start, nonfinite = 0, 0.0, time.perf_counter(), 0
        bar = tqdm(
            total=cfg.max_steps,
            initial=p.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=2,
            disable=None if self.main else True,
        )
        with StopRequest() as stop:
            while (decision := self._agree_to_stop(stop))[0] is None:
                started = time.perf_counter()
                epoch, position, ends_epoch, batches = next(updates)
                result = self._update(batches)
                p.train_seconds += time.perf_counter() - started
                p.batch_in_epoch = position
                if ends_epoch:
                    p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                if result is None:
                    nonfinite += 1
                    log.warning(
                        "non-finite loss at step %d (epoch %d): update skipped", p.step, epoch
                    )
                    if writer:
                        writer.add_scalar("train/nonfinite_losses", nonfinite, p.step)
                    if nonfinite >= cfg.max_nonfinite:
                        # no bad update was applied, so the weights are the last good ones: keep them
                        self.save("last.pt")
                        if writer:
                            writer.close()
                        raise TrainingError(
                            f"{nonfinite} non-finite losses in a row at step {p.step} (train.max_nonfinite); "
                            f"the last good state is saved in {self.ckpt_dir / 'last.pt'}. "
                            "Try a lower train.lr or train.precision=fp32"
                        )
                    continue
                nonfinite = 0
                loss, tokens = result
                p.step += 1
                p.train_tokens += tokens
                bar.update(1)
                window_loss += loss * tokens
                window_tokens += tokens
                if p.step % cfg.log_every == 0 and self.main:
                    self._log_window(
                        writer,
                        bar,
                        epoch,
                        window_loss / window_tokens,
                        window_tokens / (time.perf_counter() - window_start),
                    )
                    window_tokens, window_loss, window_start = 0, 0.0, time.perf_counter()
                if p.step % cfg.validate_every == 0 and self.main:
                    self.validate(writer)
                    window_start = time.perf_counter()
        bar.close()
        reason, interrupted = decision
        if (
            self.main
            and p.step
            and not interrupted
            and (not p.history or p.history[-1]["step"] != p.step)
        ):
            self.validate(writer)
        p.finished = not interrupted
        self.save("last.pt")
        if self.main and not interrupted:
            self._average_checkpoints()
        if writer:
            writer.close()
        log.info(
            "training ended at step %d: %s; best dev BLEU %.2f at step %d",
            p.step,
            reason,
            p.best_bleu,
            p.best_step,
        )
        if interrupted:
            raise TrainingInterrupted(
                stop.requested or "SIGTERM", p.step, self.ckpt_dir / "last.pt"
            )
        return p

    def _log_window(
        self, writer: SummaryWriter, bar: tqdm, epoch: int, loss: float, rate: float
    ) -> None:
        """Training scalars of the last `log_every` updates: TensorBoard, the progress bar, and the log
        when there is no terminal (nohup, a scheduler)."""
        lr = self.scheduler.get_last_lr()[0]
        values = {
            "loss": loss,
            "ppl": math.exp(min(loss, 50)),
            "lr": lr,
            "tokens_per_s": rate,
            "epoch": epoch,
        }
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, self.progress.step)
        bar.set_postfix(
            loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}", ep=epoch, refresh=False
        )
        if bar.disable:
            log.info(
                "step %d: loss %.3f, %.0f target tokens/s, lr %.2e, epoch %d",
                self.progress.step,
                loss,
                rate,
                lr,
                epoch,
            )


def load_model_state(model: Seq2Seq, weights: dict, path: Path) -> None:
    """Load weights into `model`; a checkpoint of another shape names the mismatching tensors."""
    own = model.state_dict()
    problems = [
        f"{name}: checkpoint {tuple(t.shape)} vs model {tuple(own[name].shape)}"
        for name, t in weights.items()
        if name in own and own[name].shape != t.shape
    ]
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if problems or missing or unexpected:
        details = (
            problems
            + [f"missing {n}" for n in missing[:5]]
            + [f"unexpected {n}" for n in unexpected[:5]]
        )
        raise checkpoint.CheckpointError(
            f"{path} does not match the model config: " + "; ".join(details[:8])
        )
    model.load_state_dict(weights)
