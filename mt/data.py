"""Parallel corpora -> `datasets.DatasetDict` of {"src", "tgt"}: local text files (plain or .gz),
TSV, URLs, hub ids and local dataset folders; cleaning, length/ratio filters, and seeded splits by unique source sentence."""

from __future__ import annotations

import gzip
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from omegaconf import DictConfig

from mt import toy
from mt.errors import MTError

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class DataError(MTError, ValueError):
    """A corpus the pipeline cannot use; the message names the file, line or key."""


@dataclass
class FilterReport:
    """What cleaning did to one split, so the log can say it."""

    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def __str__(self) -> str:
        parts = [f"{n:,} {why}" for why, n in sorted(self.dropped.items())]
        return f"kept {self.kept:,}" + (f", dropped {', '.join(parts)}" if parts else "")


def read_lines(path: Path) -> list[str]:
    """All lines of a UTF-8 text file (plain or gzip-compressed), without line breaks.

    Invalid UTF-8 raises a DataError naming the file and the 1-based line number.
    """
    lines = []
    try:
        with open(path, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    lines.append(raw.decode("utf-8").rstrip("\r\n"))
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}:{number}: invalid UTF-8 (byte {e.start}: {raw[e.start : e.start + 4]!r})"
                    ) from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return lines


def read_parallel(src_path: Path, tgt_path: Path) -> list[Pair]:
    """Line-aligned pairs from two files; differing line counts name both files and both counts."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"mismatched corpora: {src_path} has {len(src):,} lines but {tgt_path} has {len(tgt):,}"
        )
    return list(zip(src, tgt, strict=True))


def read_tsv(path: Path, columns: list[str], src_lang: str, tgt_lang: str) -> list[Pair]:
    """Pairs from a tab-separated file whose first columns are named by `columns` (extra ignored)."""
    i, j = columns.index(src_lang), columns.index(tgt_lang)
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < len(columns):
            raise DataError(
                f"{path}:{number}: expected {len(columns)} tab-separated fields "
                f"({', '.join(columns)}), found {len(fields)}"
            )
        pairs.append((fields[i], fields[j]))
    return pairs


def _local_file(folder: Path, stem: str, lang: str) -> Path:
    for candidate in (folder / f"{stem}.{lang}.gz", folder / f"{stem}.{lang}"):
        if candidate.exists():
            return candidate
    raise DataError(f"missing corpus file: {folder / f'{stem}.{lang}'}[.gz]")


def load_local(cfg: DictConfig, where: Path) -> dict[str, list[Pair]]:
    """Splits from `where`: a folder of `<stem>.<lang>[.gz]` files, or one TSV file (split "all")."""
    if where.is_file():
        columns = list(cfg.get("tsv_columns") or [cfg.src_lang, cfg.tgt_lang])
        return {"all": read_tsv(where, columns, cfg.src_lang, cfg.tgt_lang)}
    return {
        split: read_parallel(
            _local_file(where, stem, cfg.src_lang), _local_file(where, stem, cfg.tgt_lang)
        )
        for split, stem in cfg.files.items()
    }


# mt's split names -> a hub corpus's usual ones
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def load_hub(cfg: DictConfig, cache_dir: Path) -> dict[str, list[Pair]]:
    """Splits from a hub id, a local folder `datasets.load_dataset` reads (parquet/JSON files with a
    `translation` column), or a `save_to_disk` folder; `data.files` maps our splits to its split names."""
    where = Path(cfg.hub)
    if (where / "dataset_dict.json").exists() or (where / "state.json").exists():
        corpus = datasets.load_from_disk(str(where))
    else:
        corpus = datasets.load_dataset(
            cfg.hub, cfg.get("hub_config"), cache_dir=str(cache_dir / "hub")
        )
    if isinstance(corpus, datasets.Dataset):
        corpus = datasets.DatasetDict({"train": corpus})
    splits = {}
    for split, name in (cfg.files or HUB_SPLITS).items():
        if name not in corpus:
            raise DataError(
                f"data.files.{split}: {cfg.hub} has no split {name!r} (it has {', '.join(corpus)})"
            )
        columns = corpus[name].column_names
        if "translation" not in columns:
            raise DataError(
                f"{cfg.hub}/{name}: no 'translation' column (it has {', '.join(columns)})"
            )
        pairs = []
        for row, t in enumerate(corpus[name]["translation"]):
            if not isinstance(t, dict) or cfg.src_lang not in t or cfg.tgt_lang not in t:
                has = ", ".join(t) if isinstance(t, dict) else type(t).__name__
                raise DataError(
                    f"{cfg.hub}/{name} row {row}: translation has no {cfg.src_lang!r} and "
                    f"{cfg.tgt_lang!r} (has {has}); set data.src_lang / data.tgt_lang"
                )
            pairs.append((t[cfg.src_lang], t[cfg.tgt_lang]))
        splits[split] = pairs
    return splits


def load_url(cfg: DictConfig, cache_dir: Path) -> dict[str, list[Pair]]:
    """Splits from files under the corpus's public URL (downloaded and cached by `datasets`)."""
    download = datasets.DownloadManager(
        download_config=datasets.DownloadConfig(cache_dir=str(cache_dir / "downloads"))
    )
    if cfg.url_format == "tsv":
        folder = Path(download.download_and_extract(cfg.url))
        member = folder / cfg.url_member if folder.is_dir() else folder
        return {"all": read_tsv(member, list(cfg.tsv_columns), cfg.src_lang, cfg.tgt_lang)}
    if cfg.url_format == "text":
        splits = {}
        for split, stem in cfg.files.items():
            src, tgt = (
                Path(download.download(f"{cfg.url}/{stem}.{lang}.gz"))
                for lang in (cfg.src_lang, cfg.tgt_lang)
            )
            splits[split] = read_parallel(src, tgt)
        return splits
    raise DataError(f"data.url_format: unknown value {cfg.url_format!r} (expected tsv or text)")


