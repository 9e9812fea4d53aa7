"""Nothing lost: resume after a kill, refuse untrustworthy files, stop cleanly on signals and NaNs,
and give the same result for the same seed."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mt import checkpoint, loss, pipeline, train
from mt.run import RunError, load_run
from tests.conftest import TOY, make_config, run_mt, start_mt, toy_config, wait_until

STEPS = [
    "train.validate_every=5",
    "model.dropout=0.1",
]  # dropout: the RNG state must be restored too


def weights(run_dir, name="last.pt"):
    return checkpoint.load(run_dir / "checkpoints" / name)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ten_plus_ten_steps_equal_twenty_bitwise(tmp_path):
    straight = pipeline.train_pipeline(toy_config(tmp_path / "a", *STEPS, "train.max_steps=20"))
    resumed_cfg = toy_config(tmp_path / "b", *STEPS, "train.max_steps=10")
    pipeline.train_pipeline(resumed_cfg)
    resumed_cfg.train.max_steps = 20  # a limit raised: the finished run goes on
    resumed = pipeline.train_pipeline(resumed_cfg)
    assert checkpoint.load(resumed / "checkpoints" / "last.pt")["progress"]["step"] == 20
    assert_same_weights(weights(straight), weights(resumed))
    state_a = checkpoint.load(straight / "checkpoints" / "last.pt")
    state_b = checkpoint.load(resumed / "checkpoints" / "last.pt")
    timeless = [
        [
            {k: v for k, v in h.items() if not k.startswith("minutes")}
            for h in s["progress"]["history"]
        ]
        for s in (state_a, state_b)
    ]
    assert timeless[0] == timeless[1] and len(timeless[0]) == 4
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == state_b["progress"]["history"]


def test_weights_average_is_what_is_kept_and_resumes_exactly(tmp_path):
    """train.ema_decay: checkpoints keep the moving average as the weights to decode with and the
    trained weights beside them; the average does not change training, and a resumed run goes on
    with both."""
    decay = min(0.75, 2 / 11)  # the second update's: the decay warms up as (1 + n) / (10 + n)
    ema = ("train.ema_decay=0.75", "train.validate_every=1")
    plain = pipeline.train_pipeline(toy_config(tmp_path / "plain", *STEPS, "train.max_steps=2"))
    cfg = toy_config(tmp_path / "ema", *STEPS, *ema, "train.max_steps=1")
    run = pipeline.train_pipeline(cfg)
    first = checkpoint.load(run / "checkpoints" / "step-1.pt")
    assert first["ema_updates"] == 1
    assert_same_weights(first["model"], first["training_model"])  # the first update: a copy
    cfg.train.max_steps = 2
    pipeline.train_pipeline(cfg)  # resumed
    second = checkpoint.load(run / "checkpoints" / "last.pt")
    assert second["ema_updates"] == 2
    # the same training as without the average
    assert_same_weights(second["training_model"], weights(plain))
    for key, trained in second["training_model"].items():
        expected = decay * first["training_model"][key] + (1 - decay) * trained
        torch.testing.assert_close(second["model"][key], expected)
        if trained.is_floating_point() and key.endswith("weight"):
            assert not torch.equal(second["model"][key], trained), key
    # what is decoded and scored is the average
    assert_same_weights(load_run(run, which="last").model.state_dict(), second["model"])
    with pytest.raises(train.TrainingError, match=r"train.ema_decay: .* not 1.5"):
        pipeline.train_pipeline(toy_config(tmp_path / "bad", "train.ema_decay=1.5"))


def test_same_seed_same_checkpoint_and_bleu(tmp_path):
    runs = [
        pipeline.train_pipeline(toy_config(tmp_path / n, *STEPS, "train.max_steps=10"))
        for n in "ab"
    ]
    assert_same_weights(weights(runs[0]), weights(runs[1]))
    bleus = [checkpoint.load(r / "checkpoints" / "last.pt")["progress"]["best_score"] for r in runs]
    assert bleus[0] == bleus[1]
    other = pipeline.train_pipeline(
        toy_config(tmp_path / "c", *STEPS, "train.max_steps=10", "seed=7")
    )
    assert not torch.equal(weights(runs[0])["output.weight"], weights(other)["output.weight"])


def test_truncated_checkpoint_is_named_and_resume_falls_back(tmp_path, caplog):
    cfg = toy_config(tmp_path, *STEPS, "train.max_steps=10")
    run_dir = pipeline.train_pipeline(cfg)
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(
        checkpoint.CheckpointError, match=f"{last}: truncated or corrupt checkpoint"
    ):
        checkpoint.load(last)
    caplog.set_level("INFO")
    cfg.train.max_steps = 12
    pipeline.train_pipeline(cfg)
    assert "truncated or corrupt checkpoint" in caplog.text
    assert f"resumed from {run_dir / 'checkpoints' / 'step-10.pt'} at step 10" in caplog.text
    assert checkpoint.load(last)["progress"]["step"] == 12


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": Exploit()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="refused to load"):
        checkpoint.load(path)
    assert not Exploit.marker.exists()


def test_non_finite_losses_are_skipped_then_stop_training(tmp_path, monkeypatch, caplog):
    real = loss.label_smoothed_loss
    calls = {"n": 0}

    def sometimes_nan(logits, target, smoothing):
        calls["n"] += 1
        loss = real(logits, target, smoothing)
        return loss * float("nan") if calls["n"] == 3 or calls["n"] > 12 else loss

    monkeypatch.setattr(train, "label_smoothed_loss", sometimes_nan)
    caplog.set_level("INFO")
    cfg = toy_config(
        tmp_path, "train.validate_every=1000", "train.max_steps=100", "train.max_nonfinite=4"
    )
    with pytest.raises(train.TrainingError, match="4 non-finite losses in a row"):
        pipeline.train_pipeline(cfg)
    assert (
        caplog.text.count("non-finite loss at step") == 5
    )  # one skipped alone, then four in a row
    # the last good state was kept: 10 good updates (the 3rd call was skipped, dev loss calls none)
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 11


def test_checkpoint_of_another_shape_names_the_tensors(toy_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(toy_run, copy)
    config = (copy / "config.yaml").read_text().replace("ff_dim: 128", "ff_dim: 96")
    (copy / "config.yaml").write_text(config)
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"does not match the model config: .*ff\.0\.weight: checkpoint \(128, 64\) vs model \(96, 64\)",
    ):
        load_run(copy)


def train_args(tmp_path, *extra):
    return [
        "train",
        *TOY,
        f"run_dir={tmp_path / 'run'}",
        f"cache_dir={tmp_path / 'cache'}",
        "data_dir=null",
        "train.validate_every=20",
        *extra,
    ]


def newest_step(run_dir) -> int:
    """The step of the newest complete checkpoint, whichever file holds it."""
    steps = [checkpoint.load(p)["progress"]["step"] for p in (run_dir / "checkpoints").glob("*.pt")]
    return max(steps)


def test_sigkill_then_rerun_resumes_from_the_newest_checkpoint(tmp_path):
    proc = start_mt(*train_args(tmp_path, "train.max_steps=100000"))
    step_40 = tmp_path / "run" / "checkpoints" / "step-40.pt"
    wait_until(step_40.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = newest_step(tmp_path / "run")
    assert saved >= 40
    # what a save killed half-way leaves: deleted on resume; another writer's temporary file is not
    folder = tmp_path / "run" / "checkpoints"
    partial = [folder / ".last.pt.k2j4h1.tmp", folder / f".step-{saved}.pt.9xq0w3.tmp"]
    other = folder / ".averaged.pt.p8s7d6.tmp"
    for path in [*partial, other]:
        path.write_bytes(b"torn")
    rerun = run_mt(*train_args(tmp_path, f"train.max_steps={saved + 20}"))
    assert rerun.returncode == 0, rerun.stderr
    assert f" at step {saved} (epoch" in rerun.stderr and "resumed from" in rerun.stderr
    assert not any(p.exists() for p in partial) and other.exists()
    assert "deleted .last.pt.k2j4h1.tmp, left by a save that did not finish" in rerun.stderr
    assert (
        checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"]
        == saved + 20
    )


def test_resume_takes_the_newest_checkpoint_whichever_file_holds_it(tmp_path):
    folder = tmp_path / "checkpoints"
    for name, step in (("last.pt", 20), ("step-20.pt", 20), ("step-40.pt", 40)):
        checkpoint.save(folder / name, {"progress": {"step": step}})
    assert checkpoint.newest(folder)[0] == folder / "step-40.pt"
    checkpoint.save(folder / "last.pt", {"progress": {"step": 45}})  # saved on the time interval
    assert checkpoint.newest(folder)[0] == folder / "last.pt"
    (folder / "last.pt").write_bytes(b"torn")
    assert checkpoint.newest(folder)[0] == folder / "step-40.pt"


def test_last_pt_is_saved_on_a_time_interval_between_validations(tmp_path):
    # no validation before step 100000: only the interval can have written last.pt
    args = [
        "train.max_steps=100000",
        "train.validate_every=100000",
        "train.save_every_minutes=0.002",
    ]
    proc = start_mt(*train_args(tmp_path, *args))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    wait_until(lambda: last.exists() and checkpoint.load(last)["progress"]["step"] >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(last.parent.glob("step-*.pt"))
    rerun = run_mt(*train_args(tmp_path, *args[1:], "train.max_steps=1"))
    assert rerun.returncode == 0 and "training already finished" in rerun.stderr, rerun.stderr


def test_a_second_training_of_the_same_run_is_refused_at_once(tmp_path):
    first = start_mt(*train_args(tmp_path, "train.max_steps=100000"))
    lock = tmp_path / "run" / ".lock"
    wait_until(lambda: lock.exists() and f"process {first.pid}" in lock.read_text(), first)
    second = run_mt(*train_args(tmp_path, "train.max_steps=100000"), timeout=120)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"is being trained by process {first.pid} (since " in second.stderr
    first.send_signal(signal.SIGKILL)  # the kernel releases the lock of a killed process
    first.wait()
    third = run_mt(*train_args(tmp_path, "train.max_steps=1"))
    assert third.returncode == 0, third.stderr


def test_a_run_killed_before_its_first_last_pt_resumes_and_names_its_newest_state_last(tmp_path):
    # a kill between step-N.pt and the last.pt after it: the newest state is step-N.pt alone
    first = run_mt(*train_args(tmp_path, "train.max_steps=20", "train.save_every_minutes=0"))
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "run" / "checkpoints"
    saved = checkpoint.load(folder / "step-20.pt")
    (folder / "last.pt").unlink()
    rerun = run_mt(*train_args(tmp_path, "train.max_steps=1"))
    assert rerun.returncode == 0, rerun.stderr
    assert "step-20.pt at step 20" in rerun.stderr and "training already finished" in rerun.stderr
    last = checkpoint.load(folder / "last.pt")
    assert last["progress"] == saved["progress"]
    assert all(torch.equal(last["model"][k], v) for k, v in saved["model"].items())


def test_sigterm_saves_and_exits_without_traceback(tmp_path):
    proc = start_mt(*train_args(tmp_path, "train.max_steps=100000"))
    wait_until((tmp_path / "run" / "checkpoints" / "step-20.pt").exists, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    step = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"]
    assert f"mt: training stopped by SIGTERM at step {step}" in stderr


# the final save with a SIGTERM arriving as it starts (under torchrun, the signal that stopped the
# loop is passed on to the processes again moments later)
SIGNAL_AT_FINISH = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from mt import pipeline, train
from tests.conftest import toy_config

finish = train.Trainer._finish

def signalled_finish(self, *args):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    return finish(self, *args)

train.Trainer._finish = signalled_finish
pipeline.train_pipeline(toy_config(Path(sys.argv[2]), "train.max_steps=3"))
"""


