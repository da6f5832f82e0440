import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from conftest import build_tiny_model
from zotune import ZOOptimizer
from zotune.cli import main
from zotune.errors import ConfigError, StateError
from zotune.methods.zo_finetuner.controller import ControllerBank, block_counts, normalised_scales
from zotune.methods.zo_finetuner.meta_gradient import MetaRecipe, MetaTrainer
from zotune.perturb import PerturbationEngine


def _shapes(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}


def _constant_controller(model, path, sigma):
    """Every block's controller outputs ``sigma`` whatever its input (fc2's weights are zero)."""
    bank = ControllerBank(_shapes(model), generator=torch.Generator().manual_seed(1), metadata={"base_model": "tiny"})
    with torch.no_grad():
        bank.w2.zero_()
        bank.b2.fill_(sigma)
    return bank.save(path)


def _random_controller(model, path, seed=3):
    bank = ControllerBank(_shapes(model), generator=torch.Generator().manual_seed(seed),
                          metadata={"base_model": "tiny", "recipe": {"epochs": 1}})
    with torch.no_grad():  # sigmas that really differ between blocks
        bank.w2.normal_(generator=torch.Generator().manual_seed(seed), std=2.0)
    return bank.save(path)


def _closure(model, seed=0):
    ids = torch.randint(0, model.config.vocab_size, (4, 12), generator=torch.Generator().manual_seed(seed))
    return lambda: model(input_ids=ids, labels=ids).loss


@pytest.mark.parametrize("sigma", [1.0, 0.37, 12.5])
def test_with_equal_sigmas_a_step_is_exactly_mezo(sigma, tmp_path):
    controller = _constant_controller(build_tiny_model(100), tmp_path / "c.safetensors", sigma)
    mezo, tuned = build_tiny_model(100), build_tiny_model(100)
    opt_mezo = ZOOptimizer(mezo, "mezo", lr=1e-3, eps=1e-3, seed=5)
    opt_tuned = ZOOptimizer(tuned, "zo-finetuner", lr=1e-3, eps=1e-3, seed=5,
                            method_options={"controller": str(controller)})
    for _ in range(3):
        assert opt_mezo.step(_closure(mezo)) == opt_tuned.step(_closure(tuned))
    for (name, a), (_, b) in zip(mezo.named_parameters(), tuned.named_parameters()):
        assert torch.equal(a, b), name


def test_scales_hold_mezos_energy_and_follow_sigma():
    sigma = torch.rand(7, generator=torch.Generator().manual_seed(0)) * 5
    counts = torch.tensor([10, 2000, 3, 64, 64, 1, 512], dtype=torch.float64)
    scales = normalised_scales(sigma, counts)
    assert torch.isclose((counts * scales**2).sum(), counts.sum(), rtol=1e-12)
    ratio = scales / sigma.double()
    assert torch.allclose(ratio, ratio[0].expand(7), rtol=1e-12)  # one constant c for every block
    assert torch.equal(normalised_scales(torch.full((4,), 0.3), counts[:4]), torch.ones(4, dtype=torch.float64))


def test_embedding_rule_counts_touched_rows_only():
    model = build_tiny_model(100)
    engine = PerturbationEngine(model.named_parameters())
    touched = block_counts(engine.blocks, rule="touched", touched_rows=15 * 4, pattern=r"embed_tokens\.weight$")
    full = block_counts(engine.blocks, rule="full", touched_rows=60, pattern=r"embed_tokens\.weight$")
    names = [b.name for b in engine.blocks]
    embed = names.index("model.embed_tokens.weight")
    assert full[embed] == 100 * 32 and touched[embed] == 60 * 32
    assert torch.equal(torch.cat([touched[:embed], touched[embed + 1:]]), torch.cat([full[:embed], full[embed + 1:]]))


@pytest.mark.parametrize("tied", [True, False])
def test_auto_rule_counts_every_row_of_an_embedding_that_is_also_the_output_layer(tied, tmp_path):
    # A tied embedding is the LM head too: every row takes part in each loss, so the paper's count of looked-up
    # rows would let a controller put far more than MeZO's energy into it unseen by the normalisation.
    model = build_tiny_model(100, tied=tied)
    controller = str(_random_controller(model, tmp_path / "c.safetensors"))

    def embedding_count(params, **options):
        opt = ZOOptimizer(params, "zo-finetuner", method_options={"controller": controller, "touched_rows": 60,
                                                                  **options})
        return int(opt.method.counts[[b.name for b in opt.engine.blocks].index("model.embed_tokens.weight")])

    assert embedding_count(model) == (100 if tied else 60) * 32  # auto, the default
    assert embedding_count(model, embedding_rule="touched") == 60 * 32  # the paper's rule, as it is written
    assert embedding_count(model, embedding_rule="full") == 100 * 32
    assert embedding_count(list(model.named_parameters())) == 60 * 32  # tensors alone: no output layer to see
    trainer = MetaTrainer(model, ControllerBank.load(controller), MetaRecipe(touched_rows=60), steps_per_epoch=1)
    assert int(trainer.counts[[b.name for b in trainer.engine.blocks].index("model.embed_tokens.weight")]) == \
        (100 if tied else 60) * 32


