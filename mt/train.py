"""The training loop: one update, validation with early stopping on a chosen metric, checkpoints
at validations and on a time interval, TensorBoard. Resumes exactly from the newest checkpoint."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mt import checkpoint, distributed, metrics, process
from mt.batching import Batch, EncodedCorpus, collate, token_batches, training_updates
from mt.errors import MTError
from mt.loss import alignment_loss, label_smoothed_loss
from mt.models.base import Seq2Seq
from mt.progress import Progress, Window, append_metrics, progress_report, rewrite_metrics
from mt.schedule import schedule

log = logging.getLogger(__name__)

# validate(model, step, writer) -> {metric name: dev score}; the pipeline gives it, knowing the
# tokenizer and the references
Validate = Callable[[Seq2Seq, int, SummaryWriter], dict[str, float]]


class TrainingError(MTError):
    """Training cannot go on; the message says why and what was kept."""


class TrainingInterrupted(Exception):
    """Training was stopped by a signal after saving its state; the same command resumes it."""

    def __init__(self, signal_name: str, step: int, checkpoint_path: Path):
        self.signal_name, self.step = signal_name, step
        super().__init__(
            f"training stopped by {signal_name} at step {step}; saved {checkpoint_path}. "
            "Run the same command again to resume."
        )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


class Trainer:
    """Trains `model` on `train_data`, validating on `dev_data`; everything it writes is in `run_dir`.

    Under torchrun the model is wrapped in DDP, each rank trains on its share of every update, and
    rank 0 alone validates and writes.
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
        validate: Validate,
    ):
        self.cfg, self.model, self.device, self.seed = cfg, model.to(device), device, seed
        if device.type == "cpu":  # each update's logits reuse the last one's pages
            process.keep_freed_memory()
        self.train_data, self.dev_data = train_data, dev_data
        self.run_dir, self.ckpt_dir = run_dir, run_dir / "checkpoints"
        self.validate_fn = validate
        self.stop_metric = metrics.get(cfg.stop_metric)
        if any(not m > 0 for m in cfg.budget_checkpoints):
            raise TrainingError(
                f"train.budget_checkpoints: minutes of training above 0, not "
                f"{list(cfg.budget_checkpoints)}"
            )
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.main = distributed.is_main()
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
        try:
            shape = schedule(cfg.schedule, cfg.warmup, cfg.max_steps)
        except ValueError as e:
            raise TrainingError(f"train.schedule: {e}") from None
        self.plateau = cfg.schedule == "plateau"
        if self.plateau and not (cfg.plateau_patience >= 1 and 0 < cfg.plateau_factor < 1):
            raise TrainingError(
                "train.plateau_patience must be 1 or more and train.plateau_factor between 0 and 1, "
                f"not {cfg.plateau_patience} and {cfg.plateau_factor}"
            )
        # self.progress is read at each step: a resumed run's decreases apply
        self.progress = Progress()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: shape(step) * self.progress.lr_scale
        )
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        self.ema = self._ema(cfg.ema_decay)
        self.last_save = time.monotonic()
        self.guided_sum, self.guided_tokens = torch.zeros(()), 0  # guided alignment's loss
        self._seed_dropout()

    def _ema(self, decay: float | None) -> AveragedModel | None:
        """The exponential moving average of the weights (rank 0 alone: it validates and saves)."""
        if decay is None:
            return None
        if not 0 < decay < 1:
            raise TrainingError(
                f"train.ema_decay: a decay between 0 and 1 (e.g. 0.999), not {decay}"
            )
        if not self.main:
            return None

        @torch.no_grad()
        def moving_average(averaged: list, trained: list, updates: torch.Tensor) -> None:
            # the decay warms up as TensorFlow's ExponentialMovingAverage(num_updates) does, so the
            # first, random weights are soon forgotten: (1 + n) / (10 + n) until it reaches `decay`
            n = int(updates)
            torch._foreach_lerp_(averaged, trained, 1 - min(decay, (1 + n) / (10 + n)))

        return AveragedModel(self.model, multi_avg_fn=moving_average)

    @property
    def evaluated(self) -> Seq2Seq:
        """The weights validated, saved as a checkpoint's "model" and decoded: the moving average
        under train.ema_decay, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    def _seed_dropout(self) -> None:
        """Ranks other than 0 draw their own dropout masks (rank 0 keeps the checkpointed RNG state)."""
        if self.rank:
            torch.manual_seed(self.seed + 7919 * self.rank + self.progress.step)

    # --- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        """The checkpoint: its "model" is the weights to decode with; under train.ema_decay,
        "training_model" holds the trained ones that a resumed run goes on from."""
        averaged = {}
        if self.ema is not None:
            averaged = {
                "training_model": self.model.state_dict(),
                "ema_updates": int(self.ema.n_averaged),
            }
        return {
            "model": self.evaluated.state_dict(),
            **averaged,
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
            if name == "last.pt":
                self.last_save = time.monotonic()

    def resume(self) -> bool:
        """Load the newest complete checkpoint of the run (last.pt or step-N.pt), if any; the
        partial files of a save that was killed are deleted first."""
        if self.main:
            for path in checkpoint.remove_partial(self.ckpt_dir):
                log.info("deleted %s, left by a save that did not finish", path.name)
        found = checkpoint.newest(self.ckpt_dir, map_location=self.device)
        if found is None:
            return False
        path, state = found
        checkpoint.load_model_state(self.model, state.get("training_model", state["model"]), path)
        if self.ema is not None:
            # a checkpoint without an average (train.ema_decay was off): it starts from these weights
            if "training_model" in state:
                checkpoint.load_model_state(self.ema.module, state["model"], path)
            self.ema.n_averaged.fill_(state.get("ema_updates", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress.from_state(state["progress"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self._seed_dropout()
        log.info(
            "resumed from %s at step %d (epoch %d)", path, self.progress.step, self.progress.epoch
        )
        if path.name != "last.pt":
            # a kill before (or while) last.pt was written: it becomes this state again, so that
            # "last" (mt eval --checkpoint last, a sweep's dev score) names the newest state
            self.save("last.pt")
        return True

    def _save_on_interval(self) -> None:
        """last.pt every train.save_every_minutes, so that a kill loses minutes, not a validation."""
        every = self.cfg.save_every_minutes
        if every and time.monotonic() - self.last_save >= every * 60:
            self.save("last.pt")

    # --- one update ---------------------------------------------------------------------------
    def _loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            logits, attn = model(batch.src, batch.tgt_in, need_attn=batch.align is not None)
        loss = label_smoothed_loss(logits, batch.tgt_out, self.cfg.label_smoothing)
        if batch.align is not None:
            guided = alignment_loss(attn, batch.align)
            loss = loss + self.cfg.guided_weight * guided
            if model.training:  # its own curve: train/alignment_loss per target token
                self.guided_sum = self.guided_sum + guided.detach()
                self.guided_tokens += batch.tgt_tokens
        return loss

    def update(self, batches: list[Batch]) -> tuple[float, int] | None:
        """One optimiser step over this rank's `batches`: (loss per target token, target tokens), or
        None (on every rank) when a loss was not finite.

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
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss_sum / tokens, tokens

    # --- validation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def dev_loss(self) -> float:
        model = self.evaluated.eval()
        total, tokens = 0.0, 0
        lengths = (self.dev_data.src.lengths, self.dev_data.tgt.lengths)
        for indices in token_batches(*lengths, self.cfg.batch_tokens, seed=None):
            batch = collate(self.dev_data, indices).to(self.device)
            total += self._loss(model, batch).item()
            tokens += batch.tgt_tokens
        return total / tokens

    def _apply_lr_scale(self) -> None:
        """The rate of the next update with the plateau decreases so far (Progress.lr_scale)."""
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _sync_lr_scale(self) -> None:
        """After a regular validation (rank 0 alone validates), every rank takes rank 0's rate."""
        if self.world > 1 and self.plateau:
            p = self.progress
            p.lr_scale = distributed.all_sum(p.lr_scale if self.main else 0.0, self.device)
            self._apply_lr_scale()

    def validate(self, writer: SummaryWriter, regular: bool = False) -> None:
        """Dev loss and metrics; best.pt by train.stop_metric; step-N.pt, last.pt, metrics.jsonl.
        `regular`: the validation of every train.validate_every updates, the only one at which
        train.schedule=plateau decreases the rate (so that every rank knows when to take it)."""
        started, p = time.perf_counter(), self.progress
        loss = self.dev_loss()
        scores = self.validate_fn(self.evaluated, p.step, writer)
        self.model.train()
        name = self.stop_metric.name
        signed = scores[name] if self.stop_metric.higher_is_better else -scores[name]
        improved = signed > p.best_score
        if improved:
            p.best_score, p.best_step, p.bad_validations, p.plateau_bad = signed, p.step, 0, 0
        else:
            p.bad_validations += 1
            if regular and self.plateau:
                p.plateau_bad += 1
        if regular and self.plateau and p.plateau_bad >= self.cfg.plateau_patience:
            p.lr_scale, p.plateau_bad = p.lr_scale * self.cfg.plateau_factor, 0
            self._apply_lr_scale()
            log.info(
                "step %d: no better dev %s in %d validations: learning rate x %g, now %.2e",
                p.step,
                self.stop_metric.name,
                self.cfg.plateau_patience,
                self.cfg.plateau_factor,
                self.scheduler.get_last_lr()[0],
            )
        p.validation_seconds += time.perf_counter() - started
        record = {
            "step": p.step,
            "minutes": round(p.train_seconds / 60, 2),
            "minutes_with_validation": round((p.train_seconds + p.validation_seconds) / 60, 2),
            "tokens": p.train_tokens,  # target tokens trained on: the axis no machine changes
            "dev_loss": round(loss, 4),
            **{f"dev_{k}": round(v, 2) for k, v in scores.items()},
        }
        p.history.append(record)
        append_metrics(self.run_dir, record)
        for key, value in {"loss": loss, "ppl": math.exp(min(loss, 50)), **scores}.items():
            writer.add_scalar(f"dev/{key}", value, p.step)
        best = abs(p.best_score)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
        note = " (best)" if improved else f" (best {name} {best:.2f} at step {p.best_step})"
        log.info("step %d: dev loss %.3f, %s%s", p.step, loss, shown, note)
        self.save(f"step-{p.step}.pt")
        checkpoint.prune(self.ckpt_dir, self.cfg.keep_checkpoints)
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
            return f"no better dev {cfg.stop_metric} in {cfg.patience} validations (train.patience)"
        return None

    def train(self) -> Progress:
        """Train until a limit, early stopping or a signal; returns where training ended."""
        if self.resume() and (done := self._should_stop()):
            log.info(
                "training already finished at step %d (%s); nothing to do", self.progress.step, done
            )
            return self.progress
        if self.main:
            rewrite_metrics(self.run_dir, self.progress.history)
        writer = self._start()
        # the budget marks still to come (a resumed run may have kept some already)
        self.budget_marks = sorted(
            m for m in self.cfg.budget_checkpoints if not self.budget_checkpoint(m).exists()
        )
        # the handler stays while the last checkpoint is written: a signal then (torchrun passes on
        # the one that stopped the loop, often just after it) must not end the process mid-save
        with distributed.StopRequest() as stop:
            reason, interrupted = self._loop(stop, writer)
            self._finish(reason, interrupted, writer)
        if interrupted:
            raise TrainingInterrupted(
                stop.requested or "SIGTERM", self.progress.step, self.ckpt_dir / "last.pt"
            )
        return self.progress

    def _start(self) -> SummaryWriter | None:
        """The TensorBoard writer (rank 0), after logging what is trained."""
        p, cfg = self.progress, self.cfg
        self.model.train()
        params = sum(t.numel() for t in self.model.parameters())
        limits = f"step {cfg.max_steps}" + (f" or {cfg.max_minutes} min" if cfg.max_minutes else "")
        ranks = f" x {self.world} processes" if self.world > 1 else ""
        # The vector instructions torch's CPU kernels use (AVX2, AVX512, ...): two hosts with the
        # same CPU name can differ here by 2-3x in tokens/s, and the minutes of a run with them.
        isa = f" ({torch.backends.cpu.get_cpu_capability()})" if self.device.type == "cpu" else ""
        log.info(
            "training %s parameters on %s%s%s, %d sentence pairs; stops at %s",
            f"{params:,}",
            self.device,
            isa,
            ranks,
            len(self.train_data),
            limits,
        )
        if not self.main:
            return None
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=p.step or None)

    def _loop(
        self, stop: distributed.StopRequest, writer: SummaryWriter | None
    ) -> tuple[str, bool]:
        """Updates until the ranks agree to stop: (why, whether a signal stopped it)."""
        p, cfg = self.progress, self.cfg
        updates = training_updates(
            self.train_data, self.cfg, self.seed, p, self.world, self.rank, self.device
        )
        window = Window()
        nonfinite = 0
        bar = tqdm(
            total=cfg.max_steps,
            initial=p.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=2,
            disable=None if self.main else True,
        )
        while True:
            reason, interrupted = distributed.agree_to_stop(
                self._should_stop() if self.main else None, stop, self.device
            )
            if reason is not None:
                bar.close()
                return reason, interrupted
            started = time.perf_counter()
            epoch, position, ends_epoch, batches = next(updates)
            result = self.update(batches)
            p.train_seconds += time.perf_counter() - started
            p.batch_in_epoch = position
            if ends_epoch:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
            if result is None:
                nonfinite += 1
                self._skipped_update(nonfinite, epoch, writer)
                continue
            nonfinite = 0
            p.step += 1
            p.train_tokens += result[1]
            bar.update(1)
            window.add(*result)
            if p.step % cfg.log_every == 0 and self.main:
                progress_report(writer, bar, p.step, epoch, window, self.scheduler.get_last_lr()[0])
                self._report_guided(writer, bar)
            if p.step % cfg.validate_every == 0:
                if self.main:
                    self.validate(writer, regular=True)
                    window.restart()
                self._sync_lr_scale()
            elif self.main:
                self._save_on_interval()
            marks = self.budget_marks
            passed = self.main and marks and p.train_seconds >= marks[0] * 60
            if passed and self._keep_budget_checkpoints(writer):
                window.restart()

    def budget_checkpoint(self, minutes: float) -> Path:
        return self.ckpt_dir / f"best-{minutes:g}min.pt"

    def _keep_budget_checkpoints(self, writer: SummaryWriter) -> bool:
        """At the train.budget_checkpoints marks just passed: the validation a run with that
        train.max_minutes would have ended with (unless this step just had one), then best.pt kept
        as best-<M>min.pt. True when it validated."""
        p = self.progress
        due = [m for m in self.budget_marks if p.train_seconds >= m * 60]
        self.budget_marks = self.budget_marks[len(due) :]
        validated = not p.history or p.history[-1]["step"] != p.step
        if validated:
            self.validate(writer)
        for minutes in due:
            best = self.ckpt_dir / "best.pt"
            checkpoint.atomic_write_bytes(self.budget_checkpoint(minutes), best.read_bytes())
            log.info(
                "kept %s: best dev %s %.2f at step %d after %.1f training minutes",
                self.budget_checkpoint(minutes).name,
                self.cfg.stop_metric,
                abs(p.best_score),
                p.best_step,
                p.train_seconds / 60,
            )
        return validated

    def _report_guided(self, writer: SummaryWriter, bar: tqdm) -> None:
        """Guided alignment's loss per target token since the last report (the logged training loss
        includes it, weighted by train.guided_weight)."""
        if not self.guided_tokens:
            return
        value = float(self.guided_sum) / self.guided_tokens
        self.guided_sum, self.guided_tokens = torch.zeros(()), 0
        writer.add_scalar("train/alignment_loss", value, self.progress.step)
        if bar.disable:
            log.info("step %d: alignment loss %.3f", self.progress.step, value)

    def _skipped_update(self, nonfinite: int, epoch: int, writer: SummaryWriter | None) -> None:
        """Log a non-finite loss; after train.max_nonfinite in a row keep the last good state and stop."""
        step = self.progress.step
        log.warning("non-finite loss at step %d (epoch %d): update skipped", step, epoch)
        if writer:
            writer.add_scalar("train/nonfinite_losses", nonfinite, step)
        if nonfinite >= self.cfg.max_nonfinite:
            # no bad update was applied, so the weights are the last good ones: keep them
            self.save("last.pt")
            if writer:
                writer.close()
            raise TrainingError(
                f"{nonfinite} non-finite losses in a row at step {step} (train.max_nonfinite); "
                f"the last good state is saved in {self.ckpt_dir / 'last.pt'}. "
                "Try a lower train.lr or train.precision=fp32"
            )

    def _finish(self, reason: str, interrupted: bool, writer: SummaryWriter | None) -> None:
        """A last validation (unless a signal stopped training), last.pt, averaged.pt."""
        p = self.progress
        if (
            self.main
            and p.step
            and not interrupted
            and (not p.history or p.history[-1]["step"] != p.step)
        ):
            self.validate(writer)
        p.finished = not interrupted
        self.save("last.pt")
        if self.main and not interrupted and (averaged := checkpoint.average_kept(self.ckpt_dir)):
            names = ", ".join(path.name for path in averaged)
            log.info("averaged %s into %s", names, self.ckpt_dir / "averaged.pt")
        if writer:
            writer.close()
        best = abs(p.best_score) if p.history else float("nan")
        log.info(
            "training ended at step %d: %s; best dev %s %.2f at step %d",
            p.step,
            reason,
            self.cfg.stop_metric,
            best,
            p.best_step,
        )
