import math

import pytest

from mt.schedule import SCHEDULES, inverse_sqrt, schedule


def test_inverse_sqrt_peaks_at_warmup_then_falls_as_one_over_sqrt():
    f = inverse_sqrt(100)
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(1.0)
    assert f(400) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedules_to_zero_warm_up_then_reach_zero_at_the_last_update(name):
    f = schedule(name, warmup=100, total=1100)
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(1.0)
    assert f(600) == pytest.approx(0.5)  # half way: both shapes are at half the peak
    assert f(1100) == pytest.approx(0.0, abs=1e-12)
    assert f(5000) == pytest.approx(0.0, abs=1e-12)  # past the end (max_steps raised on resume)
    values = [f(s) for s in range(100, 1101, 50)]
    assert values == sorted(values, reverse=True)


def test_linear_and_cosine_differ_between_warmup_and_the_end():
    lin, cos = schedule("linear", 100, 1100), schedule("cosine", 100, 1100)
    assert lin(350) == pytest.approx(0.75)
    assert cos(350) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_unknown_schedule_and_too_short_runs_are_named():
    with pytest.raises(ValueError, match="unknown schedule 'step'.*inverse_sqrt, linear, cosine"):
        schedule("step", 100, 1000)
    with pytest.raises(ValueError, match="more updates"):
        schedule("linear", 1000, 1000)
    assert set(SCHEDULES) == {"inverse_sqrt", "linear", "cosine"}


def test_training_follows_train_schedule_to_zero(tmp_path):
    from mt import checkpoint, pipeline
    from tests.conftest import toy_config

    overrides = ["train.max_steps=12", "train.warmup=4", "train.validate_every=4"]
    cfg = toy_config(tmp_path, *overrides, "train.schedule=linear")
    ckpts = pipeline.train_pipeline(cfg) / "checkpoints"
    lr = {
        step: checkpoint.load(ckpts / f"step-{step}.pt")["optimizer"]["param_groups"][0]["lr"]
        for step in (4, 8, 12)
    }
    assert lr[4] == pytest.approx(cfg.train.lr)  # the peak at the end of warm-up
    assert lr[8] == pytest.approx(cfg.train.lr / 2)
    assert lr[12] == 0.0


def test_an_unknown_train_schedule_is_refused_by_key(tmp_path):
    from mt import pipeline
    from mt.errors import MTError
    from tests.conftest import toy_config

    with pytest.raises(MTError, match="train.schedule: unknown schedule 'step'"):
        pipeline.train_pipeline(toy_config(tmp_path, "train.max_steps=2", "train.schedule=step"))
