"""mt beside JoeyNMT 2.3.0 on this machine, in one go: the same data, subword model and model shapes.

For each architecture (Transformer 3+3, d_model 256, 4 heads, ff 1024; 1-layer bi-GRU encoder, GRU
decoder, hidden 256, Bahdanau attention) both toolkits train on Multi30k En->De (mt's cleaned
splits and joint sentencepiece 8k model, exported for JoeyNMT) for the same wall-clock budget with
the same optimiser recipe and the same validation schedule (greedy dev BLEU every N updates, all dev
sentences). Then both decode test_2016_flickr greedily and with beam 5 (same batch size).

Measured: real (non-padding) target tokens/s from each toolkit's own log (both count target tokens
that are not padding, validation excluded), MFU (FLOPs per target token counted on mt's model,
against a matmul peak measured here), peak RSS of the training process (wait4), decoding sentences/s
(generation only: JoeyNMT's "Generation took", mt's timed translate), dev BLEU at equal updates, and
wall-clock minutes from launch to each dev-BLEU mark. Appends a table to docs/BENCHMARKS.md.

    MT_DATA_DIR=../shared/data python scripts/compare_joeynmt.py

JoeyNMT goes into its own virtualenv (--joeynmt-venv; made on first use: torch==2.13.0 first, then
joeynmt==2.3.0 with the two packages its release needs: importlib_metadata and sentencepiece 0.1.99).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from bench import bench_decoding, flops_per_target_token, peak_flops  # noqa: E402

from mt import metrics, process, stages, tokenizer  # noqa: E402
from mt.batching import collate, epoch_batches  # noqa: E402
from mt.config import CONF_DIR  # noqa: E402
from mt.run import build_for, load_run  # noqa: E402

MT_MODEL = {"transformer": "transformer", "rnn": "rnn_bahdanau"}
DATA = "multi30k_en_de"


# --- setting up JoeyNMT ------------------------------------------------------------------------
def joeynmt_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import joeynmt.training, joeynmt.prediction, sentencepiece as s; "
        "s.SentencePieceProcessor.SetVocabulary",
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing JoeyNMT 2.3.0 into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    # 2.3.0 imports importlib_metadata without declaring it, and calls SetVocabulary, which
    # sentencepiece 0.2 removed
    subprocess.run(
        [*pip, "joeynmt==2.3.0", "importlib_metadata", "sentencepiece==0.1.99"], check=True
    )
    subprocess.run(probe, check=True)
    return python


def export_data(cfg, built: stages.Stages, work: Path, limit: int | None) -> Path:
    """mt's prepared splits as plain text (train/dev/test.<lang>; dev and test cut to `limit`
    sentences when given) and its joint sentencepiece model with a JoeyNMT vocabulary file (the
    pieces in id order, specials left to JoeyNMT). `built`: stages.build_stages(cfg)."""
    corpus, tok_folder, tok = built.corpus, built.tokenizer_folder, built.tokenizer
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": "train", "dev": cfg.data.dev_split, "test": cfg.data.test_splits[0]}
    for name, split in splits.items():
        for side, lang in (("src", cfg.data.src_lang), ("tgt", cfg.data.tgt_lang)):
            sentences = corpus[split][side]
            if name != "train" and limit:
                sentences = sentences[:limit]
            text = "".join(s + "\n" for s in sentences)
            (out / f"{name}.{lang}").write_text(text, encoding="utf-8")
    shutil.copy(tok_folder / "spm.model", out / "spm.model")
    first = tokenizer.EOS + 1
    pieces = tok.tgt_pieces(range(first, tok.tgt_vocab_size))
    (out / "vocab.txt").write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    return out


def training_flops(cfg, built: stages.Stages) -> float:
    """Training FLOPs per real target token of mt's model, counted on its first training batch."""
    tok, encoded = built.tokenizer, built.encoded
    train = encoded["train"]
    torch.manual_seed(cfg.seed)
    model = build_for(cfg, tok).train()
    batch = collate(train, epoch_batches(train, cfg.train.batch_tokens, cfg.seed, 0)[0])
    return flops_per_target_token(model, batch, cfg.train.label_smoothing)


