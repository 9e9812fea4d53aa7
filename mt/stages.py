"""The cached stages prepare -> tokenize -> encode (-> alignment, for guided alignment).

Each stage's output lives in `<cache_dir>/<stage>-<key>/`, where the key hashes the config the stage
reads and the keys of its inputs: an unchanged config re-runs nothing, and a changed model re-uses the
corpus and the tokenizer. A stage writes into a temporary folder and renames it when done.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from omegaconf import DictConfig, OmegaConf

from mt import checkpoint, data, tokenizer
from mt.batching import EncodedCorpus, Ragged, RaggedWriter

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
    start = time.perf_counter()
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process (a second training on the same data) built it meanwhile: a stage's
            # output depends only on its key, so theirs is as good as this one.
            log.info("%s was built meanwhile by another process; using it", final)
            return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s in %.1f s", final, time.perf_counter() - start)
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


PREPARED_LAYOUT = 2  # one Arrow file per split, split by hashed source sentence


def prepare_stage(cfg: DictConfig) -> tuple[str, datasets.DatasetDict]:
    """The cleaned, split corpus: (stage key, {split: Dataset of src/tgt}, memory-mapped)."""
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.pop("probes", None)  # probes do not change the corpus
    key = stage_key("prepare", data_cfg, input_fingerprint(cfg), PREPARED_LAYOUT)

    def build(tmp: Path) -> None:
        corpus = data.prepare(cfg.data, cfg.data_dir, Path(cfg.cache_dir), out=tmp)
        (tmp / "splits.json").write_text(json.dumps(list(corpus)))

    folder = cached(Path(cfg.cache_dir), key, build)
    names = json.loads((folder / "splits.json").read_text())
    return key, data.load_prepared(folder, names)


def arrow_file(dataset: datasets.Dataset) -> Path:
    """The Arrow file a prepared split was read from."""
    return Path(dataset.cache_files[0]["filename"])


def texts(dataset: datasets.Dataset, column: str) -> Iterator[str]:
    """One column of a prepared split, a record batch at a time (data.read_batches)."""
    for batch in data.read_batches(arrow_file(dataset), [column]):
        yield from batch.column(0).to_pylist()


def tokenize_stage(
    cfg: DictConfig, prepare_key: str, corpus: datasets.DatasetDict
) -> tuple[str, Path]:
    """The sentencepiece model(s) trained on the training split: (stage key, folder)."""
    tok_cfg = OmegaConf.to_container(cfg.tokenizer, resolve=True)
    if tok_cfg.get("normalization") == "nmt_nfkc":
        del tok_cfg["normalization"]  # the default, from before the key: the same tokenizers
    key = stage_key("tokenizer", prepare_key, tok_cfg, cfg.seed)
    t = cfg.tokenizer

    def build(tmp: Path) -> None:
        train = corpus["train"]
        tokenizer.train(
            lambda: texts(train, "src"),
            lambda: texts(train, "tgt"),
            tmp,
            vocab_size=t.vocab_size,
            model_type=t.type,
            joint=t.joint,
            character_coverage=t.character_coverage,
            max_sentences=t.max_sentences,
            seed=cfg.seed,
            normalization=t.normalization,
        )

    return key, cached(Path(cfg.cache_dir), key, build)


ENCODE_CHUNK = 50_000  # sentences a worker encodes at a time
_worker_tokenizer: tokenizer.Tokenizer | None = None


def _start_worker(tokenizer_folder: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer.Tokenizer.load(Path(tokenizer_folder))


def _encode_chunk(src: list[str], tgt: list[str]):
    """Source and target ids of a chunk of sentence pairs: per side, flat values and lengths."""
    out = []
    for ids in (_worker_tokenizer.encode_src(src), _worker_tokenizer.encode_tgt(tgt)):
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        out.append((np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32), lengths))
    return out


def _chunks(arrow: Path) -> Iterator[tuple[list[str], list[str]]]:
    src, tgt = [], []
    for batch in data.read_batches(arrow, ["src", "tgt"]):
        src += batch.column(0).to_pylist()
        tgt += batch.column(1).to_pylist()
        while len(src) >= ENCODE_CHUNK:
            yield src[:ENCODE_CHUNK], tgt[:ENCODE_CHUNK]
            src, tgt = src[ENCODE_CHUNK:], tgt[ENCODE_CHUNK:]
    if src:
        yield src, tgt


def encode_split(
    arrow: Path, rows: int, tokenizer_folder: Path, folder: Path, name: str, workers: int
) -> None:
    """Encode a prepared split into folder/name.{src,tgt}.* (Ragged): the split is read a chunk at
    a time and encoded by `workers` processes, at most two chunks each in flight; the chunks are
    written in order, so the files do not depend on `workers`."""
    writers = [RaggedWriter(folder / f"{name}.src"), RaggedWriter(folder / f"{name}.tgt")]

    def write(result) -> None:
        for writer, (values, lengths) in zip(writers, result, strict=True):
            writer.append(values, lengths)

    if workers > 1 and rows > ENCODE_CHUNK:
        # fork where there is one (as torch's DataLoader does): the workers use sentencepiece
        # alone, start at once, and need no importable __main__ (stdin, notebooks)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(
            workers, context, initializer=_start_worker, initargs=(str(tokenizer_folder),)
        ) as pool:
            pending: collections.deque = collections.deque()
            for chunk in _chunks(arrow):
                pending.append(pool.submit(_encode_chunk, *chunk))
                if len(pending) >= 2 * workers:
                    write(pending.popleft().result())
            while pending:
                write(pending.popleft().result())
    else:
        _start_worker(str(tokenizer_folder))
        for chunk in _chunks(arrow):
            write(_encode_chunk(*chunk))
    for writer in writers:
        writer.close()


def encode_stage(
    cfg: DictConfig,
    tokenizer_key: str,
    tokenizer_folder: Path,
    corpus: datasets.DatasetDict,
) -> dict[str, EncodedCorpus]:
    """Every split's token ids (encoded once, by parallel processes; read from their files)."""
    key = stage_key("encoded", tokenizer_key, ENCODED_LAYOUT)

    def build(tmp: Path) -> None:
        for split, dataset in corpus.items():
            encode_split(
                arrow_file(dataset),
                len(dataset),
                tokenizer_folder,
                tmp,
                split,
                workers=os.cpu_count() or 1,
            )

    folder = cached(Path(cfg.cache_dir), key, build)
    return {split: EncodedCorpus.load(folder, split) for split in corpus}


