"""Parallel corpora -> `datasets.DatasetDict` of {"src", "tgt"}: local text files (plain or .gz),
TSV, URLs, hub ids and local dataset folders; cleaning, length/ratio filters, and seeded splits by
unique source sentence.

Every stage streams: pairs are read a line (or a row) at a time, cleaned and filtered on the way,
and written to one Arrow file per split, which `datasets` memory-maps. Memory stays flat however
large the corpus; a split by source sentence keeps only the keys of the held-out sentences.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
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


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (plain or gzip-compressed), without line breaks, one at a time.

    Invalid UTF-8 raises a DataError naming the file and the 1-based line number.
    """
    try:
        with open(path, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    yield raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}:{number}: invalid UTF-8 (byte {e.start}: {raw[e.start : e.start + 4]!r})"
                    ) from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def iter_parallel(src_path: Path, tgt_path: Path) -> Iterator[Pair]:
    """Line-aligned pairs from two files, streamed; differing line counts name both files and both
    counts (the longer file is counted to its end to say so)."""
    src, tgt = iter_lines(src_path), iter_lines(tgt_path)
    n = 0
    for s in src:
        t = next(tgt, None)
        if t is None:
            longer = n + 1 + sum(1 for _ in src)
            raise DataError(
                f"mismatched corpora: {src_path} has {longer:,} lines but {tgt_path} has {n:,}"
            )
        n += 1
        yield s, t
    if rest := sum(1 for _ in tgt):
        raise DataError(
            f"mismatched corpora: {src_path} has {n:,} lines but {tgt_path} has {n + rest:,}"
        )


