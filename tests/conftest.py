"""Shared fixtures: configs composed from conf/ for generated toy data, and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mt.cli import CONF_DIR

torch.set_num_threads(1)  # tiny models: one thread is faster, and tests may run beside a training

# a model small enough to train in seconds, big enough to learn the toy pair
TINY_MODEL = [
    "model=transformer",
    "model.d_model=64",
    "model.heads=4",
    "model.ff_dim=128",
    "model.encoder_layers=2",
    "model.decoder_layers=2",
    "model.dropout=0.0",
]
TINY_TRAIN = [
    "tokenizer.vocab_size=100",
    "train.batch_tokens=1200",
    "train.lr=3e-3",
    "train.warmup=100",
    "train.max_minutes=null",
    "train.log_every=50",
    "train.dev_max_sentences=100",
    "train.threads=1",
    "decode.batch_size=100",
]


def make_config(tmp: Path, *overrides: str) -> DictConfig:
    """The project's config for a run under `tmp`, with its own cache, and `overrides` applied."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"run_dir={tmp / 'run'}",
                f"cache_dir={tmp / 'cache'}",
                "data_dir=null",
                *overrides,
            ],
        )


def toy_config(tmp: Path, *overrides: str) -> DictConfig:
    return make_config(
        tmp,
        "data=toy_reorder",
        "data.sizes.train=6000",
        "data.sizes.dev=100",
        "data.sizes.test=200",
        *TINY_MODEL,
        *TINY_TRAIN,
        *overrides,
    )


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A tiny Transformer trained on the toy pair (once per session); its run directory."""
    from mt import pipeline

    tmp = tmp_path_factory.mktemp("toy")
    cfg = toy_config(tmp, "train.max_steps=300", "train.validate_every=150")
    return pipeline.train_pipeline(cfg)