ENCODED_LAYOUT = 2  # Ragged int32 values + offsets per side


def alignment_stage(
    cfg: DictConfig, tokenizer_key: str, tok: tokenizer.Tokenizer, corpus: datasets.DatasetDict
) -> Ragged:
    """Guided alignment's links of the training split (mt.guided): per pair, (N, 2) rows."""
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
        Ragged.from_rows(links, width=2).save(tmp / "train.links")

    return Ragged.load(cached(Path(cfg.cache_dir), key, build) / "train.links", width=2)


@dataclass
class Stages:
    """What the cached stages give training: the corpus, the tokenizer (and its folder), the ids."""

    corpus: datasets.DatasetDict
    tokenizer_folder: Path
    tokenizer: tokenizer.Tokenizer
    encoded: dict[str, EncodedCorpus]
    prepare_key: str


def build_stages(cfg: DictConfig) -> Stages:
    """prepare -> tokenize -> encode, each from the cache when it is there."""
    datasets.disable_progress_bars()
    prepare_key, corpus = prepare_stage(cfg)
    tokenizer_key, tokenizer_folder = tokenize_stage(cfg, prepare_key, corpus)
    tok = tokenizer.Tokenizer.load(tokenizer_folder)
    encoded = encode_stage(cfg, tokenizer_key, tokenizer_folder, corpus)
    if cfg.train.get("guided_alignment"):
        encoded["train"].links = alignment_stage(cfg, tokenizer_key, tok, corpus)
    return Stages(corpus, tokenizer_folder, tok, encoded, prepare_key)
