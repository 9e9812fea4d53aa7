"""Parallel corpora -> `datasets.DatasetDict` of {"src", "tgt"}: local text files (plain or .gz),
TSV, URLs and hub ids; cleaning, length/ratio filters, and seeded splits by unique source sentence."""

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

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class DataError(ValueError):
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


def load_local(cfg: DictConfig, data_dir: Path) -> dict[str, list[Pair]]:
    """Splits from `<data_dir>/<cfg.local>`: a folder of `<stem>.<lang>[.gz]` files, or one TSV file."""
    where = data_dir / cfg.local
    if where.is_file():
        columns = list(cfg.get("tsv_columns") or [cfg.src_lang, cfg.tgt_lang])
        return {"all": read_tsv(where, columns, cfg.src_lang, cfg.tgt_lang)}
    if not where.is_dir():
        raise DataError(
            f"data.local: {where} does not exist (data_dir={data_dir}); it should hold "
            + ", ".join(f"{stem}.{cfg.src_lang}.gz" for stem in cfg.files.values())
        )
    return {
        split: read_parallel(
            _local_file(where, stem, cfg.src_lang), _local_file(where, stem, cfg.tgt_lang)
        )
        for split, stem in cfg.files.items()
    }


def load_remote(cfg: DictConfig, cache_dir: Path) -> dict[str, list[Pair]]:
    """Splits from the corpus's public source: a hub id, or files under a URL (cached by `datasets`)."""
    if cfg.get("hub"):
        hub = datasets.load_dataset(
            cfg.hub, cfg.get("hub_config"), cache_dir=str(cache_dir / "hub")
        )
        return {
            split: [(t[cfg.src_lang], t[cfg.tgt_lang]) for t in hub[name]["translation"]]
            for split, name in cfg.files.items()
        }
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
    if cfg.get("generator") == "toy_reorder":
        raw = toy.generate(dict(cfg.sizes), cfg.seed)
    elif cfg.get("generator"):
        raise DataError(f"data.generator: unknown generator {cfg.generator!r} (toy_reorder)")
    elif data_dir:
        raw = load_local(cfg, Path(data_dir))
    else:
        try:
            raw = load_remote(cfg, cache_dir)
        except (OSError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as e:
            source = cfg.get("hub") or cfg.url
            raise DataError(
                f"could not download {cfg.name} from {source} ({type(e).__name__}: {e}). "
                f"Set MT_DATA_DIR (or data_dir=...) to a folder holding {cfg.local}/"
            ) from None

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