def joeynmt_config(arch: str, data: Path, model_dir: Path, cfg, args) -> dict:
    """JoeyNMT 2.3.0 configuration with mt's model shape and optimiser recipe."""
    side = {
        "level": "bpe",
        "lowercase": False,
        "voc_file": str(data / "vocab.txt"),
        "tokenizer_type": "sentencepiece",
        "tokenizer_cfg": {"model_file": str(data / "spm.model")},
    }
    m = cfg.model
    if arch == "transformer":
        layer = {
            "type": "transformer",
            "num_heads": m.heads,
            "hidden_size": m.d_model,
            "ff_size": m.ff_dim,
            "dropout": m.dropout,
            "layer_norm": "pre",
            "embeddings": {"embedding_dim": m.d_model, "scale": True, "dropout": m.dropout},
        }
        encoder = {**layer, "num_layers": m.encoder_layers}
        decoder = {**layer, "num_layers": m.decoder_layers}
    else:
        embeddings = {"embedding_dim": m.embedding_dim, "dropout": m.dropout}
        encoder = {
            "type": "recurrent",
            "rnn_type": m.cell,
            "hidden_size": m.encoder_hidden,
            "bidirectional": True,
            "num_layers": m.encoder_layers,
            "dropout": m.dropout,
            "embeddings": embeddings,
        }
        decoder = {
            "type": "recurrent",
            "rnn_type": m.cell,
            "hidden_size": m.decoder_hidden,
            "num_layers": m.decoder_layers,
            "attention": "bahdanau",
            "input_feeding": True,
            "init_hidden": "bridge",
            "dropout": m.dropout,
            "hidden_dropout": m.dropout,
            "embeddings": embeddings,
        }
    t = cfg.train
    return {
        "name": f"joeynmt-{arch}",
        "model_dir": str(model_dir),
        "use_cuda": False,
        "random_seed": cfg.seed,
        "data": {
            "train": str(data / "train"),
            "dev": str(data / "dev"),
            "test": str(data / "test"),
            "dataset_type": "plain",
            "src": {**side, "lang": cfg.data.src_lang},
            "trg": {**side, "lang": cfg.data.tgt_lang},
        },
        "testing": {
            "batch_size": args.decode_batch,
            "batch_type": "sentence",
            "beam_size": 1,
            "beam_alpha": cfg.decode.length_penalty,
            "eval_metrics": ["bleu"],
            "sacrebleu_cfg": {"tokenize": "13a"},
        },
        "training": {
            "optimizer": "adam",
            "adam_betas": list(t.betas),
            "learning_rate": t.lr,
            "learning_rate_min": 1.0e-8,
            "scheduling": "warmupinversesquareroot",
            "learning_rate_warmup": t.warmup,
            "weight_decay": t.weight_decay,
            "clip_grad_norm": t.clip_norm,
            "label_smoothing": t.label_smoothing,
            "normalization": "tokens",
            "batch_size": t.batch_tokens,
            "batch_type": "token",
            "epochs": 1000,
            "validation_freq": args.validate_every,
            "logging_freq": args.log_every,
            "early_stopping_metric": "bleu",
            "keep_best_ckpts": 1,
            "print_valid_sents": [0],
            "overwrite": True,
            "shuffle": True,
        },
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "tied_embeddings": True,
            "tied_softmax": True,
            "encoder": encoder,
            "decoder": decoder,
        },
    }


