"""Decoding speed side by side: mt's own PyTorch decoding vs CTranslate2 float32 vs CTranslate2 int8,
the same model on the same sentences, greedy and beam 5, batch 1 and 64. Reports sentences/s, target
tokens/s, peak resident memory (each measurement in its own process) and BLEU, and appends the table
to docs/BENCHMARKS.md with the command, machine and date.

    python scripts/bench_inference.py --run runs/multi30k_en_de-transformer_tiny
    python scripts/bench_inference.py --run R1 --run R2 --sentences 500 --threads 2
    python scripts/bench_inference.py --run R --data "data=tatoeba_de_en data.src_lang=en data.tgt_lang=de"

Sentences are the first --sentences of each run's test split (data.test_splits[0]; the corpus comes
from the stage cache or MT_DATA_DIR), and of the test split of each `--data` corpus (Hydra
overrides), translated by every run. A run is exported to CTranslate2 into a temporary directory;
its own directory is not touched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = {
    "mt (PyTorch)": ("torch", None),
    "CTranslate2 float32": ("ctranslate2", "float32"),
    "CTranslate2 int8": ("ctranslate2", "int8"),
}


def test_split(run: Path, n: int, data: str | None = None) -> tuple[list[str], list[str], str, str]:
    """The first n source and reference sentences of the run's first test split, or of the corpus
    that the Hydra overrides `data` name (e.g. "data=tatoeba_de_en data.src_lang=en
    data.tgt_lang=de")."""
    from omegaconf import OmegaConf

    from mt import stages

    cfg = OmegaConf.load(run / "config.yaml")
    if data:
        from hydra import compose, initialize_config_dir

        from mt.config import CONF_DIR

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=data.split())
    if os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = os.environ["MT_DATA_DIR"]
    if os.environ.get("MT_CACHE_DIR"):
        cfg.cache_dir = os.environ["MT_CACHE_DIR"]
    _, corpus = stages.prepare_stage(cfg)
    split = cfg.data.test_splits[0]
    data = corpus[split]
    return (
        list(data["src"][:n]),
        list(data["tgt"][:n]),
        f"{cfg.data.name} {split}",
        cfg.data.tgt_lang,
    )


def worker(args: argparse.Namespace) -> None:
    """One measurement, in its own process: load, warm up, decode, score; prints one JSON line."""
    import torch

    from mt import metrics
    from mt.translator import Translator

    torch.set_num_threads(args.threads)  # CTranslate2 takes the same number of threads
    sources, references = json.loads(Path(args.sentences_file).read_text())
    start = time.perf_counter()
    translator = Translator.load(
        args.run[0], device="cpu", engine=args.engine, export_dir=args.export_dir
    )
    load_seconds = time.perf_counter() - start
    options = translator.options(beam=args.beam, batch_size=args.batch)
    list(translator.stream(sources[: args.batch], options))  # warm-up
    start = time.perf_counter()
    translations = list(translator.stream(sources, options))
    seconds = time.perf_counter() - start
    tokens = sum(len(translator.tokenizer.encode_tgt([t.text])[0]) for t in translations)
    hyps = [t.text for t in translations]
    scores = metrics.score(hyps, references, args.tgt_lang, ["bleu"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    print(
        json.dumps(
            {
                "sentences_per_s": len(sources) / seconds,
                "tokens_per_s": tokens / seconds,
                "seconds": seconds,
                "load_seconds": load_seconds,
                "peak_rss_mib": peak,
                "bleu": scores["bleu"],
                "hyps": hyps,
            }
        )
    )


def measure(
    run: Path,
    engine: str,
    export_dir: str | None,
    beam: int,
    batch: int,
    data: Path,
    tgt_lang: str,
    threads: int,
) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--run", str(run), "--engine", engine,
        "--beam", str(beam), "--batch", str(batch), "--sentences-file", str(data), "--tgt-lang", tgt_lang,
        "--threads", str(threads),
    ]  # fmt: skip
    if export_dir:
        command += ["--export-dir", export_dir]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"measurement failed: {shlex.join(command)}\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def measure_all(
    run: Path, exports: dict, data: Path, corpus: str, n: int, tgt_lang: str, threads: int
) -> list[str]:
    """The table's rows for one run on one corpus: every engine, search and batch size."""
    rows = []
    for beam in (1, 5):
        for batch in (1, 64):
            reference = None
            for label, (engine, quantization) in ENGINES.items():
                r = measure(run, engine, exports.get(quantization), beam, batch, data, tgt_lang,
                            threads)  # fmt: skip
                reference = reference or r["hyps"]
                same = sum(a == b for a, b in zip(r["hyps"], reference, strict=True))
                row = (
                    f"| {run.name} | {corpus} ({n}) | {label} | "
                    f"{'greedy' if beam == 1 else f'beam {beam}'} | {batch} | "
                    f"{r['sentences_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                    f"{r['peak_rss_mib']:.0f} | {r['bleu']:.2f} | {100 * same / n:.1f} % |"
                )
                print(row, flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", action="append", required=True, help="a Transformer run; repeatable"
    )
    parser.add_argument("--sentences", type=int, default=500, help="test sentences per measurement")
    parser.add_argument(
        "--data", action="append", default=[], help="another test corpus: Hydra data overrides"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--engine", "--export-dir", "--sentences-file", "--tgt-lang"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--beam", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from mt.ct2 import export
    from mt.run import load_run

    lines = [
        f"\n## Decoding engines side by side ({datetime.date.today().isoformat()})\n",
        f"`python scripts/bench_inference.py {shlex.join(sys.argv[1:])}` on {platform.node()} "
        f"({os.cpu_count()} CPUs, {args.threads} threads, {platform.processor() or platform.machine()}); "
        "each row its own process; peak RSS includes the Python interpreter and torch. "
        "Identical: share of lines equal to mt's own output with the same search and batch.\n",
        "| model | test sentences | engine | search | batch | sentences/s | target tokens/s "
        "| peak RSS (MiB) | BLEU | identical |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for run_name in args.run:
            run = Path(run_name)
            loaded = load_run(run, device="cpu")
            exports = {
                q: str(export(loaded, Path(tmp) / f"{run.name}-{q}", q))
                for q in ("float32", "int8")
            }
            for k, corpus_data in enumerate([None, *args.data]):
                sources, references, corpus, tgt_lang = test_split(run, args.sentences, corpus_data)
                data = Path(tmp) / f"{run.name}-{k}.json"
                data.write_text(json.dumps([sources, references]))
                lines += measure_all(
                    run, exports, data, corpus, len(sources), tgt_lang, args.threads
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(ROOT / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
