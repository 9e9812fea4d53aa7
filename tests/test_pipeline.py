"""The stage cache, the run directory, and configuration errors."""

import json
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from mt import pipeline
from mt.config import CONF_DIR
from mt.run import RunError, load_run
from tests.conftest import run_mt, toy_config


def test_unchanged_config_reruns_nothing_and_new_model_reuses_tokenizer(tmp_path, caplog):
    caplog.set_level("INFO")
    cfg = toy_config(tmp_path, "train.max_steps=4", "train.validate_every=2")
    run_dir = pipeline.train_pipeline(cfg)
    last = run_dir / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns
    caplog.clear()
    pipeline.train_pipeline(cfg)
    assert caplog.text.count("cache hit") == 3  # corpus, tokenizer, encoded ids
    assert "training already finished at step 4" in caplog.text
    assert last.stat().st_mtime_ns == stamp
    caplog.clear()
    other = toy_config(
        tmp_path, "train.max_steps=2", "model.ff_dim=32", f"run_dir={tmp_path / 'other'}"
    )
    pipeline.train_pipeline(other)
    assert "cache hit" in caplog.text and "tokenizer-" in caplog.text
    assert (tmp_path / "other" / "tokenizer" / "spm.model").read_bytes() == (
        run_dir / "tokenizer" / "spm.model"
    ).read_bytes()


def test_a_stage_built_meanwhile_by_another_process_is_used(tmp_path):
    # Two trainings on the same data start together: both build the corpus; the one that finishes
    # second must use the first one's folder, not fail on the rename.
    from mt import stages

    def build(tmp):
        (tmp / "mine.txt").write_text("second")
        other = tmp_path / "prepare-k"
        other.mkdir()
        (other / "theirs.txt").write_text("first")

    final = stages.cached(tmp_path, "prepare-k", build)
    assert final == tmp_path / "prepare-k"
    assert sorted(p.name for p in final.iterdir()) == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepare-k"]  # no temporary folder left


def test_run_directory_holds_everything(toy_run):
    saved = OmegaConf.load(toy_run / "config.yaml")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=CONF_DIR
    )
    assert saved.meta.git_commit == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert saved.model.d_model == 64
    for name in ("tokenizer/spm.model", "checkpoints/best.pt", "checkpoints/last.pt", "train.log"):
        assert (toy_run / name).exists(), name
    assert list((toy_run / "tb").glob("events.out.tfevents.*"))


def test_a_different_config_in_the_same_run_dir_is_refused(tmp_path):
    pipeline.train_pipeline(toy_config(tmp_path, "train.max_steps=1", "train.validate_every=1"))
    changed = toy_config(tmp_path, "train.max_steps=1", "train.lr=0.5")
    with pytest.raises(
        RunError, match=r"another config: train\.lr \(0\.003 -> 0\.5\).*overwrite=true"
    ):
        pipeline.train_pipeline(changed)


def test_unknown_config_key_is_one_clear_error(tmp_path):
    result = run_mt("train", "train.learning_rate=0.1", f"run_dir={tmp_path}")
    assert result.returncode != 0
    assert (
        "Key 'learning_rate' not in 'TrainConfig'" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = run_mt("train", "train.lr=fast", f"run_dir={tmp_path}")
    assert (
        result.returncode != 0
        and "Value 'fast' of type 'str' could not be converted to Float" in result.stderr
    )
    result = run_mt("train", "data=hub", "data.src_lang=de")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the config leaves data.tgt_lang unset" in result.stderr
    result = run_mt("train", "model=nope")
    assert result.returncode != 0 and "Could not find 'model/nope'" in result.stderr


def test_averaged_checkpoint_is_the_mean_of_the_kept_ones(toy_run):
    from mt import checkpoint

    averaged = checkpoint.load(toy_run / "checkpoints" / "averaged.pt")
    assert averaged["averaged"] == ["step-150.pt", "step-300.pt"]
    a, b = (
        checkpoint.load(toy_run / "checkpoints" / name)["model"] for name in averaged["averaged"]
    )
    for name, weights in averaged["model"].items():
        torch.testing.assert_close(weights, (a[name] + b[name]) / 2)
    loaded = load_run(toy_run, "averaged").model.state_dict()
    assert all(torch.equal(loaded[name], w) for name, w in averaged["model"].items())


def test_a_model_config_that_cannot_be_built_is_one_clear_error(tmp_path):
    args = [
        "experiment=demo",
        "data.sizes.train=200",
        f"cache_dir={tmp_path}",
        f"run_dir={tmp_path / 'r'}",
    ]
    result = run_mt("train", *args, "model=rnn_bahdanau", "model.attention=dot")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "mt: error: dot attention needs query and key sizes equal, got 256 and 512" in result.stderr
    )
    assert "model.decoder_hidden = 256" in result.stderr


def test_an_experiment_overrides_the_top_level_config():
    from hydra import compose, initialize_config_dir

    from mt.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=demo"])
    assert cfg.name == "demo" and cfg.run_dir == "runs/demo" and cfg.data.name == "toy_reorder"
    assert cfg.model.d_model == 64 and cfg.train.max_steps == 400


def test_budget_checkpoints_keep_what_a_shorter_run_would_end_with(tmp_path):
    from mt import checkpoint

    marks = "train.budget_checkpoints=[0.0001,1000]"
    cfg = toy_config(tmp_path, "train.max_steps=6", "train.validate_every=4", marks)
    run_dir = pipeline.train_pipeline(cfg)
    kept = run_dir / "checkpoints" / "best-0.0001min.pt"
    # the mark passes during the first update: a validation there, and best.pt as it then was
    state = checkpoint.load(kept)
    assert state["progress"]["step"] == 1 and state["progress"]["best_step"] == 1
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 4, 6]
    # each validation records the target tokens trained on so far (all processes together)
    trained = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["train_tokens"]
    assert 0 < history[0]["tokens"] < history[1]["tokens"] < history[2]["tokens"] == trained
    assert not (run_dir / "checkpoints" / "best-1000min.pt").exists()
    # the extra validation changes nothing in training
    plain = toy_config(
        tmp_path, "train.max_steps=6", "train.validate_every=4", f"run_dir={tmp_path / 'plain'}"
    )
    a = checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(pipeline.train_pipeline(plain) / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    # resumed further, the kept checkpoint stays as it was
    stamp = kept.stat().st_mtime_ns
    longer = toy_config(tmp_path, "train.max_steps=8", "train.validate_every=4", marks)
    pipeline.train_pipeline(longer)
    assert kept.stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match=r"train.budget_checkpoints: minutes of training above 0"):
        pipeline.train_pipeline(
            toy_config(tmp_path, "train.budget_checkpoints=[0]", f"run_dir={tmp_path / 'bad'}")
        )


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
)
def test_every_named_recipe_composes_checks_and_builds(experiment):
    from hydra import compose, initialize_config_dir

    from mt.models import build_model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    pipeline.check_config(cfg)  # raises RunError naming the key a recipe got wrong
    assert OmegaConf.to_container(cfg, resolve=True)["run_dir"] == f"runs/{cfg.name}"
    model = build_model(cfg.model, 100, 100, shared_vocab=True)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_a_sweep_tunes_on_the_best_dev_score(toy_run):
    from mt.run import best_dev_score

    history = [json.loads(line) for line in (toy_run / "metrics.jsonl").read_text().splitlines()]
    # metrics.jsonl rounds to two decimals
    assert best_dev_score(toy_run) == pytest.approx(max(h["dev_bleu"] for h in history), abs=0.005)
