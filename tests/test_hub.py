"""Corpora through HF `datasets`: a local dataset folder is read by the same `load_dataset` call as a
hub id, with the hub's split names mapped to mt's; a save_to_disk folder; a local TSV without
data_dir; and the README's hub example composes."""

import json

import datasets
import pytest
from hydra import compose, initialize_config_dir

from mt import data, stages
from mt.config import CONF_DIR
from mt.data import DataError
from tests.conftest import make_config

PAIRS = {
    "train": [("A black cat.", "Un chat noir."), ("A dog.", "Un chien."), ("Hi.", "Salut.")],
    "validation": [("A red bird.", "Un oiseau rouge.")],
    "test": [("The mouse.", "La souris.")],
}


def write_json_folder(folder):
    folder.mkdir()
    for split, pairs in PAIRS.items():
        rows = [{"translation": {"en": en, "fr": fr}} for en, fr in pairs]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def hub_config(tmp_path, hub, *extra):
    return make_config(
        tmp_path,
        "data=hub",
        f"data.hub={hub}",
        "data.src_lang=en",
        "data.tgt_lang=fr",
        "data.filter.max_ratio=10",
        *extra,
    )


def expected(split):
    return [{"src": en, "tgt": fr} for en, fr in PAIRS[split]]


def test_a_local_dataset_folder_loads_as_a_hub_id_does(tmp_path):
    cfg = hub_config(tmp_path, write_json_folder(tmp_path / "corpus"))
    assert cfg.name == "hub_en_fr-transformer"
    _, corpus = stages.prepare_stage(cfg)
    assert sorted(corpus) == ["dev", "test", "train"]
    assert corpus["train"].to_list() == expected("train")
    assert corpus["dev"].to_list() == expected("validation")
    assert corpus["test"].to_list() == expected("test")


def test_a_save_to_disk_folder_and_a_split_of_train_only(tmp_path):
    rows = [{"translation": {"en": f"Sentence {i}.", "fr": f"Phrase {i}."}} for i in range(50)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "saved")
    )
    cfg = hub_config(
        tmp_path,
        tmp_path / "saved",
        "data.files={all: train}",
        "data.split={dev: 5, test: 5, seed: 1}",
    )
    _, corpus = stages.prepare_stage(cfg)
    assert (len(corpus["train"]), len(corpus["dev"]), len(corpus["test"])) == (40, 5, 5)


def test_hub_errors_name_the_split_column_and_language(tmp_path):
    folder = write_json_folder(tmp_path / "corpus")
    with pytest.raises(
        DataError,
        match=r"data\.files\.dev: .*corpus has no split 'dev' \(it has train, validation, test\)",
    ):
        stages.prepare_stage(hub_config(tmp_path, folder, "data.files={train: train, dev: dev}"))
    with pytest.raises(DataError, match=r"row 0: translation has no 'en' and 'de' \(has en, fr\)"):
        stages.prepare_stage(hub_config(tmp_path, folder, "data.tgt_lang=de"))


def test_the_readme_hub_example_composes_and_names_what_is_missing(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=hub",
                "data.hub=wmt14",
                "data.hub_config=de-en",
                "data.src_lang=de",
                "data.tgt_lang=en",
            ],
        )
    assert cfg.data.hub_config == "de-en" and cfg.name == "hub_de_en-transformer"
    assert data.source(cfg.data, "/somewhere") == data.Source("hub", "wmt14")
    from mt.pipeline import check_config
    from mt.run import RunError

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        incomplete = compose("config", overrides=["data=hub", "data.src_lang=de"])
    with pytest.raises(RunError, match=r"leaves data\.tgt_lang unset"):
        check_config(incomplete)


def test_a_local_tsv_needs_no_data_dir(tmp_path, monkeypatch):
    (tmp_path / "pairs.tsv").write_text("".join(f"Sentence {i}.\tPhrase {i}.\n" for i in range(30)))
    monkeypatch.chdir(tmp_path)
    cfg = make_config(tmp_path, "data.local=pairs.tsv", "data.split={dev: 3, test: 3, seed: 1}")
    assert data.source(cfg.data, None) == data.Source("local", "pairs.tsv")
    _, corpus = stages.prepare_stage(cfg)
    assert (len(corpus["train"]), len(corpus["dev"])) == (24, 3)
    # with MT_DATA_DIR set elsewhere, a path of its own is found too
    assert data.source(cfg.data, str(tmp_path / "elsewhere")) == data.Source("local", "pairs.tsv")