@dataclass(frozen=True)
class Source:
    """Where a corpus is read from: kind is generated | local | hub | url."""

    kind: str
    where: str


def source(cfg: DictConfig, data_dir: str | None) -> Source:
    """Where `cfg` (a conf/data entry) is read from.

    A generator needs nothing; `data.local` is looked up under `data_dir` (MT_DATA_DIR), then as a
    path of its own; otherwise the public source: `data.hub` (a hub id or a local dataset folder), or
    `data.url`.
    """
    if cfg.get("generator"):
        return Source("generated", cfg.generator)
    if cfg.get("local"):
        candidates = ([Path(data_dir) / cfg.local] if data_dir else []) + [Path(cfg.local)]
        for path in candidates:
            if path.exists():
                return Source("local", str(path))
        if data_dir:
            raise DataError(
                f"data.local: {candidates[0]} does not exist (data_dir={data_dir}); it should hold "
                + ", ".join(f"{stem}.{cfg.src_lang}.gz" for stem in cfg.files.values())
            )
    if cfg.get("hub"):
        return Source("hub", str(cfg.hub))
    if cfg.get("url"):
        return Source("url", str(cfg.url))
    raise DataError(f"data: {cfg.name} names no source (set data.local, data.hub or data.url)")


def load_raw(cfg: DictConfig, data_dir: str | None, cache_dir: Path) -> dict[str, list[Pair]]:
    """The corpus's splits as read, before cleaning: {split name: pairs}."""
    where = source(cfg, data_dir)
    log.info("%s: reading %s %s", cfg.name, where.kind, where.where)
    if where.kind == "generated":
        if cfg.generator != "toy_reorder":
            raise DataError(f"data.generator: unknown generator {cfg.generator!r} (toy_reorder)")
        return toy.generate(dict(cfg.sizes), cfg.seed)
    if where.kind == "local":
        return load_local(cfg, Path(where.where))
    try:
        return load_hub(cfg, cache_dir) if where.kind == "hub" else load_url(cfg, cache_dir)
    except (OSError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as e:
        hint = (
            f"Set MT_DATA_DIR (or data_dir=...) to a folder holding {cfg.local}/"
            if cfg.get("local")
            else "Check the hub id, or point data.hub at a local dataset folder"
        )
        raise DataError(
            f"could not download {cfg.name} from {where.where} ({type(e).__name__}: {e}). {hint}"
        ) from None


def normalize(text: str) -> str:
    """One line of text with runs of whitespace made single spaces."""
    return " ".join(text.split())


def clean(pairs: list[Pair], report: FilterReport) -> list[Pair]:
    """Whitespace-normalized pairs with empty sides dropped (and counted)."""
    kept = []
    for src, tgt in pairs:
        src, tgt = normalize(src), normalize(tgt)
        if not src or not tgt:
            report.drop("empty")
            continue
        kept.append((src, tgt))
    report.kept = len(kept)
    return kept


def length_filter(
    pairs: list[Pair], max_words: int, max_ratio: float, report: FilterReport
) -> list[Pair]:
    """Training pairs within `max_words` words a side and a words ratio of at most `max_ratio`."""
    kept = []
    for src, tgt in pairs:
        n, m = len(src.split()), len(tgt.split())
        if max(n, m) > max_words:
            report.drop(f"longer than {max_words} words")
        elif max(n, m) / min(n, m) > max_ratio:
            report.drop(f"length ratio above {max_ratio}")
        else:
            kept.append((src, tgt))
    report.kept = len(kept)
    return kept


def split_by_source(
    pairs: list[Pair], sizes: Mapping[str, int], seed: int
) -> dict[str, list[Pair]]:
    """Held-out splits of about `sizes[name]` pairs each, drawn by unique source sentence.

    All translations of one source sentence land in the same split, so a test sentence is never
    seen in training. The rest is "train".
    """
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair[0], []).append(pair)
    sources = list(groups)
    random.Random(seed).shuffle(sources)
    splits: dict[str, list[Pair]] = {}
    position = 0
    for name, size in sizes.items():
        chosen: list[Pair] = []
        while len(chosen) < size and position < len(sources):
            chosen.extend(groups[sources[position]])
            position += 1
        splits[name] = chosen
    splits["train"] = [pair for source in sources[position:] for pair in groups[source]]
    return splits


