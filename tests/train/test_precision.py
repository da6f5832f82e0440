"""--autocast: float32 weights, forward passes in bf16; exact resume; clear errors."""

import json
import warnings

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


# --- autocast: auto, the precision chosen by hardware -------------------------------------------------------


@pytest.fixture()
def cpu_flags(monkeypatch):
    """Pretend this CPU has the given bf16 flags (and no GPU)."""
    import zotune.train.machine as machine

    def set_flags(flags):
        monkeypatch.setattr(machine, "cpu_info", lambda: {"cpu_model": "test CPU", "cpu_bf16": list(flags)})
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return set_flags


@pytest.mark.parametrize("flags, dtype, expected", [
    (["amx_bf16", "avx512_bf16"], "float32", "bfloat16"),
    (["avx512_bf16"], "float32", "bfloat16"),
    ([], "float32", None),
    (["avx512_bf16"], "bfloat16", None),  # bf16 weights take no autocast
])
def test_auto_picks_bf16_autocast_only_where_the_hardware_multiplies_bf16(cpu_flags, flags, dtype, expected):
    from zotune.train.precision import fastest_autocast

    cpu_flags(flags)
    autocast, why = fastest_autocast(dtype)
    assert autocast == expected and why
    assert ("bf16 instructions (" + ", ".join(flags) + ")" in why) if expected else True


def test_a_run_says_which_precision_it_chose_and_why(cpu_flags, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    from zotune.cli import main

    cpu_flags(["avx512_bf16"])
    args = ["train", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
            str(tmp_path / "auto"), "--steps", "2", "--batch-size", "8", "--num-train", "32", "--num-dev", "8",
            "--num-eval", "8", "--eval-steps", "2", "--no-progress"]
    assert main(args) == 0
    banner = capsys.readouterr().out.splitlines()[0]
    assert "bfloat16 forward passes (autocast: this CPU has bf16 instructions (avx512_bf16))" in banner
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert summary["config"]["autocast"] == "bfloat16"
    assert summary["precision"] == {"autocast": "bfloat16", "weights": "float32",
                                    "why": "this CPU has bf16 instructions (avx512_bf16)"}
    assert summary["machine"]["cpu_bf16"] == ["avx512_bf16"]
    cpu_flags([])
    assert main([*args[:6], str(tmp_path / "plain"), *args[7:]]) == 0
    assert "float32 weights and forward passes (this CPU has no bf16 instructions" in capsys.readouterr().out
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["config"]["autocast"] is None
    assert main([*args[:6], str(tmp_path / "asked"), *args[7:], "--autocast", "none"]) == 0


def test_a_resumed_run_keeps_the_precision_of_its_checkpoint(cpu_flags, tiny_model_dir, tiny_data_dir, tmp_path):
    """A run made in float32 (here: on a CPU without bf16) is resumed in float32 on one with bf16, and equals
    the uninterrupted run, instead of being refused for another autocast."""
    cpu_flags([])
    straight = train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "a", autocast="auto"), progress=False)
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "b", autocast="auto", steps=3), progress=False)
    cpu_flags(["amx_bf16"])
    resumed = train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "b", autocast="auto", resume=True),
                    progress=False)
    assert resumed.precision["autocast"] == "none" and resumed.precision["why"] == "as the run being resumed"
    a = load_file(str(tmp_path / "a" / "checkpoint" / "weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "weights.safetensors"))
    assert straight.steps == resumed.steps and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags, autocast, dtype, slow", [
    ([], "bfloat16", "float32", "--autocast auto, which picks float32 here, is faster"),
    ([], None, "bfloat16", "--dtype float32 is faster"),
    ([], None, "float32", None),
    (["avx512_bf16"], "bfloat16", "float32", None),
])
def test_bf16_asked_for_on_a_cpu_that_emulates_it_is_called_slow(cpu_flags, flags, autocast, dtype, slow):
    from zotune.train.precision import emulated_bf16

    cpu_flags(flags)
    note = emulated_bf16(autocast, dtype)
    if slow is None:
        assert note is None
    else:
        assert slow in note and "no amx_bf16 or avx512_bf16" in note


def test_a_run_asked_for_bf16_on_a_cpu_without_it_warns_and_says_so(cpu_flags, tiny_model_dir, tiny_data_dir,
                                                                    tmp_path):
    from zotune.errors import ZotuneWarning

    cpu_flags([])
    with pytest.warns(ZotuneWarning, match="bf16 is emulated on this CPU"):
        result = train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "a", autocast="bfloat16", steps=1),
                       progress=False)
    assert result.precision["why"].startswith("as asked for; bf16 is emulated on this CPU")
    cpu_flags(["avx512_bf16"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZotuneWarning)
        train(_config(tiny_model_dir, tiny_data_dir, tmp_path / "b", autocast="bfloat16", steps=1), progress=False)
