import pytest

from zotune.bench.time_to_loss import final_train_loss, first_reach


def _curve(losses):
    return [{"step": i + 1, "loss": loss, "forward_passes": 2 * (i + 1), "seconds": 3.0 * (i + 1)}
            for i, loss in enumerate(losses)]


def test_final_loss_is_the_mean_of_the_last_tenth_of_steps():
    assert final_train_loss([9.0] * 18 + [1.0, 3.0]) == pytest.approx(2.0)
    assert final_train_loss([5.0]) == 5.0 and final_train_loss([]) is None


def test_a_run_reaches_its_own_final_loss_at_its_last_step_at_the_latest():
    noisy = [1.0, 0.2, 0.9, 0.8, 0.95, 0.7, 0.85, 0.75, 0.9, 0.81, 0.79, 0.93]
    hit = first_reach(_curve(noisy), final_train_loss(noisy))
    assert hit is not None and hit["step"] <= len(noisy)


def test_the_first_window_at_or_below_the_target_is_the_answer():
    losses = [float(v) for v in range(20, 0, -1)]  # 20, 19, ..., 1; window of 2 steps
    hit = first_reach(_curve(losses), 10.5)         # mean(11, 10) = 10.5 at step 11
    assert (hit["step"], hit["forward_passes"], hit["seconds"]) == (11, 22, 33.0)


def test_one_low_step_is_not_a_reached_loss_and_a_run_that_never_gets_there_is_none():
    losses = [1.0] * 9 + [0.1] + [1.0] * 10       # window of 2 steps: one outlier does not pull the mean to 0.5
    assert first_reach(_curve(losses), 0.5) is None
    assert first_reach(_curve([None, 0.4, None, 0.4]), 0.4)["step"] == 2  # skipped steps are left out
