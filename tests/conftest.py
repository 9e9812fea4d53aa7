"""Shared fixtures: configs composed from conf/ for generated toy data, and tiny trained runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mt.config import CONF_DIR

torch.set_num_threads(1)  # tiny models: one thread is as fast, and tests may run beside a training
# tests never use the network: `datasets` reads local folders only
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the demo recipe (conf/experiment/demo.yaml) on a smaller sample of the toy pair
TOY = [
    "experiment=demo",
    "data.sizes.train=6000",
    "data.sizes.dev=100",
    "data.sizes.test=200",
    "train.dev_max_sentences=100",
    "train.threads=1",
    "data.probes=[]",  # no heatmaps at each validation (a second apiece), but in toy_run
]
TINY_RNN = [
    "model=rnn_bahdanau",
    "model.embedding_dim=64",
    "model.encoder_hidden=64",
    "model.decoder_hidden=64",
    "model.dropout=0.0",
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
    """The demo's tiny Transformer on a 6,000-pair sample of the toy pair."""
    return make_config(tmp, *TOY, *overrides)


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A tiny Transformer trained on the toy pair (once per session); its run directory."""
    from mt import pipeline

    cfg = toy_config(
        tmp_path_factory.mktemp("toy"),
        "train.max_steps=300",
        "train.validate_every=150",
        "data.probes=['The black cat ate the mouse.']",
    )
    return pipeline.train_pipeline(cfg)


@pytest.fixture(scope="session")
def toy_rnn_run(tmp_path_factory) -> Path:
    """A tiny Bahdanau RNN trained on the toy pair (once per session); its run directory."""
    from mt import pipeline

    tmp = tmp_path_factory.mktemp("toy_rnn")
    cfg = toy_config(tmp, *TINY_RNN, "train.max_steps=400", "train.validate_every=200")
    return pipeline.train_pipeline(cfg)


def run_mt(*args: str, stdin: str | bytes | None = None, timeout: float = 300, **kwargs):
    """`mt ARGS` in a subprocess, run to the end: its CompletedProcess (text, unless stdin is bytes)."""
    return subprocess.run(
        [sys.executable, "-m", "mt", *args],
        input=stdin,
        capture_output=True,
        text=not isinstance(stdin, bytes),
        timeout=timeout,
        **kwargs,
    )


def start_mt(*args: str, **kwargs) -> subprocess.Popen:
    """`mt ARGS` started in a subprocess (stdout and stderr piped, text), for tests that interact."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kwargs}
    # Ctrl-C as at a terminal, also when the suite itself runs as a background job (which starts
    # its children with SIGINT ignored)
    options.setdefault("preexec_fn", lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.Popen([sys.executable, "-m", "mt", *args], **options)


def wait_until(condition, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Poll `condition()` until it holds; fail if `proc` ends first or `timeout` seconds pass."""
    start = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended first: {proc.communicate()}")
        assert time.monotonic() - start < timeout, "timed out waiting"
        time.sleep(0.1)
