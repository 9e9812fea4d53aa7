"""How mt's memory and time grow with the corpus: for each size, a synthetic corpus
(scripts/make_corpus.py) goes through prepare -> sentencepiece -> encode -> a few training updates
in a fresh process with an empty cache; its peak resident memory and each stage's wall-clock are
reported. Then training throughput on the memory-mapped token ids against the same ids in memory.

    python scripts/bench_scale.py --pairs 100000 1000000 10000000 --work /tmp/mt-scale

Prints a Markdown table (and appends it to docs/BENCHMARKS.md with --output). The corpora are kept
in --work (about 1 GB per 10M pairs) and re-used; each size's cache and run are removed after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def overrides(corpus: Path, work: Path, steps: int) -> list[str]:
    return [
        "data=synthetic",
        f"data.local={corpus}",
        "data.test_splits=[]",
        f"cache_dir={work / 'cache'}",
        f"run_dir={work / 'run'}",
        "name=scale",
        f"train.max_steps={steps}",
        f"train.validate_every={steps}",
        "train.dev_max_sentences=20",
        "train.max_minutes=null",
        "train.save_every_minutes=null",
        "train.threads=2",
    ]


def child(args: list[str]) -> None:
    """The measured process: the training pipeline alone (no test decoding)."""
    from hydra import compose, initialize_config_dir

    from mt import pipeline
    from mt.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=args)
    pipeline.train_pipeline(cfg)


def measure(corpus: Path, work: Path, steps: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = [sys.executable, __file__, "--child", *overrides(corpus, work, steps)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"the measured run failed:\n{log[-3000:]}")
    stages = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"built .*/(\w+)-\w+ in ([\d.]+) s", log)
    }
    stamps = re.findall(
        r"^(\S+ \S+) INFO mt\.train: (training [\d,]+ param|training ended)", log, re.M
    )
    times = [datetime.datetime.fromisoformat(t) for t, _ in stamps]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "rss_gib": usage.ru_maxrss / 2**20,  # Linux: kB
        "wall": wall,
        "prepare": stages.get("prepare", float("nan")),
        "tokenizer": stages.get("tokenizer", float("nan")),
        "encoded": stages.get("encoded", float("nan")),
        "train": (times[-1] - times[0]).total_seconds() if len(times) == 2 else float("nan"),
    }


def throughput(corpus: Path, work: Path, updates: int) -> tuple[float, float]:
    """Real target tokens/s of the same updates reading ids from the cache file (pread) and from a
    copy in memory (one process, 2 threads, the default Transformer)."""
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir

    from mt import process, stages
    from mt import run as runs
    from mt.batching import EncodedCorpus, Ragged, collate, epoch_batches
    from mt.config import CONF_DIR
    from mt.train import Trainer

    shutil.rmtree(work, ignore_errors=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides(corpus, work, 1))
    process.set_threads(2)
    built = stages.build_stages(cfg)
    mapped = built.encoded["train"]
    in_memory = EncodedCorpus(
        *(Ragged(np.array(side.values), side.offsets.copy()) for side in (mapped.src, mapped.tgt))
    )
    order = epoch_batches(mapped, cfg.train.batch_tokens, cfg.seed, 0)[: updates + 5]
    rates = {}
    for name, data in (
        ("mapped", mapped),
        ("memory", in_memory),
        ("mapped2", mapped),
        ("memory2", in_memory),
    ):
        torch.manual_seed(cfg.seed)
        model = runs.build_for(cfg, built.tokenizer)
        trainer = Trainer(
            cfg.train, model, data, data, Path("/nonexistent"), torch.device("cpu"), cfg.seed, None
        )
        for indices in order[:5]:
            trainer.update([collate(data, indices)])
        start, tokens = time.perf_counter(), 0
        for indices in order[5:]:
            tokens += trainer.update([collate(data, indices)])[1]
        rates[name] = tokens / (time.perf_counter() - start)
    shutil.rmtree(work, ignore_errors=True)
    return max(rates["mapped"], rates["mapped2"]), max(rates["memory"], rates["memory2"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mt-scale"))
    parser.add_argument("--steps", type=int, default=5, help="training updates per measurement")
    parser.add_argument("--updates", type=int, default=40, help="updates timed for throughput")
    parser.add_argument("--output", type=Path, help="append the tables to this Markdown file")
    args = parser.parse_args()

    rows = []
    for n in args.pairs:
        corpus = args.work / f"corpus-{n}"
        if not (corpus / "all.fr").exists():
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "make_corpus.py"),
                    "--pairs",
                    str(n),
                    "--out",
                    str(corpus),
                ],
                check=True,
            )
        r = measure(corpus, args.work / "run", args.steps)
        rows.append((n, r))
        print(f"{n:,} pairs: {r}", flush=True)
    mapped, memory = throughput(
        args.work / f"corpus-{args.pairs[0]}", args.work / "run", args.updates
    )

    now = datetime.datetime.now().isoformat(timespec="minutes")
    command = "python scripts/bench_scale.py " + " ".join(sys.argv[1:])
    base = rows[0][1]["rss_gib"]
    lines = [
        f"### Corpus size: memory and time — {platform.machine()}, {os.cpu_count()} cores, {now}",
        "",
        f"`{command}`: a fresh process per size, empty cache; synthetic pairs (scripts/make_corpus.py),",
        "split by hashed source (2,000 dev, 2,000 test), sentencepiece 8k on a sample of at most 1M",
        f"sentences, {args.steps} training updates of the default Transformer.",
        "",
        "| pairs | peak RSS | vs smallest | prepare | sentencepiece | encode | prepare + encode, pairs/s | training (build + updates) | total wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in rows:
        rate = n / (r["prepare"] + r["encoded"])
        lines.append(
            f"| {n:,} | {r['rss_gib']:.2f} GiB | {r['rss_gib'] / base:.2f}× | {r['prepare']:.0f} s "
            f"| {r['tokenizer']:.0f} s | {r['encoded']:.0f} s | {rate:,.0f} | {r['train']:.0f} s | {r['wall']:.0f} s |"
        )
    lines += [
        "",
        f"Training throughput on {args.pairs[0]:,} pairs, {args.updates} updates after 5 untimed "
        f"(best of two runs each): ids read from the cache file {mapped:,.0f} real target tokens/s, the same ids "
        f"in memory {memory:,.0f} ({mapped / memory - 1:+.1%}).",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        with args.output.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
