"""LoRA and prefix tuning through peft: only the adapter trains, is saved, and reloads."""

import json

import pytest
import torch
from safetensors.torch import load_file

from zotune import ZOOptimizer
from zotune.cli import main
from zotune.errors import ConfigError
from zotune.integrations.adapters import PeftSettings, apply_peft, load_adapter
from zotune.tasks import TASKS, candidate_scores, encode
from zotune.train.config import TrainConfig
from zotune.train.loop import train
from zotune.train.replay import load_base, replay
from zotune.train.seedlog import read_seed_log


def _config(model_dir, data_dir, out, **overrides):
    values = dict(model=str(model_dir), data_dir=str(data_dir), output_dir=str(out), steps=6, lr=5e-2, eps=1e-2,
                  batch_size=8, num_train=48, num_dev=16, num_eval=24, eval_steps=3, eval_batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)


def test_defaults_are_mezos():
    lora = PeftSettings("lora")
    assert (lora.lora_r, lora.lora_alpha, lora.lora_targets, lora.prefix_tokens) == (8, 16, ["q_proj", "v_proj"], 5)
    with pytest.raises(ConfigError, match="Invalid peft mode"):
        PeftSettings("ia3")
    with pytest.raises(ConfigError, match="Invalid lora_r"):
        PeftSettings("lora", lora_r=0)


@pytest.mark.parametrize("mode,trainable", [("lora", 8), ("prefix", 1)])
def test_only_the_adapter_is_perturbed_and_updated(mode, trainable, tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapped = apply_peft(model, PeftSettings(mode), seed=0)
    opt = ZOOptimizer(wrapped, lr=1e-1, eps=1e-2)
    assert len(opt.engine.blocks) == trainable
    adapter_before = {b.name: b.param.detach().clone() for b in opt.engine.blocks}
    examples = encode(TASKS.get("rotten_tomatoes"), [{"text": "a good film", "label": 1}] * 4, tokenizer)
    labels = torch.tensor([1] * 4)
    for _ in range(3):
        opt.step(lambda: torch.nn.functional.cross_entropy(
            candidate_scores(wrapped, examples, tokenizer.pad_token_id), labels))
    changed = [b.name for b in opt.engine.blocks if not torch.equal(b.param, adapter_before[b.name])]
    assert changed  # the adapter moved (LoRA's B starts at 0; its A and B both move)
    frozen = {n.replace(".base_layer", ""): p for n, p in wrapped.get_base_model().named_parameters()
              if not p.requires_grad}
    assert frozen.keys() == base.keys()
    assert all(torch.equal(frozen[n], base[n]) for n in base)


def test_adapter_init_is_seeded_without_touching_the_global_rng(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    def adapter(seed):
        model = apply_peft(AutoModelForCausalLM.from_pretrained(tiny_model_dir), PeftSettings("lora"), seed=seed)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    state = torch.get_rng_state()
    a, b, c = adapter(0), adapter(0), adapter(1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_a_lora_run_saves_the_adapter_alone_and_it_reloads_with_the_same_predictions(tiny_model_dir, tiny_data_dir,
                                                                                    tmp_path, capsys):
    # Seed 2: a run whose best dev score comes after step 0, so the saved adapter is a trained one (at step 0 its
    # B matrices are zero and it predicts as the base model does).
    train(_config(tiny_model_dir, tiny_data_dir, tmp_path, peft="lora", seed=2), progress=False)
    assert json.loads((tmp_path / "summary.json").read_text())["best_step"] > 0
    weights = load_file(str(tmp_path / "checkpoint" / "weights.safetensors"))
    assert weights and all(".lora_" in name for name in weights)
    assert (tmp_path / "best" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "best" / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reloaded = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "best")
    final = json.loads((tmp_path / "summary.json").read_text())["final"]
    assert main(["eval", "--model", str(tiny_model_dir), "--adapter", str(tmp_path / "best"), "--data-dir",
                 str(tiny_data_dir), "--num-train", "48", "--num-dev", "16", "--num-eval", "24"]) == 0
    assert f"accuracy {final['eval_accuracy']:.4f}" in capsys.readouterr().out
    rows = [{"text": "a good film", "label": 1}, {"text": "dull", "label": 0}]
    examples = encode(TASKS.get("rotten_tomatoes"), rows, tokenizer)
    base_scores = candidate_scores(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples, 0)
    assert not torch.allclose(candidate_scores(reloaded, examples, 0), base_scores)


# AdaLeZO samples layers: prefix tuning has a single tensor, so it is tried with LoRA.
@pytest.mark.parametrize("mode,method", [("lora", "adalezo"), ("lora", "dizo"), ("prefix", "mezo"),
                                         ("prefix", "ldsd"), ("lora", "zo-muon")])
def test_every_method_trains_an_adapter_and_replays(mode, method, tiny_model_dir, tiny_data_dir, tmp_path):
    options = {"interval": 2, "probes": 2} if method == "dizo" else {}
    result = train(_config(tiny_model_dir, tiny_data_dir, tmp_path, peft=mode, method=method,
                           method_options=options), progress=False)
    assert result.steps == 6
    log = read_seed_log(tmp_path / "seeds.jsonl")
    base, _ = load_base(log)  # the tiny model with the logged adapter, from the logged seed
    assert log.header["peft"]["mode"] == mode
    assert replay(log, base).matches_log is True
    if method == "dizo":
        rounds = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert any(r["kind"] == "method" and r["divergence_norms"] for r in rounds)


def test_the_cli_takes_peft_flags(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    args = ["train", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
            str(tmp_path), "--steps", "2", "--eval-steps", "2", "--num-train", "16", "--num-dev", "8",
            "--num-eval", "8", "--batch-size", "8", "--no-progress", "--peft", "lora", "--lora-r", "4",
            "--lora-targets", "q_proj,k_proj,v_proj"]
    assert main(args) == 0
    config = json.loads((tmp_path / "best" / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    assert main([*args, "--peft", "ia3"]) == 2
    assert "Invalid peft mode: 'ia3'" in capsys.readouterr().err


def test_peft_modes_default_to_mezos_learning_rate_and_eps():
    assert (TrainConfig().lr, TrainConfig().eps) == (3e-5, 1e-3)  # MeZO's from the lr sweep
    assert (TrainConfig(peft="lora").lr, TrainConfig(peft="lora").eps) == (1e-4, 1e-2)
    assert (TrainConfig(peft="prefix").lr, TrainConfig(peft="prefix").eps) == (1e-2, 1e-1)
    assert TrainConfig(peft="prefix", lr=3e-3).lr == 3e-3
