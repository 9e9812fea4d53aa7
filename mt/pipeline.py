"""The stages — prepare, tokenize, encode, train, evaluate — and their cache.

Each cached stage's output lives in `<cache_dir>/<stage>-<key>/`, where the key hashes the config the
stage reads and the keys of its inputs: an unchanged config re-runs nothing, and a changed model
re-uses the corpus and the tokenizer. A stage writes into a temporary folder and renames it when done.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from omegaconf import DictConfig, OmegaConf

from mt import checkpoint, data, distributed, evaluate, tokenizer
from mt.alignment import Alignment
from mt.batching import EncodedCorpus
from mt.models import Seq2Seq, build_model
from mt.search import translate_ids
from mt.train import Trainer, load_model_state

log = logging.getLogger(__name__)

# keys a run may change between invocations without becoming another run
RESUMABLE_KEYS = {
    "train.ddp_timeout_minutes",
    "train.max_steps",
    "train.max_minutes",
    "train.max_epochs",
    "train.patience",
    "train.validate_every",
    "train.log_every",
    "train.threads",
    "device",
    "data_dir",
    "cache_dir",
    "overwrite",
    "meta",
}


class RunError(RuntimeError):
    """A run directory that cannot be used as asked; the message names it and what to do."""


# --- the cache -------------------------------------------------------------------------------
def stage_key(name: str, *parts) -> str:
    """A short hash of a stage's name, config and input keys."""
    material = json.dumps([name, *parts], sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"


def cached(cache_dir: Path, key: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir/key`, building it with `build(tmp_folder)` first if it is not there."""
    final = Path(cache_dir) / key
    if final.exists():
        log.info("cache hit: %s", final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
    tmp.chmod(0o777 & ~checkpoint.current_umask())
    try:
        build(tmp)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def input_fingerprint(cfg: DictConfig) -> dict:
    """What the prepare stage reads: the local files' contents, or the public source's address."""
    if cfg.data.get("generator"):
        return {"generated": cfg.data.generator}
    if not cfg.data_dir:
        return {"remote": cfg.data.get("hub") or cfg.data.get("url")}
    where = Path(cfg.data_dir) / cfg.data.local
    files = [where] if where.is_file() else sorted(where.glob("*")) if where.is_dir() else []
    return {
        p.name: file_fingerprint(p) for p in files if p.is_file() and not p.name.endswith(".md")
    }


# --- stages ----------------------------------------------------------------------------------
def prepare_stage(cfg: DictConfig) -> tuple[str, datasets.DatasetDict]:
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.pop("probes", None)  # probes do not change the corpus
    key = stage_key("prepare", data_cfg, input_fingerprint(cfg))
    folder = cached(
        Path(cfg.cache_dir),
        key,
        lambda tmp: data.prepare(cfg.data, cfg.data_dir, Path(cfg.cache_dir)).save_to_disk(
            str(tmp)
        ),
    )
    return key, datasets.load_from_disk(str(folder))


def tokenize_stage(
    cfg: DictConfig, prepare_key: str, corpus: datasets.DatasetDict
) -> tuple[str, Path]:
    key = stage_key(
        "tokenizer", prepare_key, OmegaConf.to_container(cfg.tokenizer, resolve=True), cfg.seed
    )
    t = cfg.tokenizer

    def build(tmp: Path) -> None:
        train = corpus["train"]
        tokenizer.train(
            train["src"],
            train["tgt"],
            tmp,
            vocab_size=t.vocab_size,
            model_type=t.type,
            joint=t.joint,
            character_coverage=t.character_coverage,
            max_sentences=t.max_sentences,
            seed=cfg.seed,
        )

    return key, cached(Path(cfg.cache_dir), key, build)


def encode_stage(
    cfg: DictConfig, tokenizer_key: str, tok: tokenizer.Tokenizer, corpus: datasets.DatasetDict
) -> dict[str, EncodedCorpus]:
    key = stage_key("encoded", tokenizer_key)

    def build(tmp: Path) -> None:
        for split, dataset in corpus.items():
            EncodedCorpus.from_ids(
                tok.encode_src(dataset["src"]), tok.encode_tgt(dataset["tgt"])
            ).save(tmp / f"{split}.pt")

    folder = cached(Path(cfg.cache_dir), key, build)
    return {split: EncodedCorpus.load(folder / f"{split}.pt") for split in corpus}


def build_stages(
    cfg: DictConfig,
) -> tuple[datasets.DatasetDict, Path, tokenizer.Tokenizer, dict[str, EncodedCorpus]]:
    """prepare -> tokenize -> encode, each from the cache when it is there: the corpus, the
    tokenizer's folder, the tokenizer and the encoded splits."""
    prepare_key, corpus = prepare_stage(cfg)
    tokenizer_key, tokenizer_folder = tokenize_stage(cfg, prepare_key, corpus)
    tok = tokenizer.Tokenizer.load(tokenizer_folder)
    return corpus, tokenizer_folder, tok, encode_stage(cfg, tokenizer_key, tok, corpus)


# --- runs ------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ between two configs, ignoring those a resumed run may change."""
    a, b = flatten(saved), flatten(current)

    def relevant(k: str) -> bool:
        return not any(
            k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS
        ) and not k.startswith("decode.")

    return sorted(k for k in set(a) | set(b) if relevant(k) and a.get(k) != b.get(k))


def init_run(cfg: DictConfig, tokenizer_folder: Path) -> Path:
    """Create (or re-open) the run directory; refuse one that holds a different run."""
    run_dir = Path(cfg.run_dir)
    current = OmegaConf.to_container(cfg, resolve=True)
    saved_path = run_dir / "config.yaml"
    if saved_path.exists():
        saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True)
        differences = config_differences(saved, current)
        if differences and not cfg.overwrite:
            shown = ", ".join(
                f"{k} ({flatten(saved).get(k)!r} -> {flatten(current).get(k)!r})"
                for k in differences[:6]
            )
            raise RunError(
                f"{run_dir} holds a run with another config: {shown}. "
                f"Choose a new name=..., or pass overwrite=true to start it afresh."
            )
        if cfg.overwrite:
            log.warning("overwrite=true: removing %s", run_dir)
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    current["meta"] = {
        "git_commit": git_commit(),
        "torch": str(torch.__version__),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if not saved_path.exists():
        checkpoint.atomic_write_text(saved_path, OmegaConf.to_yaml(OmegaConf.create(current)))
    if not (run_dir / "tokenizer").exists():
        tmp = run_dir / ".tokenizer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tokenizer_folder, tmp)
        os.replace(tmp, run_dir / "tokenizer")
    return run_dir


def setup_logging(run_dir: Path | None = None) -> None:
    """Log to the console, and to the run's train.log once there is a run; ranks other than 0 log
    warnings only, to the console."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if distributed.is_main() else logging.WARNING)
    if not distributed.is_main():
        run_dir = None
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        for h in root.handlers
    ):
        console = logging.StreamHandler()
        console.setFormatter(formatter)
        root.addHandler(console)
    if run_dir is not None:
        path = str((run_dir / "train.log").resolve())
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            if handler.baseFilename != path:  # another run's log (the previous job of a sweep)
                root.removeHandler(handler)
                handler.close()
        if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
            handler = logging.FileHandler(path)
            handler.setFormatter(formatter)
            root.addHandler(handler)
    datasets.disable_progress_bars()
    for noisy in ("datasets", "httpx", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_threads(cfg: DictConfig) -> None:
    """train.threads, or the machine's cores shared among the processes torchrun started on it."""
    per_process = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(cfg.train.threads or max(1, per_process))


@dataclass
class Run:
    """A trained run, loaded for decoding: everything comes from its directory."""

    dir: Path
    cfg: DictConfig
    tokenizer: tokenizer.Tokenizer
    model: Seq2Seq
    device: torch.device

    def translate(
        self,
        sentences: list[str],
        beam_size: int | None = None,
        nbest: int = 1,
        need_attn: bool = False,
        batch_size: int | None = None,
    ):
        """Hypotheses per sentence (nbest each), in order, as they are decoded."""
        d = self.cfg.decode
        return translate_ids(
            self.model,
            self.tokenizer.encode_src(sentences),
            self.device,
            batch_size or d.batch_size,
            beam_size=beam_size or d.beam_size,
            length_penalty=d.length_penalty,
            nbest=nbest,
            max_len_a=d.max_len_a,
            max_len_b=d.max_len_b,
            need_attn=need_attn,
        )

    def align(
        self, sentence: str, target: str | None = None, beam_size: int = 1
    ) -> tuple[str, float, Alignment]:
        """The translation of `sentence` (or the given `target`, forced) with its word alignment.

        Returns (translation, score, alignment); a forced target's score is its mean log-probability.
        """
        src_ids = self.tokenizer.encode_src([sentence])[0]
        if target is None:
            hyp = next(self.translate([sentence], beam_size=beam_size, need_attn=True))[0]
            tokens, attention, score = hyp.tokens, hyp.attention, hyp.score
        else:
            tokens = self.tokenizer.encode_tgt([target])[0]
            src = torch.tensor([src_ids], device=self.device)
            tgt_in = torch.tensor([[tokenizer.BOS, *tokens[:-1]]], device=self.device)
            with torch.inference_mode():
                logits, attn = self.model(src, tgt_in, need_attn=True)
            log_probs = torch.log_softmax(logits[0].float(), -1)
            score = float(
                log_probs.gather(1, torch.tensor(tokens, device=self.device)[:, None]).mean()
            )
            attention = attn[0].cpu()
        pieces = self.tokenizer.src_pieces(src_ids), self.tokenizer.tgt_pieces(tokens)
        alignment = Alignment.from_subwords(*pieces, attention.float())
        return target if target is not None else self.tokenizer.decode_tgt(tokens), score, alignment


def build_for(cfg: DictConfig, tok: tokenizer.Tokenizer) -> Seq2Seq:
    return build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, shared_vocab=tok.joint)


def load_run(run_dir: str | Path, which: str | None = None, device: str = "auto") -> Run:
    """The model of `run_dir` with checkpoint `which` (best | last | averaged | a file name; default:
    the run's decode.checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    for needed in ("config.yaml", "tokenizer", "checkpoints"):
        if not (run_dir / needed).exists():
            raise RunError(
                f"{run_dir} is not a complete run: it has no {needed} (was it trained with `mt train`?)"
            )
    cfg = OmegaConf.load(run_dir / "config.yaml")
    which = which or cfg.decode.checkpoint
    tok = tokenizer.Tokenizer.load(run_dir / "tokenizer")
    model = build_for(cfg, tok)
    path = run_dir / "checkpoints" / (which if which.endswith(".pt") else f"{which}.pt")
    if not path.exists() and which == "best":
        path = run_dir / "checkpoints" / "last.pt"
    load_model_state(model, checkpoint.load(path)["model"], path)
    target = resolve_device(device)
    return Run(run_dir, cfg, tok, model.to(target).eval(), target)


# --- the whole pipeline ----------------------------------------------------------------------
def log_probes(run: Run, probes: list[str], step: int, writer) -> None:
    """Alignment heatmaps of the probe sentences, greedy and beam, as TensorBoard images."""
    for i, sentence in enumerate(probes):
        for beam in sorted({1, run.cfg.decode.beam_size}):
            translation, _, alignment = run.align(sentence, beam_size=beam)
            search_name = "greedy" if beam == 1 else f"beam{beam}"
            tag = f"alignment/probe{i}_{search_name}"
            writer.add_figure(
                tag, alignment.figure(f"{search_name}: {translation}"), step, close=True
            )
            writer.add_text(tag, f"{translation}  \n`{alignment.pharaoh()}`", step)


def dev_bleu_fn(
    cfg: DictConfig, tok: tokenizer.Tokenizer, dev: datasets.Dataset, device: torch.device
):
    """The validation callback: greedy-decode up to train.dev_max_sentences dev sentences; BLEU and chrF."""
    n = min(cfg.train.dev_max_sentences, len(dev))
    sources, references = dev["src"][:n], dev["tgt"][:n]
    probes = list(cfg.data.get("probes") or [])

    def validate(model: Seq2Seq, step: int, writer) -> tuple[float, float]:
        run = Run(Path(cfg.run_dir), cfg, tok, model.eval(), device)
        hyps = [tok.decode_tgt(h[0].tokens) for h in run.translate(sources, beam_size=1)]
        scores = evaluate.score(hyps, references, cfg.data.tgt_lang, ter=False)
        for i in range(min(3, n)):
            writer.add_text(
                f"dev/sample_{i}", f"{sources[i]}  \n→ {hyps[i]}  \n(ref: {references[i]})", step
            )
        log_probes(run, probes, step, writer)
        return scores["bleu"], scores["chrf"]

    return validate


def train_pipeline(cfg: DictConfig) -> Path:
    """prepare -> tokenize -> encode -> train, into cfg.run_dir. Returns the run directory.

    Under torchrun, rank 0 builds the cached stages and the run directory while the others wait,
    then every rank reads them from the cache.
    """
    ddp_device = distributed.init(cfg.train.ddp_timeout_minutes)
    setup_logging()
    set_threads(cfg)
    if not distributed.is_main():
        distributed.barrier()  # wait for rank 0 to fill the cache and make the run directory
    corpus, tokenizer_folder, tok, encoded = build_stages(cfg)
    if distributed.is_main():
        init_run(cfg, tokenizer_folder)
        distributed.barrier()
    run_dir = Path(cfg.run_dir)
    setup_logging(run_dir)
    device = ddp_device or resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_for(cfg, tok)
    dev = cfg.data.dev_split
    validate = dev_bleu_fn(cfg, tok, corpus[dev], device)
    Trainer(
        cfg.train, model, encoded["train"], encoded[dev], run_dir, device, cfg.seed, validate
    ).train()
    return run_dir


def evaluate_run(
    run_dir: str | Path,
    splits: list[str] | None = None,
    beam_size: int | None = None,
    which: str | None = None,
    device: str = "auto",
    data_dir: str | None = None,
) -> dict:
    """Decode the test split(s) of a run with beam search; write eval/<split>.hyp and .scores.json."""
    run = load_run(run_dir, which, device)
    cfg = run.cfg
    if data_dir is not None or os.environ.get("MT_DATA_DIR"):
        cfg.data_dir = data_dir or os.environ["MT_DATA_DIR"]
    _, corpus = prepare_stage(cfg)
    beam = beam_size or cfg.decode.beam_size
    results = {}
    for split in splits or list(cfg.data.test_splits):
        if split not in corpus:
            raise RunError(f"no split {split!r} in {cfg.data.name} (has {', '.join(corpus)})")
        dataset = corpus[split]
        hyps = [
            run.tokenizer.decode_tgt(h[0].tokens)
            for h in run.translate(dataset["src"], beam_size=beam)
        ]
        scores = evaluate.score(hyps, dataset["tgt"], cfg.data.tgt_lang)
        scores.update(
            {
                "split": split,
                "beam_size": beam,
                "checkpoint": which or run.cfg.decode.checkpoint,
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
            }
        )
        out = Path(run_dir) / "eval"
        checkpoint.atomic_write_text(out / f"{split}.hyp", "".join(h + "\n" for h in hyps))
        checkpoint.atomic_write_text(
            out / f"{split}.scores.json", json.dumps(scores, indent=2) + "\n"
        )
        log.info(
            "%s %s: BLEU %.2f, chrF %.2f, tokenized-lowercased BLEU %.2f",
            run_dir,
            split,
            scores["bleu"],
            scores["chrf"],
            scores["bleu_tok_lc"],
        )
        results[split] = scores
    return results
