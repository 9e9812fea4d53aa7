"""Corpora: reading, cleaning, filters, splits, and the errors a user's files can cause."""

import gzip

import pytest
from omegaconf import OmegaConf

from mt import data
from mt.data import DataError


def write(path, lines, gz=False):
    raw = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def corpus_config(**extra):
    cfg = {
        "name": "tiny",
        "src_lang": "en",
        "tgt_lang": "fr",
        "local": "tiny",
        "files": {"train": "train", "dev": "dev"},
        "split": None,
        "filter": {"max_words": 5, "max_ratio": 2.0},
        "hub": None,
    }
    cfg.update(extra)
    return OmegaConf.create(cfg)


def test_mismatched_line_counts_name_both_files(tmp_path):
    src = write(tmp_path / "a.en", ["one", "two", "three"])
    tgt = write(tmp_path / "a.fr", ["un", "deux"])
    with pytest.raises(DataError, match=r"a\.en has 3 lines but .*a\.fr has 2"):
        list(data.iter_parallel(src, tgt))


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.en.gz"
    path.write_bytes(gzip.compress(b"fine\nalso fine\nbroken \xff here\n"))
    with pytest.raises(DataError, match=r"bad\.en\.gz:3: invalid UTF-8"):
        list(data.iter_lines(path))


def test_prepare_cleans_filters_and_counts(tmp_path, caplog):
    folder = tmp_path / "tiny"
    folder.mkdir()
    write(
        folder / "train.en",
        ["a  cat", "", "one two three four five six", "a b c d e", "x", "ok then"],
        gz=True,
    )
    write(folder / "train.fr", ["un chat", "vide", "un deux", "a", "x", ""], gz=True)
    write(folder / "dev.en", ["a dog"])
    write(folder / "dev.fr", ["un chien"])
    caplog.set_level("INFO")
    corpus = data.prepare(corpus_config(), str(tmp_path), tmp_path / "cache", tmp_path)
    assert corpus["train"]["src"] == ["a cat", "x"]  # whitespace normalized
    assert corpus["train"]["tgt"] == ["un chat", "x"]
    assert "kept 2, dropped 2 empty, 1 length ratio above 2.0, 1 longer than 5 words" in caplog.text
    assert corpus["dev"]["src"] == ["a dog"]


def test_missing_local_corpus_says_what_to_set(tmp_path):
    with pytest.raises(DataError, match=r"data\.local: .*tiny does not exist.*train\.en\.gz"):
        data.prepare(corpus_config(), str(tmp_path), tmp_path / "cache", tmp_path)


def test_split_by_unique_source_keeps_translations_together():
    pairs = [(f"s{i % 40}", f"t{i}") for i in range(120)]  # every source has three translations
    splits = data.split_by_source(pairs, {"test": 10, "dev": 10}, seed=3)
    sources = {name: {s for s, _ in split} for name, split in splits.items()}
    assert not sources["test"] & sources["train"] and not sources["dev"] & sources["train"]
    assert not sources["test"] & sources["dev"]
    assert len(splits["test"]) == 12 and len(splits["dev"]) == 12  # whole groups of 3
    assert sum(map(len, splits.values())) == 120
    assert splits == data.split_by_source(pairs, {"test": 10, "dev": 10}, seed=3)
    assert splits != data.split_by_source(pairs, {"test": 10, "dev": 10}, seed=4)


def test_tsv_rows_with_too_few_fields_are_named(tmp_path):
    path = write(tmp_path / "pairs.tsv", ["Hi.\tSalut.\tattribution", "Go."])
    with pytest.raises(DataError, match=r"pairs\.tsv:2: expected 2 tab-separated fields"):
        list(data.iter_tsv(path, ["en", "fr"], "en", "fr"))
    ok = write(tmp_path / "ok.tsv", ["Hi.\tSalut.\tx"])
    assert list(data.iter_tsv(ok, ["en", "fr"], "fr", "en")) == [("Salut.", "Hi.")]


def test_public_source_path_zip_tsv_and_text_files(tmp_path):
    """The download code path (datasets' download manager), fed local files instead of URLs."""
    import zipfile

    archive = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fra.txt", "Go.\tVa !\tCC-BY\nHi.\tSalut !\tCC-BY\n")
        z.writestr("_about.txt", "licence")
    cfg = corpus_config(
        url=str(archive), url_format="tsv", url_member="fra.txt", tsv_columns=["en", "fr"]
    )
    splits = data.load_url(cfg, tmp_path / "cache")
    assert {k: list(v) for k, v in splits.items()} == {"all": [("Go.", "Va !"), ("Hi.", "Salut !")]}

    folder = tmp_path / "raw"
    folder.mkdir()
    for split in ("train", "dev"):
        write(folder / f"{split}.en.gz", [f"{split} one"], gz=True)
        write(folder / f"{split}.fr.gz", [f"{split} un"], gz=True)
    cfg = corpus_config(url=str(folder), url_format="text")
    splits = data.load_url(cfg, tmp_path / "cache")
    assert {k: list(v) for k, v in splits.items()} == {
        "train": [("train one", "train un")],
        "dev": [("dev one", "dev un")],
    }


def test_no_local_copy_and_no_download_says_what_to_set(tmp_path):
    cfg = corpus_config(
        url=str(tmp_path / "unreachable.zip"),
        url_format="tsv",
        url_member="fra.txt",
        tsv_columns=["en", "fr"],
        split={"dev": 1, "test": 1, "seed": 1},
        files={"all": "all"},
    )
    with pytest.raises(
        DataError,
        match=r"could not download tiny from .*unreachable\.zip .*Set MT_DATA_DIR .* tiny/",
    ):
        data.prepare(cfg, None, tmp_path / "cache", tmp_path)