def test_the_step_applies_the_normalised_scales(tmp_path):
    model = build_tiny_model(100)
    controller = _random_controller(model, tmp_path / "c.safetensors")
    opt = ZOOptimizer(model, "zo-finetuner", lr=1e-3, eps=1e-3, seed=0, method_options={"controller": str(controller)})
    plan = opt.method.plan(0, torch.Generator(), opt.sampler.plan(0, torch.Generator()))
    scales = torch.tensor(plan.scales, dtype=torch.float64)
    counts = opt.method.counts
    assert torch.isclose((counts * scales**2).sum(), counts.sum(), rtol=1e-12)
    assert scales.max() / scales.min() > 2  # the controller really allocates
    # One step moves block b by exactly -lr * g * s_b * z_b.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step(_closure(model))
    g = opt.last_probes[0].projected_grad
    for block, scale in zip(opt.engine.blocks, plan.scales):
        z = opt.engine.noise(opt.last_probes[0].seed, block)
        expected = before[block.name] - 1e-3 * g * scale * z
        assert torch.allclose(block.param, expected, atol=1e-6), block.name


def test_controller_file_round_trips_and_is_keyed_by_parameter_name(tmp_path):
    model = build_tiny_model(100)
    path = _random_controller(model, tmp_path / "c.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        keys, meta = set(handle.keys()), handle.metadata()
        assert tuple(handle.get_tensor("model.embed_tokens.weight::fc1.weight").shape) == (64, 5)
    assert keys == {f"{n}::{part}" for n in _shapes(model) for part in ("fc1.weight", "fc1.bias", "fc2.weight",
                                                                         "fc2.bias")}
    assert meta["base_model"] == "tiny" and json.loads(meta["recipe"]) == {"epochs": 1}
    saved = ControllerBank(_shapes(model), generator=torch.Generator().manual_seed(3))
    loaded = ControllerBank.load(path)
    assert loaded.names == list(_shapes(model)) and loaded.metadata["recipe"] == {"epochs": 1}
    features = torch.randn(len(loaded.names), 5)
    with torch.no_grad():
        saved.w2.normal_(generator=torch.Generator().manual_seed(3), std=2.0)
    assert torch.equal(saved(features), loaded(features))
    assert sum(p.numel() for p in loaded.parameters()) == 449 * len(loaded.names)


def test_a_controller_for_another_model_is_refused_with_the_differences(tmp_path):
    path = _random_controller(build_tiny_model(100), tmp_path / "c.safetensors")
    other = build_tiny_model(120)  # another vocabulary: the embedding's shape differs
    with pytest.raises(ConfigError, match=r"does not fit this model \(it was meta-trained for tiny\).*1 shapes "
                                          r"differ: model.embed_tokens.weight \(100, 32\) vs the model's \(120, 32\)"):
        ZOOptimizer(other, "zo-finetuner", method_options={"controller": str(path)})
    frozen = build_tiny_model(100)
    frozen.model.norm.weight.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"1 controller entries not in the model: model.norm.weight"):
        ZOOptimizer(frozen, "zo-finetuner", method_options={"controller": str(path)})


def test_missing_or_damaged_controllers_are_clear_errors(tmp_path):
    model = build_tiny_model(100)
    with pytest.raises(ConfigError, match="No shipped ZO Fine-tuner controller fits this model.*zotune meta-train"):
        ZOOptimizer(model, "zo-finetuner")
    with pytest.raises(ConfigError, match="No controller file 'nope.safetensors'"):
        ZOOptimizer(model, "zo-finetuner", method_options={"controller": "nope.safetensors"})
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StateError, match="Cannot read controller file"):
        ZOOptimizer(model, "zo-finetuner", method_options={"controller": str(tmp_path / "bad.safetensors")})


class _TwoBlocks(nn.Module):
    """L = 1/2 (100 |loud - a|^2 + 0.01 |quiet - b|^2): the loud block carries 10^4 times the gradient energy."""

    def __init__(self):
        super().__init__()
        self.loud = nn.Parameter(torch.zeros(32))
        self.quiet = nn.Parameter(torch.zeros(32))
        generator = torch.Generator().manual_seed(0)
        self.a, self.b = torch.randn(32, generator=generator), torch.randn(32, generator=generator)

    def forward(self):
        return 0.5 * (100 * (self.loud - self.a).pow(2).sum() + 0.01 * (self.quiet - self.b).pow(2).sum())


