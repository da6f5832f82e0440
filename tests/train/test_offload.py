"""``--offload disk``: the weights in memory-mapped files of the run's own, a step's weights those of a run in RAM."""

import signal

import pytest
import torch
from safetensors.torch import load_file

from zotune.assets.offload import is_offloaded, load_offloaded
from zotune.errors import AssetError, ConfigError, Interrupted
from zotune.train import loop
from zotune.train.config import TrainConfig


def _run(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=3, lr=2e-3, eps=1e-2,
                  batch_size=8, num_train=32, num_dev=8, num_eval=8, eval_steps=3, eval_batch_size=16,
                  perturbation="deferred", autocast="none")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_offloaded_run_takes_the_steps_of_a_run_in_ram_bitwise(tiny_model_dir, tiny_data_dir, tmp_path, dtype):
    loop.train(_run(tiny_model_dir, tiny_data_dir, tmp_path / "ram", dtype=dtype), progress=False)
    offloaded = _run(tiny_model_dir, tiny_data_dir, tmp_path / "disk", dtype=dtype, offload="disk",
                     perturbation="auto")
    assert offloaded.perturbation == "deferred"  # probes never write the weight files
    loop.train(offloaded, progress=False)
    ram = load_file(tmp_path / "ram" / "final" / "model.safetensors")
    disk = load_file(tmp_path / "disk" / "final" / "model.safetensors")
    assert ram.keys() == disk.keys() and all(torch.equal(ram[k], disk[k]) for k in ram)
    assert not (tmp_path / "disk" / "offload").exists()  # the run's weight files go with the run


def test_offloaded_weights_are_file_backed_and_equal_the_loaded_model(tiny_model_dir, tiny_model_and_tokenizer,
                                                                      tmp_path):
    model, loading = load_offloaded(tiny_model_dir, tmp_path / "offload", torch.float32)
    assert loading == {"missing_keys": [], "mismatched_keys": [], "unexpected_keys": []}
    in_ram, _ = tiny_model_and_tokenizer
    assert all(is_offloaded(p) for p in model.parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    ids = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, in_ram(ids).logits)


def test_bad_offload_settings_and_sources_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs deferred perturbation"):
        TrainConfig(offload="disk", perturbation="in_place")
    with pytest.raises(ConfigError, match="Invalid offload: 'tape'"):
        TrainConfig(offload="tape")
    with pytest.raises(AssetError, match="reads a local folder of .safetensors"):
        load_offloaded(tmp_path, tmp_path / "offload", torch.float32)


def test_an_offloaded_run_stopped_and_resumed_ends_with_the_uninterrupted_weights(tiny_model_dir, tiny_data_dir,
                                                                                  tmp_path, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    loop.train(_run(tiny_model_dir, tiny_data_dir, straight, steps=6, offload="disk"), progress=False)
    real_step = loop.ZOOptimizer.step

    def step_then_signal(self, closure, **kwargs):  # SIGTERM in step 3: the run saves after it and stops
        if self.step_count == 2:
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, closure, **kwargs)

    monkeypatch.setattr(loop.ZOOptimizer, "step", step_then_signal)
    with pytest.raises(Interrupted):
        loop.train(_run(tiny_model_dir, tiny_data_dir, stopped, steps=6, offload="disk"), progress=False)
    monkeypatch.setattr(loop.ZOOptimizer, "step", real_step)
    assert not (stopped / "offload").exists()  # the weight files went with the stopped process; the resume remaps
    loop.train(_run(tiny_model_dir, tiny_data_dir, stopped, steps=6, offload="disk", resume=True), progress=False)
    a, b = (load_file(out / "final" / "model.safetensors") for out in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