def prepare(cfg: DictConfig, data_dir: str | None, cache_dir: Path) -> datasets.DatasetDict:
    """The corpus of `cfg` (a conf/data entry) as cleaned, split train/dev/test datasets."""
    raw = load_raw(cfg, data_dir, cache_dir)
    if cfg.get("split"):
        if set(raw) != {"all"}:
            raise DataError(
                f"data.split is set, so data.files must name one 'all' file, not {sorted(raw)}"
            )
        report = FilterReport()
        sizes = {k: v for k, v in cfg.split.items() if k != "seed"}
        raw = split_by_source(clean(raw["all"], report), sizes, cfg.split.seed)
        log.info("%s: %s before splitting", cfg.name, report)
    if "train" not in raw:
        raise DataError(f"data.files: {cfg.name} has no 'train' split (has {sorted(raw)})")

    splits = {}
    for name, pairs in raw.items():
        report = FilterReport()
        pairs = clean(pairs, report)
        if name == "train":
            pairs = length_filter(pairs, cfg.filter.max_words, cfg.filter.max_ratio, report)
        log.info("%s/%s: %s", cfg.name, name, report)
        if not pairs:
            raise DataError(f"{cfg.name}/{name}: no sentence pairs left after cleaning")
        src, tgt = zip(*pairs, strict=True)
        splits[name] = datasets.Dataset.from_dict({"src": list(src), "tgt": list(tgt)})
    return datasets.DatasetDict(splits)
