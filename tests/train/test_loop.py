import json

import pytest
import torch
from safetensors.torch import load_file

from zotune.errors import ConfigError, NonFiniteLossError
from zotune.train.config import TrainConfig
from zotune.train.loop import batch_indices, train


def _config(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=6, lr=2e-3, eps=1e-2,
                  batch_size=8, num_train=48, num_dev=16, num_eval=24, eval_steps=3, eval_batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"]


def test_batches_cover_each_epoch_once_and_are_stateless():
    first_epoch = [i for step in range(4) for i in batch_indices(step, 20, 5, seed=1)]
    assert sorted(first_epoch) == list(range(20))
    assert batch_indices(7, 20, 5, seed=1) == batch_indices(7, 20, 5, seed=1)
    assert batch_indices(0, 20, 5, seed=1) != batch_indices(0, 20, 5, seed=2)


def test_training_lowers_the_loss_of_a_tiny_model(tiny_model_dir, tiny_data_dir, tmp_path):
    result = train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=60, eval_steps=20),
                   progress=False)
    assert result.steps == 60 and result.forward_passes == 120
    losses = _losses(tmp_path)
    assert sum(losses[-10:]) / 10 < 0.95 * sum(losses[:10]) / 10  # 60 noisy steps: the held-out gains below decide
    assert result.final["eval_loss"] < result.zero_shot["eval_loss"]
    assert result.final["eval_accuracy"] > result.zero_shot["eval_accuracy"] + 0.2


def test_run_writes_logs_plot_summary_and_checkpoints(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path), progress=False)
    for name in ("metrics.jsonl", "loss.png", "summary.json", "checkpoint/weights.safetensors",
                 "checkpoint/optimizer.pt", "best/config.json", "best/model.safetensors"):
        assert (tmp_path / name).is_file(), name
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kinds[0] == "zero_shot" and kinds[-1] == "final" and kinds.count("dev") == 2
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 6


@pytest.mark.parametrize("method,options", [("mezo", {}), ("adalezo", {}), ("dizo", {"interval": 2, "probes": 2})])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(method, options, tiny_model_dir, tiny_data_dir,
                                                              tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run = dict(method=method, method_options=options)
    train(_config(tiny_model_dir, tiny_data_dir, straight, steps=6, **run), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, split, steps=3, **run), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, split, steps=6, resume=True, **run), progress=False)
    a = load_file(str(straight / "checkpoint" / "weights.safetensors"))
    b = load_file(str(split / "checkpoint" / "weights.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(straight) == _losses(split)


# Expected losses of the first 10 steps on the tiny model (seed 0): a loop regression guard, for each Gaussian
# stream. torch-gaussian's were stored when it was `gaussian` (before seed log version 2) and gaussian's when it was
# the default (before zotune 0.3.0), so the old streams are checked unchanged.
EXPECTED_LOSSES = {
    "torch-gaussian": [0.682134, 0.681695, 0.687377, 0.689855, 0.693022, 0.696258, 0.657875, 0.668392, 0.660049,
                       0.698194],
    "gaussian": [0.67383, 0.685255, 0.689666, 0.681431, 0.677598, 0.686955, 0.695987, 0.654774, 0.665981, 0.687838],
    "gaussian16": [0.687406, 0.683107, 0.691537, 0.689597, 0.693008, 0.688443, 0.683844, 0.666697, 0.635561,
                   0.730341],
}


@pytest.mark.parametrize("noise", sorted(EXPECTED_LOSSES))
def test_loop_regression_against_stored_losses(noise, tiny_model_dir, tiny_data_dir, tmp_path):
    # float32 forward passes: the stored losses are the float32 loop's (autocast: auto would pick bf16 on a CPU
    # with bf16 instructions, and other numbers)
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=10, eval_steps=10, autocast=None, noise=noise),
          progress=False)
    assert _losses(tmp_path) == pytest.approx(EXPECTED_LOSSES[noise], rel=1e-4)


def test_repeated_non_finite_losses_stop_the_run(tiny_model_dir, tiny_data_dir, tmp_path):
    with pytest.warns(UserWarning, match="the step was skipped"):
        with pytest.raises(NonFiniteLossError, match="3 steps skipped in a row"):
            train(_config(tiny_model_dir, tiny_data_dir, tmp_path, lr=1e38, steps=20, max_nonfinite=3),
                  progress=False)


@pytest.mark.parametrize("values,pattern", [
    ({"steps": 0}, r"Invalid steps: 0"),
    ({"lr": -1}, r"Invalid lr: -1"),
    ({"eps": 0}, r"Invalid eps: 0"),
    ({"batch_size": 2.5}, r"Invalid batch_size: 2.5"),
    ({"learning_rate": 1e-3}, r"Unknown config key\(s\) \['learning_rate'\]"),
])
def test_config_errors(values, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig.from_dict(values)


def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError, match=r"Invalid steps.*Invalid lr"):
        TrainConfig(steps=0, lr=-1.0)


def test_resume_drops_log_records_written_after_the_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=3), progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as fh:  # as if killed after logging step 4, before a checkpoint
        fh.write(json.dumps({"kind": "train", "step": 4, "loss": 123.0}) + "\n")
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=6, resume=True), progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert 123.0 not in _losses(tmp_path)
    assert [r["kind"] for r in records].count("final") == 1


def test_the_log_and_summary_say_where_step_time_went(tiny_model_dir, tiny_data_dir, tmp_path):
    result = train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=3), progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if r["kind"] == "train")
    phases = ("forward", "perturb", "update", "other")
    assert all(step[f"seconds_{p}"] >= 0 for p in phases) and step["seconds_forward"] > 0
    assert sum(step[f"seconds_{p}"] for p in phases) == pytest.approx(step["seconds_total"], rel=1e-6)
    assert result.step_seconds["total"] == pytest.approx(
        sum(r["seconds_total"] for r in records if r["kind"] == "train"), rel=1e-6)