def test_meta_training_raises_sigma_of_the_high_energy_block():
    model = _TwoBlocks()
    bank = ControllerBank(_shapes(model), generator=torch.Generator().manual_seed(0))
    recipe = MetaRecipe(epochs=4, reset_every=2, eps=1e-3, model_lr=1e-2, alpha=1e-6, meta_lr=0.1,
                        embedding_rule="full")
    trainer = MetaTrainer(model, bank, recipe, steps_per_epoch=25)
    first = trainer.step(model)
    for _ in range(99):
        last = trainer.step(model)
    assert 0.9 < first["scale_max"] / first["scale_min"] < 1.1  # a fresh controller is MeZO
    loud, quiet = trainer.state.sigma
    assert loud / quiet > 3, (float(loud), float(quiet))
    assert last["scale_max"] / last["scale_min"] > 3


def _meta_args(model_dir, data_dir, out, *extra):
    return ["meta-train", "--model", str(model_dir), "--task", "rotten_tomatoes", "--data-dir", str(data_dir),
            "--num-train", "32", "--batch-size", "8", "--epochs", "2", "--reset-every", "1", "--alpha", "1e-3",
            "--out", str(out / "ctrl.safetensors"), "--output-dir", str(out / "run"), "--no-progress", *extra]


def test_meta_train_cli_resumes_to_the_same_controller(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_meta_args(tiny_model_dir, tiny_data_dir, straight)) == 0
    assert "8 meta steps in" in capsys.readouterr().out
    assert main(_meta_args(tiny_model_dir, tiny_data_dir, split, "--max-steps", "3")) == 0
    assert "3 meta steps (of 8; --resume goes on)" in capsys.readouterr().out
    assert main(_meta_args(tiny_model_dir, tiny_data_dir, split, "--resume")) == 0
    a = ControllerBank.load(straight / "ctrl.safetensors")
    b = ControllerBank.load(split / "ctrl.safetensors")
    for name in ("w1", "b1", "w2", "b2"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.metadata["base_model"] == str(tiny_model_dir) and a.metadata["recipe"]["alpha"] == 1e-3
    records = [json.loads(line) for line in (split / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert (split / "run" / "loss.png").is_file()

    # The controller drives a fine-tuning run, and the run replays bitwise from its seed log.
    train_out = tmp_path / "train"
    assert main(["train", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--method", "zo-finetuner",
                 "--option", f"controller={straight / 'ctrl.safetensors'}", "--steps", "3", "--num-train", "32",
                 "--num-dev", "0", "--num-eval", "8", "--lr", "1e-3", "--eps", "1e-2", "--batch-size", "8",
                 "--output-dir", str(train_out), "--no-save-best", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["replay", "--log", str(train_out / "seeds.jsonl"), "--out", str(tmp_path / "replayed"),
                 "--no-progress"]) == 0
    assert "bitwise equal" in capsys.readouterr().out


@pytest.mark.parametrize("flag,value,message", [("--epochs", "0", "Invalid epochs"),
                                                ("--momentum", "1.5", "Invalid momentum"),
                                                ("--out", "ctrl.pt", "ends in .safetensors"),
                                                ("--embedding-rule", "all", "Invalid embedding_rule: 'all'")])
def test_meta_train_rejects_bad_settings(flag, value, message, tmp_path, capsys):
    assert main(["meta-train", flag, value, "--output-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_the_method_refuses_an_unknown_embedding_rule_as_meta_train_does():
    from zotune.methods.zo_finetuner.config import ZOFinetunerConfig
    with pytest.raises(ConfigError, match="Invalid embedding_rule: 'all' \\(choose from auto, touched, full\\)"):
        ZOFinetunerConfig(embedding_rule="all")


def test_a_controller_used_more_than_3x_off_its_meta_training_lr_is_warned_about(tmp_path, recwarn):
    from zotune.errors import ZotuneWarning

    model = build_tiny_model(100)
    bank = ControllerBank(_shapes(model), generator=torch.Generator().manual_seed(0),
                          metadata={"base_model": "tiny", "recipe": {"alpha": 1e-4}})
    path = bank.save(tmp_path / "c.safetensors")
    with pytest.warns(ZotuneWarning, match=r"meta-trained at alpha 0.0001, and runs at lr 0.01 \(100x\)"):
        ZOOptimizer(model, "zo-finetuner", lr=1e-2, method_options={"controller": str(path)})
    recwarn.clear()
    ZOOptimizer(model, "zo-finetuner", lr=2e-4, method_options={"controller": str(path)})  # within 3x: quiet
    assert not [w for w in recwarn if issubclass(w.category, ZotuneWarning)]