# --- running a training and reading its log ---------------------------------------------------
@dataclass
class Watched:
    """A finished child process: its output lines stamped with seconds since launch, its peak RSS."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    returncode: int = 0


def watch(command: list[str], budget_s: float, log_path: Path, env: dict | None = None) -> Watched:
    """Run `command`, stopping it with SIGTERM once `budget_s` wall-clock seconds have passed."""
    print("$ " + shlex.join(command), flush=True)
    result = Watched()
    start = time.perf_counter()
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )

    def read() -> None:
        with log_path.open("w") as log:
            for line in child.stdout:
                result.lines.append((time.perf_counter() - start, line.rstrip("\n")))
                log.write(f"[{time.perf_counter() - start:8.1f}s] {line}")
                log.flush()

    reader = threading.Thread(target=read)
    reader.start()
    # wait4 (not Popen.poll, which would reap the child and lose its resource usage)
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    while not pid and time.perf_counter() - start < budget_s:
        time.sleep(0.5)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if not pid:
        child.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    result.returncode = os.waitstatus_to_exitcode(status)
    result.peak_rss_mib = usage.ru_maxrss / 1024  # Linux: kB
    return result


@dataclass
class Curve:
    """What a training log says: tokens/s per logging window; per validation (update, seconds from
    launch, dev BLEU) and its duration (from the update's log line to the validation's result);
    parameters."""

    rates: list[float] = field(default_factory=list)
    validations: list[tuple[int, float, float]] = field(default_factory=list)
    validation_seconds: list[float] = field(default_factory=list)
    params: int = 0
    last_step: int = 0
    last_log_t: float = 0.0

    def step_logged(self, t: float, step: int, rate: float) -> None:
        self.last_step, self.last_log_t = step, t
        self.rates.append(rate)

    def validated(self, t: float, bleu: float) -> None:
        self.validations.append((self.last_step, t, bleu))
        self.validation_seconds.append(t - self.last_log_t)

    def tokens_per_s(self) -> float:
        """Mean of the logging windows after the first (warm-up)."""
        steady = self.rates[1:] or self.rates
        return sum(steady) / len(steady) if steady else float("nan")

    def minutes_to(self, mark: float, training_only: bool = False) -> float | None:
        """Minutes from launch to the first validation at or above `mark` (BLEU), or those minutes
        less the validations' time."""
        for i, (_, t, bleu) in enumerate(self.validations):
            if bleu >= mark:
                return (t - (sum(self.validation_seconds[: i + 1]) if training_only else 0)) / 60
        return None

    def bleu_at(self, step: int) -> float | None:
        return next((bleu for s, _, bleu in self.validations if s == step), None)


# per toolkit: an update's log line (update, tokens/s), a validation's BLEU, the parameter count
LOG_PATTERNS = {
    "mt": (
        r"step (\d+): loss [\d.]+, (\d+) target tokens/s",
        r"step \d+: dev loss [\d.]+, BLEU ([\d.]+)",
        r"training ([\d,]+) parameters",
    ),
    "JoeyNMT": (
        r"Step:\s+(\d+),.*Tokens per Sec:\s+(\d+)",
        r"Evaluation result \(greedy\): bleu:\s+([\d.]+)",
        r"Total params: ([\d,]+)",
    ),
}


def read_log(lines: list[tuple[float, str]], toolkit: str) -> Curve:
    step_re, bleu_re, params_re = LOG_PATTERNS[toolkit]
    c = Curve()
    for t, line in lines:
        if m := re.search(step_re, line):
            c.step_logged(t, int(m[1]), float(m[2]))
        elif m := re.search(bleu_re, line):
            c.validated(t, float(m[1]))
        elif m := re.search(params_re, line):
            c.params = int(m[1].replace(",", ""))
    return c


def read_saved_log(path: Path) -> list[tuple[float, str]]:
    """The lines of a log written by `watch`: '[   12.3s] text'."""
    lines = []
    for raw in path.read_text().splitlines():
        if m := re.match(r"\[\s*([\d.]+)s\] (.*)", raw):
            lines.append((float(m[1]), m[2]))
    return lines


# --- decoding ---------------------------------------------------------------------------------
def mt_decoding(run_dir: Path, sources: list[str], references: list[str], beam: int, batch: int):
    """Sentences/s (bench.py's timing: one warm-up batch, then all) and BLEU of mt's best checkpoint."""
    run = load_run(run_dir, "best", "cpu")
    timed = bench_decoding(run, run.tokenizer.encode_src(sources), beam, batch)
    hyps = [run.tokenizer.decode_tgt(h[0].tokens) for h in timed["hyps"]]
    bleu = metrics.score(hyps, references, run.cfg.data.tgt_lang)["bleu"]
    return timed["sentences_per_s"], bleu