def iter_tsv(path: Path, columns: list[str], src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    """Pairs from a tab-separated file whose first columns are named by `columns` (extra ignored)."""
    i, j = columns.index(src_lang), columns.index(tgt_lang)
    for number, line in enumerate(iter_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < len(columns):
            raise DataError(
                f"{path}:{number}: expected {len(columns)} tab-separated fields "
                f"({', '.join(columns)}), found {len(fields)}"
            )
        yield fields[i], fields[j]


class PairSource:
    """A split's pairs, read afresh each time it is iterated (a corpus may be read twice)."""

    def __init__(self, make: Callable[[], Iterable[Pair]]):
        self.make = make

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.make())


def _local_file(folder: Path, stem: str, lang: str) -> Path:
    for candidate in (folder / f"{stem}.{lang}.gz", folder / f"{stem}.{lang}"):
        if candidate.exists():
            return candidate
    raise DataError(f"missing corpus file: {folder / f'{stem}.{lang}'}[.gz]")


def load_local(cfg: DictConfig, where: Path) -> dict[str, PairSource]:
    """Splits from `where`: a folder of `<stem>.<lang>[.gz]` files, or one TSV file (split "all")."""
    if where.is_file():
        columns = list(cfg.get("tsv_columns") or [cfg.src_lang, cfg.tgt_lang])
        return {"all": PairSource(lambda: iter_tsv(where, columns, cfg.src_lang, cfg.tgt_lang))}
    splits = {}
    for split, stem in cfg.files.items():
        src, tgt = (_local_file(where, stem, lang) for lang in (cfg.src_lang, cfg.tgt_lang))
        splits[split] = PairSource(lambda src=src, tgt=tgt: iter_parallel(src, tgt))
    return splits


# mt's split names -> a hub corpus's usual ones
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _hub_pairs(rows: Iterable, hub: str, name: str, src_lang: str, tgt_lang: str):
    for row, t in enumerate(rows):
        if not isinstance(t, dict) or src_lang not in t or tgt_lang not in t:
            has = ", ".join(t) if isinstance(t, dict) else type(t).__name__
            raise DataError(
                f"{hub}/{name} row {row}: translation has no {src_lang!r} and "
                f"{tgt_lang!r} (has {has}); set data.src_lang / data.tgt_lang"
            )
        yield t[src_lang], t[tgt_lang]


def _hub_rows(split, batch: int = 10_000) -> Iterator:
    """The `translation` values of a split, a batch at a time (Arrow) or a row at a time (streamed)."""
    if isinstance(split, datasets.IterableDataset):
        for row in split:
            yield row["translation"]
        return
    for start in range(0, len(split), batch):
        yield from split[start : start + batch]["translation"]


def load_hub(cfg: DictConfig, cache_dir: Path) -> dict[str, PairSource]:
    """Splits from a hub id, a local folder `datasets.load_dataset` reads (parquet/JSON files with a
    `translation` column), or a `save_to_disk` folder; `data.files` maps our splits to its split names.
    With `data.streaming`, rows come from the hub as they are read and nothing is stored."""
    where = Path(cfg.hub)
    streaming = bool(cfg.get("streaming"))
    if (where / "dataset_dict.json").exists() or (where / "state.json").exists():
        corpus = datasets.load_from_disk(str(where))
    else:
        corpus = datasets.load_dataset(
            cfg.hub, cfg.get("hub_config"), cache_dir=str(cache_dir / "hub"), streaming=streaming
        )
    if isinstance(corpus, datasets.Dataset | datasets.IterableDataset):
        corpus = {"train": corpus}
    splits = {}
    for split, name in (cfg.files or HUB_SPLITS).items():
        if name not in corpus:
            raise DataError(
                f"data.files.{split}: {cfg.hub} has no split {name!r} (it has {', '.join(corpus)})"
            )
        columns = corpus[name].column_names
        if columns is not None and "translation" not in columns:
            raise DataError(
                f"{cfg.hub}/{name}: no 'translation' column (it has {', '.join(columns)})"
            )
        splits[split] = PairSource(
            lambda rows=corpus[name], name=name: _hub_pairs(
                _hub_rows(rows), cfg.hub, name, cfg.src_lang, cfg.tgt_lang
            )
        )
    return splits


def load_url(cfg: DictConfig, cache_dir: Path) -> dict[str, PairSource]:
    """Splits from files under the corpus's public URL (downloaded and cached by `datasets`)."""
    download = datasets.DownloadManager(
        download_config=datasets.DownloadConfig(cache_dir=str(cache_dir / "downloads"))
    )
    if cfg.url_format == "tsv":
        folder = Path(download.download_and_extract(cfg.url))
        member = folder / cfg.url_member if folder.is_dir() else folder
        columns = list(cfg.tsv_columns)
        return {"all": PairSource(lambda: iter_tsv(member, columns, cfg.src_lang, cfg.tgt_lang))}
    if cfg.url_format == "text":
        splits = {}
        for split, stem in cfg.files.items():
            src, tgt = (
                Path(download.download(f"{cfg.url}/{stem}.{lang}.gz"))
                for lang in (cfg.src_lang, cfg.tgt_lang)
            )
            splits[split] = PairSource(lambda src=src, tgt=tgt: iter_parallel(src, tgt))
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


def load_raw(cfg: DictConfig, data_dir: str | None, cache_dir: Path) -> dict[str, PairSource]:
    """The corpus's splits as read, before cleaning: {split name: its pairs, re-iterable}."""
    where = source(cfg, data_dir)
    log.info("%s: reading %s %s", cfg.name, where.kind, where.where)
    if cfg.get("streaming") and where.kind != "hub":
        raise DataError(
            f"data.streaming: only a hub corpus is streamed ({cfg.name} is read from {where.kind} "
            "files, which are streamed anyway); set data.streaming=false"
        )
    if where.kind == "generated":
        if cfg.generator != "toy_reorder":
            raise DataError(f"data.generator: unknown generator {cfg.generator!r} (toy_reorder)")
        return {
            name: PairSource(lambda pairs=pairs: pairs)
            for name, pairs in toy.generate(dict(cfg.sizes), cfg.seed).items()
        }
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


def clean(pairs: Iterable[Pair], report: FilterReport) -> Iterator[Pair]:
    """Whitespace-normalized pairs with empty sides dropped (and counted in `report`)."""
    for src, tgt in pairs:
        src, tgt = normalize(src), normalize(tgt)
        if not src or not tgt:
            report.drop("empty")
            continue
        report.kept += 1
        yield src, tgt


def keep_pair(src: str, tgt: str, max_words: int, max_ratio: float) -> str | None:
    """None for a training pair within `max_words` words a side and a words ratio of at most
    `max_ratio`; else why it is dropped."""
    n, m = len(src.split()), len(tgt.split())
    if max(n, m) > max_words:
        return f"longer than {max_words} words"
    if max(n, m) / min(n, m) > max_ratio:
        return f"length ratio above {max_ratio}"
    return None


def length_filter(
    pairs: Iterable[Pair], max_words: int, max_ratio: float, report: FilterReport
) -> Iterator[Pair]:
    """Training pairs within the length limits (keep_pair); the others counted in `report` (as
    dropped, and no longer as kept: `pairs` are clean's, counted there)."""
    for src, tgt in pairs:
        if why := keep_pair(src, tgt, max_words, max_ratio):
            report.drop(why)
            report.kept -= 1
        else:
            yield src, tgt


def source_key(src: str, seed: int) -> int:
    """A seeded 63-bit hash of a source sentence: it alone decides which split the sentence is in."""
    digest = hashlib.blake2b(src.encode(), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "little") >> 1


class SmallestKeys:
    """The `capacity` smallest distinct keys of a stream, each with how often it came, in memory
    proportional to `capacity`, not to the stream."""

    def __init__(self, capacity: int):
        self.capacity, self.counts, self.threshold = capacity, {}, None

    def add(self, key: int) -> None:
        if self.threshold is not None and key > self.threshold:
            return
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.counts) > 2 * self.capacity + 1024:
            kept = sorted(self.counts)[: self.capacity]
            self.threshold = kept[-1]
            self.counts = {k: self.counts[k] for k in kept}

    def held_out(self, sizes: Mapping[str, int]) -> dict[str, set[int]]:
        """The keys of each held-out split: the smallest keys, in order, until the split holds at
        least its size in pairs (all pairs of a source sentence go together)."""
        keys = iter(sorted(self.counts.items()))
        chosen = {}
        for name, size in sizes.items():
            chosen[name], pairs = set(), 0
            while pairs < size and (item := next(keys, None)) is not None:
                chosen[name].add(item[0])
                pairs += item[1]
        return chosen


