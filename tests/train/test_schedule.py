"""Learning-rate schedules: the formula, and exact resume and replay of a cosine run."""

import math
import signal

import pytest
import torch
from safetensors.torch import load_file

from hostile import expect_one_line_error, train_args
from zotune.cli import main
from zotune.errors import ConfigError, Interrupted
from zotune.train import loop
from zotune.train.config import TrainConfig
from zotune.train.replay import load_base, replay
from zotune.train.schedule import LRSchedule, budget_progress
from zotune.train.seedlog import read_seed_log


@pytest.mark.parametrize("name,progress,expected", [
    ("constant", 0.7, 1.0),
    ("linear", 0.0, 1.0), ("linear", 0.25, 0.75), ("linear", 1.0, 0.0),
    ("cosine", 0.0, 1.0), ("cosine", 0.5, 0.5), ("cosine", 1.0, 0.0), ("cosine", 1 / 3, 0.75),
])
def test_decay_over_the_budget(name, progress, expected):
    assert LRSchedule(2.0, name)(step=10, progress=progress) == pytest.approx(2.0 * expected, abs=1e-15)


def test_floor_and_warmup():
    cosine = LRSchedule(1.0, "cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [cosine(step, 0.0) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]  # the first step moves
    assert cosine(100, 1.0) == pytest.approx(0.1) and cosine(100, 0.5) == pytest.approx(0.55)
    assert LRSchedule(1.0, "constant", warmup_steps=2)(0, 0.0) == 0.5
    assert LRSchedule(1.0).is_constant and not LRSchedule(1.0, warmup_steps=1).is_constant


def test_progress_follows_the_budget_that_ends_first():
    assert budget_progress(5, 10, forward_passes=10, max_forward_passes=None) == 0.5
    assert budget_progress(5, 1_000_000, forward_passes=30, max_forward_passes=40) == 0.75  # a pass budget
    assert budget_progress(5, 10, forward_passes=1, max_forward_passes=40) == 0.5


@pytest.mark.parametrize("settings,message", [
    ({"lr_scheduler": "cosnie"}, "Invalid lr_scheduler: 'cosnie' (one of constant, linear, cosine)"),
    ({"warmup_steps": -1}, "Invalid warmup_steps: -1"),
    ({"min_lr_ratio": 1.5}, "Invalid min_lr_ratio: 1.5 (must be a number from 0 to 1)"),
    ({"min_lr_ratio": float("nan")}, "Invalid min_lr_ratio: nan"),
])
def test_bad_schedule_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**settings)


def test_a_bad_schedule_flag_is_a_one_line_error(run, tiny_model_dir, capsys):
    assert main(train_args(tiny_model_dir, run / "data", run / "new", "--lr-scheduler", "step")) == 2
    expect_one_line_error(capsys, "Invalid lr_scheduler: 'step'")
    assert not (run / "new").exists()


def _cosine_run(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=6, lr=2e-3, eps=1e-2,
                  batch_size=8, num_train=32, num_dev=8, num_eval=8, eval_steps=3, eval_batch_size=16,
                  lr_scheduler="cosine", warmup_steps=2, min_lr_ratio=0.1)
    values.update(overrides)
    return TrainConfig(**values)


