"""Corpora larger than memory: the streamed stages give what the in-memory code gives — the same
splits, the same token ids (whatever the number of encoding processes), the same batches — and
keep only what they must (the held-out keys, the rows in use)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mt import data, stages
from mt.batching import EncodedCorpus, IntFile, epoch_batches
from mt.data import DataError
from mt.tokenizer import Tokenizer
from tests.conftest import make_config


def write_corpus(folder, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all.en").write_text("".join(s + "\n" for s, _ in pairs))
    (folder / "all.fr").write_text("".join(t + "\n" for _, t in pairs))
    return folder


def corpus_pairs(n=3000, seed=0):
    """Pairs with repeated sources (several translations of one sentence), some too long."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    pairs = []
    for _ in range(n):
        src = " ".join(rng.choices(words, k=rng.randint(2, 12)))
        for k in range(rng.choice([1, 1, 2, 3])):
            pairs.append((src, f"{src.upper()} {k}"))
    pairs.append(("a " * 100, "b " * 100))  # over max_words: dropped from train
    return pairs


def synthetic_config(tmp_path, folder, *extra):
    return make_config(
        tmp_path,
        "data=synthetic",
        f"data.local={folder}",
        "data.split.dev=100",
        "data.split.test=150",
        "tokenizer.vocab_size=400",
        *extra,
    )


def test_smallest_keys_in_bounded_memory():
    rng = random.Random(1)
    keys = [rng.randrange(10**6) for _ in range(20_000)] * 2
    smallest = data.SmallestKeys(50)
    for key in keys:
        smallest.add(key)
    assert len(smallest.counts) <= 2 * 50 + 1024
    expected = sorted(set(keys))[:50]
    assert sorted(smallest.counts)[:50] == expected
    assert all(smallest.counts[k] == keys.count(k) for k in expected)


def test_streamed_split_equals_the_in_memory_one(tmp_path):
    pairs = corpus_pairs()
    cfg = synthetic_config(tmp_path, write_corpus(tmp_path / "c", pairs))
    _, corpus = stages.prepare_stage(cfg)
    clean = [(data.normalize(s), data.normalize(t)) for s, t in pairs]
    expected = data.split_by_source(clean, {"dev": 100, "test": 150}, seed=cfg.data.split.seed)
    expected["train"] = [p for p in expected["train"] if not data.keep_pair(*p, 80, 3.0)]
    for name in ("dev", "test", "train"):
        assert list(zip(corpus[name]["src"], corpus[name]["tgt"], strict=True)) == expected[name]
    sources = {name: set(corpus[name]["src"]) for name in corpus}
    assert not sources["dev"] & sources["train"] and not sources["test"] & sources["train"]
    assert 100 <= len(corpus["dev"]) < 104 and 150 <= len(corpus["test"]) < 154
    assert len(corpus["train"]) == len(clean) - len(corpus["dev"]) - len(corpus["test"]) - 1


def test_ids_and_batches_do_not_depend_on_how_they_were_encoded(tmp_path, monkeypatch):
    cfg = synthetic_config(tmp_path, write_corpus(tmp_path / "c", corpus_pairs()))
    monkeypatch.setattr(stages, "ENCODE_CHUNK", 700)  # several chunks, two worker processes
    built = stages.build_stages(cfg)
    mapped = built.encoded["train"]
    assert isinstance(mapped.src.values, IntFile)
    tok = Tokenizer.load(built.tokenizer_folder)
    train = built.corpus["train"]
    in_memory = EncodedCorpus.from_ids(tok.encode_src(train["src"]), tok.encode_tgt(train["tgt"]))
    assert len(mapped) == len(in_memory) == len(train)
    for i in range(len(train)):
        assert mapped.src[i].tolist() == in_memory.src[i].tolist()
        assert mapped.tgt[i].tolist() == in_memory.tgt[i].tolist()
    for epoch in (0, 1):
        a = epoch_batches(mapped, 300, seed=5, epoch=epoch)
        b = epoch_batches(in_memory, 300, seed=5, epoch=epoch)
        assert [x.tolist() for x in a] == [x.tolist() for x in b]
    # one process, in order, gives the same files
    stages.encode_split(
        built.corpus["train"].cache_files[0]["filename"],
        len(train),
        built.tokenizer_folder,
        tmp_path,
        "again",
        workers=1,
    )
    again = EncodedCorpus.load(tmp_path, "again")
    assert np.array_equal(again.src.values, mapped.src.values)
    assert np.array_equal(again.tgt.offsets, mapped.tgt.offsets)