def split_by_source(
    pairs: Iterable[Pair], sizes: Mapping[str, int], seed: int
) -> dict[str, list[Pair]]:
    """Held-out splits of about `sizes[name]` pairs each, drawn by unique source sentence.

    All translations of one source sentence land in the same split, so a test sentence is never
    seen in training; which sentences are held out depends only on their seeded hash (source_key).
    The rest is "train". (In memory: prepare does the same streaming.)
    """
    pairs = list(pairs)
    smallest = SmallestKeys(sum(sizes.values()))
    keys = [source_key(src, seed) for src, _ in pairs]
    for key in keys:
        smallest.add(key)
    held = smallest.held_out(sizes)
    where = {key: name for name, chosen in held.items() for key in chosen}
    splits: dict[str, list[Pair]] = {name: [] for name in [*sizes, "train"]}
    for key, pair in zip(keys, pairs, strict=True):
        splits[where.get(key, "train")].append(pair)
    return splits


SCHEMA = pa.schema([("src", pa.string()), ("tgt", pa.string())])


class ArrowPairs:
    """Pairs written to an Arrow stream file (the format `datasets` memory-maps), a batch at a time."""

    def __init__(self, path: Path, schema: pa.Schema = SCHEMA, batch: int = 20_000):
        self.path, self.schema, self.batch = path, schema, batch
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, schema)
        self.columns: list[list] = [[] for _ in schema.names]
        self.rows = 0

    def add(self, *values) -> None:
        for column, value in zip(self.columns, values, strict=True):
            column.append(value)
        if len(self.columns[0]) >= self.batch:
            self.flush()

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.flush()
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def flush(self) -> None:
        if self.columns[0]:
            self.writer.write_batch(pa.record_batch(self.columns, schema=self.schema))
            self.rows += len(self.columns[0])
            self.columns = [[] for _ in self.schema.names]

    def close(self) -> int:
        self.flush()
        self.writer.close()
        self.sink.close()
        return self.rows


