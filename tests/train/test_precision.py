"""--autocast: float32 weights, forward passes in bf16; exact resume; clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from zotune.errors import ConfigError
from zotune.train.config import TrainConfig
from zotune.train.loop import train
from zotune.train.precision import forward_precision


def _config(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=6, lr=2e-3, eps=1e-2,
                  batch_size=8, num_train=48, num_dev=16, num_eval=24, eval_steps=3, eval_batch_size=16,
                  autocast="bfloat16")
    values.update(overrides)
    return TrainConfig(**values)


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"]


def test_forward_precision_runs_matmuls_in_bf16_over_float32_weights():
    layer = torch.nn.Linear(4, 4)
    with forward_precision(layer, "bfloat16"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with forward_precision(layer, None):
        assert layer(torch.ones(2, 4)).dtype == torch.float32
    assert layer.weight.dtype == torch.float32


@pytest.mark.parametrize("values,pattern", [
    ({"autocast": "int8"}, r"Invalid autocast: 'int8'"),
    ({"autocast": 16}, r"Invalid autocast: 16"),
    ({"autocast": "bfloat16", "dtype": "bfloat16"}, r"--autocast bfloat16 runs float32 weights"),
])
def test_bad_autocast_settings_are_config_errors(values, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig(**values)


def test_none_turns_autocast_off():
    assert TrainConfig(autocast="none").autocast is None


def test_autocast_run_keeps_float32_weights_and_computes_in_bf16(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "bf16"), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "fp32", autocast=None), progress=False)
    weights = load_file(str(tmp_path / "bf16" / "checkpoint" / "weights.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())
    bf16, fp32 = _losses(tmp_path / "bf16"), _losses(tmp_path / "fp32")
    assert bf16 != fp32  # the forward passes did run in bf16
    assert bf16 == pytest.approx(fp32, abs=0.05)  # and computed the same losses to bf16's precision
    summary = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    assert summary["config"]["autocast"] == "bfloat16"


def test_autocast_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_model_dir, tiny_data_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_config(tiny_model_dir, tiny_data_dir, straight), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, split, steps=3), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, split, resume=True), progress=False)
    a = load_file(str(straight / "checkpoint" / "weights.safetensors"))
    b = load_file(str(split / "checkpoint" / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(straight) == _losses(split)


def test_a_checkpoint_is_not_resumed_under_another_precision(tiny_model_dir, tiny_data_dir, tmp_path):
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, steps=3), progress=False)
    with pytest.raises(ConfigError, match="autocast"):
        train(_config(tiny_model_dir, tiny_data_dir, tmp_path, autocast=None, resume=True), progress=False)


def test_the_cli_takes_autocast_says_it_in_the_banner_and_refuses_bad_values(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                            capsys):
    from hostile import train_args
    from zotune.cli import main

    assert main(train_args(tiny_model_dir, tiny_data_dir, tmp_path / "out", "--autocast", "bfloat16")) == 0
    assert "float32 weights with bfloat16 forward passes (autocast)" in capsys.readouterr().out
    assert main(train_args(tiny_model_dir, tiny_data_dir, tmp_path / "bad", "--autocast", "int4")) == 2
    assert "zotune: error: Invalid autocast: 'int4'" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--num-train", "32",
                 "--num-dev", "8", "--num-eval", "8", "--autocast", "bfloat16"]) == 0
    assert "rotten_tomatoes eval (8 examples)" in capsys.readouterr().out
    assert main(["eval", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--dtype", "bfloat16",
                 "--autocast", "bfloat16"]) == 2
    assert "--autocast bfloat16 runs float32 weights" in capsys.readouterr().err