def joeynmt_decoding(python: Path, config: dict, work: Path, beam: int, arch: str):
    cfg = copy.deepcopy(config)
    cfg["testing"]["beam_size"] = beam
    cfg["testing"]["load_model"] = str(Path(cfg["model_dir"]) / "best.ckpt")
    del cfg["data"]["dev"]  # `joeynmt test` decodes every split it is given: the test split only
    path = work / f"joeynmt-{arch}-beam{beam}.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    command = [str(python), "-m", "joeynmt", "test", str(path)]
    out = watch(command, 3600, work / f"joeynmt-{arch}-beam{beam}.log")
    text = "\n".join(line for _, line in out.lines)
    seconds = re.findall(r"Generation took ([\d.]+)\[sec\]", text)
    bleu = re.findall(r"Evaluation result \([\w ]+\): bleu:\s+([\d.]+)", text)
    if out.returncode or not seconds or not bleu:
        raise RuntimeError(f"joeynmt test failed; see {work}/joeynmt-{arch}-beam{beam}.log")
    test = Path(cfg["data"]["test"] + "." + cfg["data"]["src"]["lang"])
    n = len(test.read_text(encoding="utf-8").splitlines())
    return n / float(seconds[-1]), float(bleu[-1])


# --- FLOPs and peak ---------------------------------------------------------------------------
def cpu_peak() -> tuple[float, str]:
    """The faster of fp32 2048³ and 4096x1024 @ 1024x256 matmuls (FLOP/s)."""
    square, _ = peak_flops(torch.device("cpu"))
    a, b = torch.randn(4096, 1024), torch.randn(1024, 256)
    for _ in range(5):
        a @ b
    start, reps = time.perf_counter(), 50
    for _ in range(reps):
        a @ b
    thin = reps * 2 * 4096 * 1024 * 256 / (time.perf_counter() - start)
    threads = torch.get_num_threads()
    return max(square, thin), (
        f"best fp32 matmul measured here, {threads} threads: 2048³ {square / 1e9:.0f}, "
        f"4096×1024×256 {thin / 1e9:.0f} GFLOP/s"
    )


