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
    with pytest.raises(
        ValueError, match="unknown schedule 'step'.*inverse_sqrt, linear, cosine, plateau"
    ):
        schedule("step", 100, 1000)
    with pytest.raises(ValueError, match="more updates"):
        schedule("linear", 1000, 1000)
    assert set(SCHEDULES) == {"inverse_sqrt", "linear", "cosine", "plateau"}


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


def expected_plateau_scales(history: list[dict], patience: int, factor: float) -> list[float]:
    """The rule replayed on a run's dev BLEU: the rate's scale after each validation."""
    best, bad, scale, scales = -math.inf, 0, 1.0, []
    for record in history:
        if record["dev_bleu"] > best:
            best, bad = record["dev_bleu"], 0
        else:
            bad += 1
        if bad >= patience:
            scale, bad = scale * factor, 0
        scales.append(scale)
    return scales


def test_plateau_decreases_the_rate_after_validations_without_a_better_score_and_resumes(tmp_path):
    from mt import checkpoint, pipeline
    from tests.conftest import toy_config

    # a rate so small that dev BLEU cannot improve after the first validation: decreases follow
    plateau = [
        "train.schedule=plateau",
        "train.plateau_patience=2",
        "train.plateau_factor=0.5",
        "train.warmup=1",
        "train.lr=1e-6",
        "train.validate_every=2",
        "train.keep_checkpoints=10",
        "train.patience=100",
    ]
    whole = pipeline.train_pipeline(toy_config(tmp_path / "whole", *plateau, "train.max_steps=12"))
    states = {s: checkpoint.load(whole / "checkpoints" / f"step-{s}.pt") for s in range(2, 13, 2)}
    history = states[12]["progress"]["history"]
    scales = expected_plateau_scales(history, patience=2, factor=0.5)
    assert scales[-1] <= 0.25  # at least two decreases in six validations
    for scale, step in zip(scales, range(2, 13, 2), strict=True):
        assert states[step]["progress"]["lr_scale"] == scale
        # the rate of the next update already carries the decrease: the checkpoint resumes with it
        assert states[step]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-6 * scale)
    assert "learning rate x 0.5, now 5.00e-07" in (whole / "train.log").read_text()

    # stopped at update 6 and resumed: the same decreases, the same rates
    parted = tmp_path / "parted"
    pipeline.train_pipeline(toy_config(parted, *plateau, "train.max_steps=6"))
    run = pipeline.train_pipeline(toy_config(parted, *plateau, "train.max_steps=12"))
    resumed = checkpoint.load(run / "checkpoints" / "last.pt")
    assert resumed["progress"]["lr_scale"] == states[12]["progress"]["lr_scale"]
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        states[12]["optimizer"]["param_groups"][0]["lr"]
    )


def test_plateau_settings_out_of_range_are_refused_by_key(tmp_path):
    from mt import pipeline
    from mt.errors import MTError
    from tests.conftest import toy_config

    for i, bad in enumerate(("train.plateau_factor=1.0", "train.plateau_patience=0")):
        cfg = toy_config(tmp_path / str(i), "train.max_steps=2", "train.schedule=plateau", bad)
        with pytest.raises(MTError, match="train.plateau_patience must be 1 or more"):
            pipeline.train_pipeline(cfg)