def read_batches(path: Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow stream file, read (not memory-mapped: a pass over a corpus
    leaves it in the page cache, not in the process's memory)."""
    with pa.OSFile(str(path)) as source:
        for batch in pa.ipc.open_stream(source):
            yield batch.select(columns) if columns else batch


def _split_all(cfg: DictConfig, pairs: PairSource, out: Path) -> None:
    """Split one corpus by source sentence, streaming: pass 1 writes the cleaned pairs with their
    keys and keeps the smallest keys; pass 2 routes each batch of rows to its split."""
    if cfg.get("streaming"):
        raise DataError(
            "data.split reads the corpus twice, which data.streaming cannot: use a corpus with its "
            "own splits (data.files) or set data.streaming=false"
        )
    sizes = {k: v for k, v in cfg.split.items() if k != "seed"}
    # plain values: a config lookup per pair would cost more than the pair's own work
    seed, max_words, max_ratio = int(cfg.split.seed), cfg.filter.max_words, cfg.filter.max_ratio
    report, smallest = FilterReport(), SmallestKeys(sum(sizes.values()))
    schema = pa.schema([*SCHEMA, ("key", pa.uint64())])
    everything = ArrowPairs(out / ".all.arrow", schema)
    for src, tgt in clean(pairs, report):
        key = source_key(src, seed)
        smallest.add(key)
        everything.add(src, tgt, key)
    everything.close()
    log.info("%s: %s before splitting", cfg.name, report)
    held = {
        name: pa.array(sorted(keys), pa.uint64()) for name, keys in smallest.held_out(sizes).items()
    }
    writers = {name: ArrowPairs(out / f"{name}.arrow") for name in [*held, "train"]}
    train_report = FilterReport()
    for batch in read_batches(out / ".all.arrow"):
        rest = pa.array([True] * batch.num_rows)
        for name, keys in held.items():
            mask = pc.is_in(batch.column("key"), value_set=keys)
            writers[name].write_batch(batch.select(["src", "tgt"]).filter(mask))
            rest = pc.and_(rest, pc.invert(mask))
        train = batch.filter(rest)
        train_report.kept += train.num_rows  # clean, so counted; length_filter takes back drops
        pairs = zip(train.column("src").to_pylist(), train.column("tgt").to_pylist(), strict=True)
        for src, tgt in length_filter(pairs, max_words, max_ratio, train_report):
            writers["train"].add(src, tgt)
    (out / ".all.arrow").unlink()
    for name, writer in writers.items():
        rows = writer.close()
        log.info("%s/%s: %s", cfg.name, name, train_report if name == "train" else f"kept {rows:,}")


def prepare(
    cfg: DictConfig, data_dir: str | None, cache_dir: Path, out: Path
) -> datasets.DatasetDict:
    """The corpus of `cfg` (a conf/data entry) as cleaned, split train/dev/test datasets: one Arrow
    file per split in the folder `out`, memory-mapped."""
    raw = load_raw(cfg, data_dir, cache_dir)
    if cfg.get("split"):
        if set(raw) != {"all"}:
            raise DataError(
                f"data.split is set, so data.files must name one 'all' file, not {sorted(raw)}"
            )
        _split_all(cfg, raw["all"], out)
        names = [*(k for k in cfg.split if k != "seed"), "train"]
    else:
        if "train" not in raw:
            raise DataError(f"data.files: {cfg.name} has no 'train' split (has {sorted(raw)})")
        names = list(raw)
        for name, pairs in raw.items():
            report = FilterReport()
            stream = clean(pairs, report)
            if name == "train":
                stream = length_filter(stream, cfg.filter.max_words, cfg.filter.max_ratio, report)
            writer = ArrowPairs(out / f"{name}.arrow")
            for src, tgt in stream:
                writer.add(src, tgt)
            writer.close()
            log.info("%s/%s: %s", cfg.name, name, report)
    corpus = load_prepared(out, names)
    for name in names:
        if len(corpus[name]) == 0:
            raise DataError(f"{cfg.name}/{name}: no sentence pairs left after cleaning")
    return corpus


def load_prepared(folder: Path, names: Iterable[str]) -> datasets.DatasetDict:
    """The splits `prepare` wrote to `folder`, memory-mapped."""
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_file(str(Path(folder) / f"{name}.arrow")) for name in names}
    )