# --- the comparison ---------------------------------------------------------------------------
def fmt(x: float | None, spec: str = ".1f", missing: str = "—") -> str:
    return missing if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        nargs=2,
        default=[20, 12],
        metavar=("TRANSFORMER", "RNN"),
        help="wall-clock training budget per toolkit and architecture, from launch",
    )
    parser.add_argument(
        "--archs", nargs="+", default=["transformer", "rnn"], choices=["transformer", "rnn"]
    )
    parser.add_argument("--validate-every", type=int, default=100, help="updates")
    parser.add_argument("--log-every", type=int, default=25, help="updates")
    parser.add_argument("--warmup", type=int, default=250, help="learning-rate warm-up updates")
    parser.add_argument(
        "--marks",
        type=float,
        nargs="+",
        default=[10, 15, 20, 25, 30],
        help="dev BLEU marks to time",
    )
    parser.add_argument("--decode-batch", type=int, default=128, help="sentences per batch")
    parser.add_argument("--limit", type=int, help="dev and test sentences (a quick check)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/compare-joeynmt"))
    parser.add_argument("--joeynmt-venv", type=Path, default=Path(".venv-joeynmt"))
    parser.add_argument("--output", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument(
        "--from-logs",
        action="store_true",
        help="train nothing: re-read the training logs in --workdir and print the time-to-BLEU rows",
    )
    args = parser.parse_args()
    if args.from_logs:
        print(from_logs(args))
        return

    if not os.environ.get("MT_DATA_DIR"):
        print("note: MT_DATA_DIR is unset: Multi30k is downloaded from its public source")
    python = joeynmt_python(args.joeynmt_venv.absolute())
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    process.setup_logging()
    peak, peak_source = cpu_peak()
    rows = []
    for arch in args.archs:
        overrides = [
            f"data={DATA}",
            f"model={MT_MODEL[arch]}",
            "train.max_minutes=null",
            "train.max_steps=1000000",
            f"train.validate_every={args.validate_every}",
            f"train.log_every={args.log_every}",
            f"train.warmup={args.warmup}",
            f"train.dev_max_sentences={args.limit or 100000}",
            "train.patience=1000",
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        built = stages.build_stages(cfg)
        data_dir = export_data(cfg, built, work, args.limit)
        budget = 60 * args.minutes[0 if arch == "transformer" else 1]
        run_dir = work / f"mt-{arch}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resumed one
        mt_out = watch(
            [
                sys.executable,
                "-m",
                "mt",
                "train",
                *overrides,
                f"run_dir={run_dir}",
                "overwrite=true",
            ],
            budget,
            work / f"mt-{arch}.log",
        )
        joey_cfg = joeynmt_config(arch, data_dir, work / f"joeynmt-{arch}", cfg, args)
        joey_cfg_path = work / f"joeynmt-{arch}.yaml"
        OmegaConf.save(OmegaConf.create(joey_cfg), joey_cfg_path)
        joey_out = watch(
            [str(python), "-m", "joeynmt", "train", str(joey_cfg_path)],
            budget,
            work / f"joeynmt-{arch}.log",
        )
        mt_curve, joey_curve = read_log(mt_out.lines, "mt"), read_log(joey_out.lines, "JoeyNMT")
        for name, curve in (("mt", mt_curve), ("JoeyNMT", joey_curve)):
            if not curve.rates or not curve.validations:
                raise RuntimeError(
                    f"{name} {arch}: no throughput or validation in its log ({work})"
                )
        test = built.corpus[cfg.data.test_splits[0]][: args.limit or None]
        decoding = {}
        for beam in (1, 5):
            decoding["mt", beam] = mt_decoding(
                run_dir, test["src"], test["tgt"], beam, args.decode_batch
            )
            decoding["JoeyNMT", beam] = joeynmt_decoding(python, joey_cfg, work, beam, arch)
        rows.append(
            dict(
                arch=arch,
                flops=training_flops(cfg, built),
                curves={"mt": mt_curve, "JoeyNMT": joey_curve},
                rss={"mt": mt_out.peak_rss_mib, "JoeyNMT": joey_out.peak_rss_mib},
                decoding=decoding,
                budget=budget / 60,
            )
        )
    report = render(rows, args, peak, peak_source)
    print(report)
    with args.output.open("a") as f:
        f.write("\n" + report)


def from_logs(args) -> str:
    lines = []
    for arch, budget in zip(("transformer", "rnn"), args.minutes, strict=True):
        paths = [args.workdir / f"{name}-{arch}.log" for name in ("mt", "joeynmt")]
        if not all(p.exists() for p in paths):
            continue
        mt, joey = (
            read_log(read_saved_log(p), k) for p, k in zip(paths, LOG_PATTERNS, strict=True)
        )
        lines += [
            f"**{arch}** ({budget:g} min each; from {paths[0]} and {paths[1]})",
            "",
            "| measure | mt | JoeyNMT | mt / JoeyNMT |",
            "|---|---|---|---|",
            *mark_rows(mt, joey, args.marks, budget),
            "",
        ]
    return "\n".join(lines)


def mark_rows(mt: Curve, joey: Curve, marks: list[float], budget: float) -> list[str]:
    """Table rows: minutes to each dev-BLEU mark that either toolkit reached, from launch and with
    the validations' time taken out; mean seconds per validation."""
    rows = []
    for training_only in (False, True):
        for mark in marks:
            a, b = mt.minutes_to(mark, training_only), joey.minutes_to(mark, training_only)
            if a is None and b is None:
                continue
            if a and b:
                speedup = f"{b / a:.2f}× (JoeyNMT / mt)"
            elif a:
                speedup = f"> {budget / a:.2f}× (JoeyNMT / mt)" if not training_only else "—"
            else:
                speedup = "—"
            what = (
                "training minutes (validations excluded)"
                if training_only
                else "minutes from launch"
            )
            rows.append(
                f"| {what} to dev BLEU {mark:g} | {fmt(a, '.1f', 'not reached')} | "
                f"{fmt(b, '.1f', 'not reached')} | {speedup} |"
            )
    mean = [sum(c.validation_seconds) / len(c.validation_seconds) for c in (mt, joey)]
    rows.append(
        f"| seconds per validation (greedy, all of dev), mean | {mean[0]:.0f} | {mean[1]:.0f} | "
        f"{ratio(mean[1], mean[0])} (JoeyNMT / mt) |"
    )
    return rows


def render(rows: list[dict], args, peak: float, peak_source: str) -> str:
    now = datetime.datetime.now().isoformat(timespec="minutes")
    command = "python scripts/compare_joeynmt.py " + shlex.join(sys.argv[1:])
    lines = [
        f"### mt vs JoeyNMT 2.3.0 on Multi30k En→De — CPU ({platform.machine()}, "
        f"{torch.get_num_threads()} threads), {now}",
        "",
        f"`MT_DATA_DIR=../shared/data {command}`".replace("  ", " ")
        + f" — torch {torch.__version__}, Python {platform.python_version()}. Each toolkit trains "
        f"for the same wall-clock budget from launch, with the same recipe (Adam β {'0.9, 0.98'}, "
        f"peak lr 1e-3 after {args.warmup} warm-up updates then 1/√step, label smoothing 0.1, "
        f"clip 1.0, batch 4096 tokens, tied embeddings) and greedy validation on all of dev every "
        f"{args.validate_every} updates. MFU: mt's counted FLOPs per real target token × each "
        f"toolkit's real target tokens/s ÷ {peak / 1e9:.0f} GFLOP/s ({peak_source}).",
        "",
    ]
    for r in rows:
        mt, joey = r["curves"]["mt"], r["curves"]["JoeyNMT"]
        common = sorted({s for s, _, _ in mt.validations} & {s for s, _, _ in joey.validations})
        last_common = common[-1] if common else None
        d = r["decoding"]
        mfu = {k: c.tokens_per_s() * r["flops"] / peak for k, c in r["curves"].items()}
        lines += [
            f"**{r['arch']}** ({mt.params / 1e6:.2f}M parameters in mt, {joey.params / 1e6:.2f}M "
            f"in JoeyNMT; {r['flops'] / 1e6:.1f} MFLOP per target token; "
            f"{r['budget']:g} min each)",
            "",
            "| measure | mt | JoeyNMT | mt / JoeyNMT |",
            "|---|---|---|---|",
            f"| training: real target tokens/s | {mt.tokens_per_s():,.0f} | "
            f"{joey.tokens_per_s():,.0f} | {ratio(mt.tokens_per_s(), joey.tokens_per_s())} |",
            f"| MFU | {mfu['mt']:.1%} | {mfu['JoeyNMT']:.1%} | {ratio(mfu['mt'], mfu['JoeyNMT'])} |",
            f"| peak RSS, training process | {r['rss']['mt']:,.0f} MiB | "
            f"{r['rss']['JoeyNMT']:,.0f} MiB | {ratio(r['rss']['mt'], r['rss']['JoeyNMT'])} |",
        ]
        for beam, name in ((1, "greedy"), (5, "beam 5")):
            a, b = d["mt", beam], d["JoeyNMT", beam]
            lines.append(
                f"| test_2016_flickr {name}, batch {args.decode_batch}: sentences/s (BLEU) | "
                f"{a[0]:,.1f} ({a[1]:.2f}) | {b[0]:,.1f} ({b[1]:.2f}) | {ratio(a[0], b[0])} |"
            )
        lines += [
            f"| updates in the budget | {mt.last_step:,} | {joey.last_step:,} | "
            f"{ratio(mt.last_step, joey.last_step)} |",
            f"| dev BLEU at update {last_common} (the last both reached) | "
            f"{fmt(mt.bleu_at(last_common), '.2f')} | {fmt(joey.bleu_at(last_common), '.2f')} | |",
            f"| best dev BLEU in the budget | {max(b for *_, b in mt.validations):.2f} | "
            f"{max(b for *_, b in joey.validations):.2f} | |",
        ]
        lines += mark_rows(mt, joey, args.marks, r["budget"])
        curve = "; ".join(
            f"{name}: " + ", ".join(f"{s}→{b:.1f} @ {t / 60:.1f} min" for s, t, b in c.validations)
            for name, c in r["curves"].items()
        )
        lines += ["", f"Dev BLEU by update (update→BLEU @ minutes from launch) — {curve}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