def test_a_signal_while_the_last_checkpoint_is_written_does_not_end_the_process(tmp_path):
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_FINISH, str(root), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    ckpts = tmp_path / "run" / "checkpoints"
    assert checkpoint.load(ckpts / "last.pt")["progress"]["step"] == 3
    assert not list(ckpts.glob(".*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_translate_stops_cleanly_on_a_signal(toy_run, sig):
    proc = start_mt("translate", "--run", str(toy_run), stdin=subprocess.PIPE)
    proc.stdin.write("The black cat ate the mouse.\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "Le chat noir a mangé la souris.\n"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig and "Traceback" not in stderr


def test_translate_input_errors(toy_run, tmp_path):
    result = run_mt("translate", "--run", str(toy_run), "  ")
    assert (
        result.returncode == 1
        and result.stderr == "mt: error: an empty sentence was given to translate\n"
    )
    result = run_mt("translate", "--run", str(toy_run), "The 猫 ate the mouse.")
    assert (
        result.returncode == 0
        and "input 1: not in the vocabulary, read as <unk>: 猫" in result.stderr
    )
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("{}")
    result = run_mt("translate", "--run", str(tmp_path / "half"), "hello")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"mt: error: {tmp_path / 'half'} is not a complete run: it has no tokenizer (was it trained with `mt train`?)\n"
    )


def test_overwrite_true_starts_afresh(tmp_path):
    run_dir = pipeline.train_pipeline(
        toy_config(tmp_path, "train.max_steps=2", "train.validate_every=2")
    )
    (run_dir / "mine.txt").write_text("kept until overwrite=true")
    same = toy_config(tmp_path, "train.max_steps=2", "train.validate_every=2", "overwrite=true")
    pipeline.train_pipeline(same)  # the same config: without overwrite=true it would resume
    assert not (run_dir / "mine.txt").exists()
    cfg = make_config(
        tmp_path,
        *TOY,
        "train.max_steps=2",
        "train.validate_every=2",
        "train.lr=0.01",
        "overwrite=true",
    )
    run_dir = pipeline.train_pipeline(cfg)
    from omegaconf import OmegaConf

    assert OmegaConf.load(run_dir / "config.yaml").train.lr == 0.01


def test_input_longer_than_the_model_is_cut_with_a_warning(toy_run, caplog):
    run = load_run(toy_run, device="cpu")
    run.model.max_positions = 12
    hyps = list(run.translate(["The black cat ate the mouse. " * 5, "A dog saw a cat."]))
    assert "input 1: longer than the model's 12 positions" in caplog.text
    assert all(len(h[0].tokens) <= 12 for h in hyps)
    assert run.tokenizer.decode_tgt(hyps[1][0].tokens) == "Un chien a vu un chat."


def test_a_run_whose_tokenizer_differs_from_the_cache_is_refused(tmp_path):
    cfg = toy_config(tmp_path, "train.max_steps=2", "train.validate_every=2")
    run_dir = pipeline.train_pipeline(cfg)
    spm = run_dir / "tokenizer" / "spm.model"
    spm.write_bytes(spm.read_bytes() + b"changed")
    cfg.train.max_steps = 4
    with pytest.raises(
        RunError, match=r"spm\.model differs from the tokenizer this config makes now"
    ):
        pipeline.train_pipeline(cfg)