def test_cosine_run_logs_the_schedule_resumes_exactly_and_replays_bitwise(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                          monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    loop.train(_cosine_run(tiny_model_dir, tiny_data_dir, straight), progress=False)
    log = read_seed_log(straight / "seeds.jsonl")
    schedule = LRSchedule(2e-3, "cosine", warmup_steps=2, min_lr_ratio=0.1)
    assert [s.lr for s in log.steps] == [schedule(k, k / 6) for k in range(6)]
    assert len({s.lr for s in log.steps}) == 6

    # SIGTERM in the middle of step 4 (not at a checkpoint): the run saves after that step and stops.
    real_step = loop.ZOOptimizer.step

    def step_then_signal(self, closure, **kwargs):
        if self.step_count == 3:
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, closure, **kwargs)

    monkeypatch.setattr(loop.ZOOptimizer, "step", step_then_signal)
    with pytest.raises(Interrupted):
        loop.train(_cosine_run(tiny_model_dir, tiny_data_dir, stopped), progress=False)
    monkeypatch.setattr(loop.ZOOptimizer, "step", real_step)
    assert len(read_seed_log(stopped / "seeds.jsonl").steps) == 4
    loop.train(_cosine_run(tiny_model_dir, tiny_data_dir, stopped, resume=True), progress=False)
    a, b = (load_file(str(out / "checkpoint" / "weights.safetensors")) for out in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [s.lr for s in read_seed_log(stopped / "seeds.jsonl").steps] == [s.lr for s in log.steps]

    model, _ = load_base(log, str(tiny_model_dir))
    assert replay(log, model).matches_log


def test_resume_with_another_budget_under_a_decaying_schedule_is_refused(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                          capsys):
    args = [*train_args(tiny_model_dir, tiny_data_dir, tmp_path / "out"), "--lr-scheduler", "linear"]
    assert main(args) == 0
    capsys.readouterr()
    # A constant rate may run longer on resume; a decaying one would have taken other steps: refused.
    assert main([*args, "--steps", "5", "--resume"]) == 2
    expect_one_line_error(capsys, "steps 3 -> 5")


def test_warmup_is_in_the_banner(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    assert main([*train_args(tiny_model_dir, tiny_data_dir, tmp_path / "out"), "--lr-scheduler", "cosine",
                 "--warmup-steps", "1", "--min-lr-ratio", "0.1"]) == 0
    assert "lr 0.002 (cosine, 1 warm-up steps, floor 0.1 x lr)" in capsys.readouterr().out
    assert math.isclose(read_seed_log(tmp_path / "out" / "seeds.jsonl").steps[-1].lr,
                        LRSchedule(2e-3, "cosine", 1, 0.1)(2, 2 / 3))


def test_a_run_from_before_the_schedule_settings_resumes(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys):
    """Settings added to zotune later count as their defaults when a checkpoint lacks them: upgrading zotune
    alone does not block --resume (and a non-default value is still refused)."""
    real_fingerprint = loop.run_fingerprint

    def fingerprint_before_schedules(*args):
        fingerprint = real_fingerprint(*args)
        for key in ("lr_scheduler", "warmup_steps", "min_lr_ratio"):
            del fingerprint["settings"][key]
        return fingerprint

    args = train_args(tiny_model_dir, tiny_data_dir, tmp_path / "out")
    monkeypatch.setattr(loop, "run_fingerprint", fingerprint_before_schedules)
    assert main(args) == 0
    monkeypatch.setattr(loop, "run_fingerprint", real_fingerprint)
    capsys.readouterr()
    assert main([*args, "--resume", "--lr-scheduler", "cosine"]) == 2
    expect_one_line_error(capsys, "lr_scheduler 'constant' -> 'cosine'")
    assert main([*args, "--resume", "--steps", "5"]) == 0
    assert main([*args, "--resume", "--steps", "6"]) == 0  # and again, from the checkpoint the resume wrote
    assert len(read_seed_log(tmp_path / "out" / "seeds.jsonl").steps) == 6


@pytest.mark.parametrize("budget,shown", [
    (["--max-forward-passes", "6", "--steps", "1000000"], "6/6 [" ),  # passes: 3 steps of 2
    ([], "3/3 ["),  # no pass budget: steps
])
def test_the_progress_bar_counts_what_ends_the_run(run, tiny_model_dir, capsys, budget, shown):
    args = [a for a in train_args(tiny_model_dir, run / "data", run / "bar", *budget) if a != "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert shown in err and "1000000" not in err, err[-500:]
    assert ("pass/s" in err or "s/pass" in err) == bool(budget)
