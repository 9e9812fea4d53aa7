"""The cached stages prepare -> tokenize -> encode (-> alignment, for guided alignment).

Each stage's output lives in `<cache_dir>/<stage>-<key>/`, where the key hashes the config the stage
reads and the keys of its inputs: an unchanged config re-runs nothing, and a changed model re-uses the
corpus and the tokenizer. A stage writes into a temporary folder and renames it when done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from omegaconf import DictConfig, OmegaConf

from mt import checkpoint, data, tokenizer
from mt.batching import EncodedCorpus

log = logging.getLogger(__name__)


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
    source = data.source(cfg.data, cfg.data_dir)
    where = Path(source.where)
    if source.kind == "url" or (source.kind == "hub" and not where.is_dir()):
        return {"remote": source.where, "config": cfg.data.get("hub_config")}
    if source.kind == "generated":
        return {"generated": source.where}
    if where.is_file():
        return {where.name: file_fingerprint(where)}
    files = sorted(where.glob("*") if source.kind == "local" else where.rglob("*"))
    return {
        str(p.relative_to(where)): file_fingerprint(p)
        for p in files
        if p.is_file() and not p.name.endswith(".md")
    }


def prepare_stage(cfg: DictConfig) -> tuple[str, datasets.DatasetDict]:
    """The cleaned, split corpus: (stage key, {split: Dataset of src/tgt})."""
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
    """The sentencepiece model(s) trained on the training split: (stage key, folder)."""
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
    """Every split's token ids."""
    key = stage_key("encoded", tokenizer_key)

    def build(tmp: Path) -> None:
        for split, dataset in corpus.items():
            EncodedCorpus.from_ids(
                tok.encode_src(dataset["src"]), tok.encode_tgt(dataset["tgt"])
            ).save(tmp / f"{split}.pt")

    folder = cached(Path(cfg.cache_dir), key, build)
    return {split: EncodedCorpus.load(folder / f"{split}.pt") for split in corpus}


def alignment_stage(
    cfg: DictConfig, tokenizer_key: str, tok: tokenizer.Tokenizer, corpus: datasets.DatasetDict
) -> list:
    """Guided alignment's links of the training split (mt.guided), one (N, 2) tensor per pair."""
    key = stage_key(
        "alignment", tokenizer_key, cfg.train.guided_alignment, cfg.train.guided_symmetrize
    )

    def build(tmp: Path) -> None:
        from mt import guided

        train = corpus["train"]
        links = guided.training_links(
            train["src"],
            train["tgt"],
            tok.piece_spans(train["src"], "src"),
            tok.piece_spans(train["tgt"], "tgt"),
            cfg.train.guided_alignment,
            cfg.train.guided_symmetrize,
        )
        checkpoint.save(
            tmp / "train.pt",
            {
                "links": torch.tensor(
                    [link for pair in links for link in pair], dtype=torch.int32
                ).reshape(-1, 2),
                "counts": torch.tensor([len(pair) for pair in links]),
            },
        )

    state = checkpoint.load(cached(Path(cfg.cache_dir), key, build) / "train.pt")
    return list(state["links"].long().split(state["counts"].tolist()))


@dataclass
class Stages:
    """What the cached stages give training: the corpus, the tokenizer (and its folder), the ids."""

    corpus: datasets.DatasetDict
    tokenizer_folder: Path
    tokenizer: tokenizer.Tokenizer
    encoded: dict[str, EncodedCorpus]


def build_stages(cfg: DictConfig) -> Stages:
    """prepare -> tokenize -> encode, each from the cache when it is there."""
    datasets.disable_progress_bars()
    prepare_key, corpus = prepare_stage(cfg)
    tokenizer_key, tokenizer_folder = tokenize_stage(cfg, prepare_key, corpus)
    tok = tokenizer.Tokenizer.load(tokenizer_folder)
    encoded = encode_stage(cfg, tokenizer_key, tok, corpus)
    if cfg.train.get("guided_alignment"):
        encoded["train"].links = alignment_stage(cfg, tokenizer_key, tok, corpus)
    return Stages(corpus, tokenizer_folder, tok, encoded)
