"""Benchmark a model config on the current device: training throughput (real target tokens/s after
warm-up), model FLOPs utilisation, peak memory, and decoding speed (greedy and beam 5, batch 1 and 64).
Appends a table to docs/BENCHMARKS.md with the command, device, versions and date.

    python scripts/bench.py data=multi30k_en_de model=transformer
    python scripts/bench.py data=tatoeba_en_fr model=transformer --run runs/tatoeba_en_fr-transformer
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from mt import process, stages
from mt import run as runs
from mt.batching import collate, epoch_batches
from mt.config import CONF_DIR
from mt.decoding import translate_ids
from mt.loss import label_smoothed_loss
from mt.train import Trainer

# dense bf16 tensor-core peaks (FLOP/s) for MFU on GPUs
GPU_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[float, str]:
    """The device's peak: a table for GPUs; on CPU, measured matmul throughput in `dtype` (the
    training precision: bf16 autocast multiplies in bf16)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK.items():
            if key in name:
                return value, f"{name} bf16 dense peak"
        return float("nan"), f"{name}: peak unknown"
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    rate = reps * 2 * 2048**3 / (time.perf_counter() - start)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    return rate, f"measured {precision} 2048³ matmul, {torch.get_num_threads()} threads"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_target_token(model: torch.nn.Module, batch, smoothing: float) -> float:
    """FLOPs of one training forward and backward on `batch`, per real target token (counted)."""
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(batch.src, batch.tgt_in)
        label_smoothed_loss(logits, batch.tgt_out, smoothing).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch.tgt_tokens


def bench_training(cfg, trainer: Trainer, steps: int, warmup: int, profile: int = 0) -> dict:
    order = epoch_batches(trainer.train_data, cfg.train.batch_tokens, cfg.seed, 0)
    batches = [
        collate(trainer.train_data, order[i]).to(trainer.device)
        for i in range(warmup + max(steps, profile))
    ]
    flops_per_token = flops_per_target_token(trainer.model, batches[0], cfg.train.label_smoothing)
    start = time.perf_counter()
    for batch in batches[:warmup]:
        trainer.update([batch])
    sync(trainer.device)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tokens = sum(trainer.update([batch])[1] for batch in batches[warmup : warmup + steps])
    sync(trainer.device)
    seconds = time.perf_counter() - start
    padded = sum(b.tgt_out.numel() for b in batches[warmup : warmup + steps])
    return {
        "tokens_per_s": tokens / seconds,
        "flops_per_token": flops_per_token,
        "real_fraction": tokens / padded,
        "steps_per_s": steps / seconds,
        "warmup_s": warmup_seconds,
        "profile": profile_training(trainer, batches[warmup : warmup + profile]) if profile else [],
    }


def profile_training(trainer: Trainer, batches: list, top: int = 12) -> list[tuple[str, float]]:
    """The operators taking the most (self) time over `batches` updates: (name, share of the total)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        for batch in batches:
            trainer.update([batch])
        sync(trainer.device)
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events)
    ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [(e.key, getattr(e, key) / total) for e in ranked]


def bench_decoding(run: runs.Run, sources: list[list[int]], beam: int, batch_size: int) -> dict:
    options = run.options(strategy="beam", beam_size=beam, nbest=1, batch_size=batch_size)
    list(translate_ids(run.model, sources[:batch_size], run.device, options))  # warm-up
    sync(run.device)
    start = time.perf_counter()
    hyps = list(translate_ids(run.model, sources, run.device, options))
    sync(run.device)
    seconds = time.perf_counter() - start
    return {
        "sentences_per_s": len(sources) / seconds,
        "tokens_per_s": sum(len(h[0].tokens) for h in hyps) / seconds,
        "hyps": hyps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `mt train`")
    parser.add_argument("--steps", type=int, default=30, help="timed training updates")
    parser.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    parser.add_argument(
        "--profile", type=int, default=0, help="also profile this many updates (torch.profiler)"
    )
    parser.add_argument("--sentences", type=int, default=500, help="test sentences decoded")
    parser.add_argument(
        "--run",
        type=Path,
        help="a trained run to time decoding with (an untrained model "
        "stops at once, so without one decoding is not measured)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile(dynamic=True) (its compile time is in the warm-up)",
    )
    parser.add_argument("--output", type=Path, default=Path("docs/BENCHMARKS.md"))
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    process.setup_logging()
    process.set_threads(cfg.train.threads)
    built = stages.build_stages(cfg)
    tok, encoded = built.tokenizer, built.encoded
    device = process.resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = runs.build_for(cfg, tok)
    params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(
        cfg.train,
        model,
        encoded["train"],
        encoded[cfg.data.dev_split],
        Path("/nonexistent"),
        device,
        cfg.seed,
        validate=None,
    )
    if args.compile:
        trainer.train_model = torch.compile(trainer.train_model, dynamic=True)
    peak, peak_source = peak_flops(device, trainer.amp_dtype or torch.float32)
    train = bench_training(cfg, trainer, args.steps, args.warmup, args.profile)
    train_memory = peak_memory_mb(device)
    decoding = {}
    if args.run:
        run = runs.load_run(args.run, device=str(device))
        split = run.cfg.data.test_splits[0]
        _, run_corpus = stages.prepare_stage(run.cfg)
        sources = run.tokenizer.encode_src(run_corpus[split]["src"][: args.sentences])
        decoding = {
            (beam, bs): bench_decoding(run, sources, beam, bs) for beam in (1, 5) for bs in (1, 64)
        }

    mfu = train["tokens_per_s"] * train["flops_per_token"] / peak
    now = datetime.datetime.now().isoformat(timespec="minutes")
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    command = "python scripts/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        f"### {cfg.model.name} on {cfg.data.name} — {device_name}, {now}",
        "",
        f"`{command}` — torch {torch.__version__}, Python {platform.python_version()}, "
        f"{params / 1e6:.2f}M parameters, batch {cfg.train.batch_tokens} tokens "
        f"({train['real_fraction']:.0%} of target positions real).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| training: real target tokens/s | {train['tokens_per_s']:,.0f} ({train['steps_per_s']:.2f} updates/s) |",
        f"| training: the {args.warmup} untimed warm-up updates{' (with compilation)' if args.compile else ''} | {train['warmup_s']:.1f} s |",
        f"| training: FLOPs per target token (counted) | {train['flops_per_token'] / 1e6:.1f} M |",
        f"| MFU | {mfu:.1%} of {peak / 1e9:,.0f} GFLOP/s ({peak_source}) |",
        f"| peak memory after training ({'max allocated' if device.type == 'cuda' else 'RSS'}) | {train_memory:,.0f} MiB |",
    ]
    if args.run:
        lines.append(
            f"| decoding with | `{args.run}` ({run.cfg.model.name}), first {len(sources)} of {split} |"
        )
    for (beam, bs), r in decoding.items():
        name = "greedy" if beam == 1 else f"beam {beam}"
        lines.append(
            f"| decoding {name}, batch {bs}: sentences/s (tokens/s) | {r['sentences_per_s']:,.1f} "
            f"({r['tokens_per_s']:,.0f}) |"
        )
    if train["profile"]:
        lines += [
            "",
            f"Where training time goes (torch.profiler, {args.profile} updates, self time):",
            "",
            "| operator | share |",
            "|---|---|",
            *(f"| `{name}` | {share:.1%} |" for name, share in train["profile"]),
        ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("a") as f:
        f.write("\n" + table)


if __name__ == "__main__":
    main()