def write_json_folder(folder, n=40):
    folder.mkdir()
    for split, size in (("train", n), ("validation", 3)):
        rows = [
            {"translation": {"en": f"Sentence {split} {i}.", "fr": f"Phrase {split} {i}."}}
            for i in range(size)
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_hub_corpus_can_be_streamed(tmp_path):
    folder = write_json_folder(tmp_path / "hub")
    common = [
        "data=hub",
        f"data.hub={folder}",
        "data.src_lang=en",
        "data.tgt_lang=fr",
        "data.files={train: train, dev: validation}",
        "data.test_splits=[dev]",
    ]
    _, streamed = stages.prepare_stage(make_config(tmp_path / "a", *common, "data.streaming=true"))
    _, stored = stages.prepare_stage(make_config(tmp_path / "b", *common))
    for split in ("train", "dev"):
        assert streamed[split].to_list() == stored[split].to_list()
    assert len(streamed["train"]) == 40


def test_what_streaming_cannot_do_is_one_clear_error(tmp_path):
    folder = write_corpus(tmp_path / "c", corpus_pairs(50))
    with pytest.raises(DataError, match="only a hub corpus is streamed"):
        stages.prepare_stage(synthetic_config(tmp_path, folder, "data.streaming=true"))
    hub = write_json_folder(tmp_path / "hub")
    cfg = make_config(
        tmp_path,
        "data=hub",
        f"data.hub={hub}",
        "data.src_lang=en",
        "data.tgt_lang=fr",
        "data.files={all: train}",
        "data.split={dev: 2, test: 2, seed: 1}",
        "data.streaming=true",
    )
    with pytest.raises(DataError, match="data.split reads the corpus twice"):
        stages.prepare_stage(cfg)


def test_a_mismatch_found_while_streaming_keeps_nothing(tmp_path):
    folder = write_corpus(tmp_path / "c", corpus_pairs(50))
    (folder / "all.fr").write_text((folder / "all.fr").read_text() + "one more\n")
    cfg = synthetic_config(tmp_path, folder)
    with pytest.raises(DataError, match=r"all\.en has \d+ lines but .*all\.fr has \d+"):
        stages.prepare_stage(cfg)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("prepare-")]


def test_a_run_is_held_to_the_corpus_it_trained_on(tmp_path):
    """Held-out splits are only held out from the corpus a run trained on: a changed corpus (or a
    version of mt that splits differently) is refused when resuming and when scoring."""
    from mt import pipeline
    from mt.evaluate import evaluate_run
    from mt.run import RunError

    folder = write_corpus(tmp_path / "c", corpus_pairs(400))
    args = ["model=transformer_toy", "train.max_steps=2", "train.validate_every=2"]
    cfg = synthetic_config(tmp_path, folder, *args, "train.dev_max_sentences=5")
    run = pipeline.train_pipeline(cfg)
    assert json.loads((run / "corpus.json").read_text())["prepare"].startswith("prepare-")
    with (folder / "all.en").open("a") as f, (folder / "all.fr").open("a") as g:
        f.write("a new sentence\n")
        g.write("une phrase nouvelle\n")
    with pytest.raises(RunError, match="resuming it could mix training and held-out"):
        pipeline.train_pipeline(cfg)
    with pytest.raises(RunError, match="scoring its test splits"):
        evaluate_run(run, data_dir=str(tmp_path))
    assert evaluate_run(run, ["dev"], beam_size=1, other_corpus=True)["dev"]["sentences"] > 0
