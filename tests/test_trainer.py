"""ZOTrainer: a transformers.Trainer that trains with forward passes only."""

import json
import math

import pytest
import torch
from transformers import TrainingArguments

from zotune.errors import ConfigError
from zotune.integrations.trainer import ZOTrainer, ZOTrainingArguments


def _dataset(tokenizer, n=32):
    rows = []
    for i in range(n):
        text = f"{'good fun' if i % 2 else 'dull mess'} . It was {'great' if i % 2 else 'terrible'}"
        ids = tokenizer(text)["input_ids"]
        labels = [-100] * (len(ids) - 1) + [ids[-1]]  # the loss is on the verbaliser only
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def _args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path), max_steps=40, per_device_train_batch_size=8, learning_rate=2e-3,
                  lr_scheduler_type="constant", logging_steps=10, save_strategy="no", report_to=[], seed=0,
                  use_cpu=True, disable_tqdm=True)
    values.update(overrides)
    return TrainingArguments(**values)


def test_zo_trainer_lowers_the_loss_without_gradients(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    data = _dataset(tokenizer)
    trainer = ZOTrainer(model=model, args=_args(tmp_path), train_dataset=data, eval_dataset=data,
                        zo_method="mezo", zo_eps=1e-2)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < 0.8 * before
    assert all(p.grad is None for p in model.parameters())
    assert trainer.zo_optimizer.step_count == 40 and trainer.zo_optimizer.forward_passes == 80


def test_zo_trainer_runs_other_methods_with_options(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    trainer = ZOTrainer(model=model, args=_args(tmp_path, max_steps=3), train_dataset=_dataset(tokenizer),
                        zo_method="ldsd", zo_options={"update": "adam", "method_options": {"candidates": 2}})
    trainer.train()
    assert trainer.zo_optimizer.forward_passes == 3 * 3


def test_gradient_accumulation_is_refused(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=1"):
        ZOTrainer(model=model, args=_args(tmp_path, gradient_accumulation_steps=2), train_dataset=_dataset(tokenizer))


TORCHRUN_SCRIPT = '''
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, TrainingArguments

from zotune.integrations.trainer import ZOTrainer, ZOTrainingArguments

model_dir, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
# 8 different rows: a step's global batch is all of them, on one process or as two shards of 4.
vocab = model.config.vocab_size
rows = [{"input_ids": ids, "attention_mask": [1] * 6, "labels": ids}
        for ids in ([3 + (i * 7 + j * 5) % (vocab - 3) for j in range(6)] for i in range(8))]
args = TrainingArguments(output_dir=out, max_steps=3, per_device_train_batch_size=batch, learning_rate=2e-3,
                         lr_scheduler_type="constant", save_strategy="no", report_to=[], seed=0, use_cpu=True,
                         disable_tqdm=True, logging_strategy="no")
trainer = ZOTrainer(model=model, args=args, train_dataset=rows, zo_eps=1e-2)
trainer.train()
save_file({n: p.detach().contiguous() for n, p in model.named_parameters()},
          f"{out}/rank{trainer.args.process_index}.safetensors")
'''


def test_zo_trainer_under_torchrun_keeps_the_replicas_identical_and_equals_one_process(tiny_model_dir, tmp_path):
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from test_distributed import _assert_close_updates, _free_port

    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          str(_free_port()), str(script), str(tiny_model_dir), str(tmp_path / "two"), "4"],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "one"), "8"], env=env,
                         capture_output=True, text=True, timeout=1800)
    assert one.returncode == 0, one.stderr[-2000:]
    rank0, rank1 = (load_file(str(tmp_path / "two" / f"rank{r}.safetensors")) for r in range(2))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # each rank stepping on its shard's g drifted apart
    single = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    _assert_close_updates(rank0, single, load_file(str(tiny_model_dir / "model.safetensors")))


def test_zo_trainer_is_importable_from_the_package_root():
    import zotune

    assert zotune.ZOTrainer is ZOTrainer and zotune.ZOTrainingArguments is ZOTrainingArguments


def test_zo_training_arguments_parse_with_hf_argument_parser_and_reach_the_optimizer(tiny_model_and_tokenizer,
                                                                                     tmp_path):
    from transformers import HfArgumentParser

    model, tokenizer = tiny_model_and_tokenizer
    (args,) = HfArgumentParser(ZOTrainingArguments).parse_args_into_dataclasses([
        "--output_dir", str(tmp_path), "--max_steps", "2", "--per_device_train_batch_size", "8", "--report_to",
        "none", "--use_cpu", "--zo_method", "ldsd", "--zo_eps", "0.01", "--zo_update", "adam",
        "--zo_method_options", '{"candidates": 2}', "--logging_steps", "1", "--save_strategy", "no"])
    trainer = ZOTrainer(model=model, args=args, train_dataset=_dataset(tokenizer))
    trainer.train()
    opt = trainer.zo_optimizer
    assert opt.settings["method"] == "ldsd" and opt.settings["eps"] == 0.01 and opt.settings["update"] == "adam"
    assert opt.method.config.candidates == 2 and opt.forward_passes == 2 * 3
    saved = json.loads(args.to_json_string())
    assert saved["zo_method"] == "ldsd" and saved["zo_method_options"] == '{"candidates": 2}'
    train_logs = [r for r in trainer.state.log_history if "loss" in r]
    assert train_logs and all("grad_norm" not in r and "zo_projected_grad" in r for r in train_logs)
    assert train_logs[-1]["zo_forward_passes"] == 6


def test_the_model_card_names_zeroth_order_training_not_adamw(tiny_model_and_tokenizer, tmp_path):
    model, tokenizer = tiny_model_and_tokenizer
    trainer = ZOTrainer(model=model, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(tokenizer))
    trainer.train()
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "zotune mezo (zeroth-order: forward passes only, no gradients), eps 0.001" in card
    assert "adamw" not in card.lower() and "zeroth-order" in card


def test_the_trainers_card_carries_hub_metadata(tiny_model_and_tokenizer, tmp_path):
    from huggingface_hub import ModelCard

    model, tokenizer = tiny_model_and_tokenizer
    trainer = ZOTrainer(model=model, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(tokenizer))
    trainer.train()
    trainer.create_model_card(finetuned_from="HuggingFaceTB/SmolLM2-135M-Instruct", dataset="glue")
    meta = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["library_name"] == "transformers"
    assert meta["datasets"] == ["glue"] and {"zotune", "zeroth-order", "mezo"} <= set(meta["tags"])


def test_gradient_optimizer_arguments_are_warned_about(tiny_model_and_tokenizer, tmp_path):
    from zotune.errors import ZotuneWarning

    model, tokenizer = tiny_model_and_tokenizer
    with pytest.warns(ZotuneWarning, match="ignores optim=sgd, adam_beta1=0.5"):
        ZOTrainer(model=model, args=_args(tmp_path, adam_beta1=0.5, optim="sgd"), train_dataset=_dataset(tokenizer))


@pytest.mark.parametrize("setting", [dict(gradient_checkpointing=True), dict(neftune_noise_alpha=5.0),
                                     dict(optim="adamw_torch"), dict(max_grad_norm=1.0)])
def test_every_argument_that_changes_nothing_under_zo_is_named_once(tiny_model_and_tokenizer, tmp_path, setting):
    """Against ZOTrainingArguments' defaults (adamw_torch_fused, max_grad_norm 0), each of these was silent."""
    from zotune.errors import ZotuneWarning

    model, tokenizer = tiny_model_and_tokenizer
    (name,) = setting
    args = ZOTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **setting)
    with pytest.warns(ZotuneWarning, match=f"ignores {name}=") as caught:
        ZOTrainer(model=model, args=args, train_dataset=_dataset(tokenizer))
    assert sum("ignores" in str(w.message) for w in caught) == 1


def test_defaults_say_nothing_and_zo_training_arguments_default_to_a_constant_schedule(tmp_path, recwarn):
    assert ZOTrainingArguments(output_dir=str(tmp_path), use_cpu=True).lr_scheduler_type == "constant"
    assert ZOTrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                               lr_scheduler_type="cosine").lr_scheduler_type == "cosine"
    from zotune.integrations.trainer import _ignored_arguments

    assert _ignored_arguments(ZOTrainingArguments(output_dir=str(tmp_path), use_cpu=True)) == []
    assert _ignored_arguments(TrainingArguments(output_dir=str(tmp_path), use_cpu=True)) == []


class _CustomLoss(ZOTrainer):
    """The custom-loss pattern of the transformers docs: compute_loss takes the labels out of the inputs."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


@pytest.mark.parametrize("trainer_cls, setting", [(ZOTrainer, dict(label_smoothing_factor=0.1)), (_CustomLoss, {})],
                         ids=["label-smoothing", "custom-compute-loss"])
def test_losses_that_consume_the_labels_train(tiny_model_and_tokenizer, tmp_path, trainer_cls, setting):
    """Every probe sees the labels: the second forward pass of a step used to find them popped by the first."""
    model, tokenizer = tiny_model_and_tokenizer
    trainer = trainer_cls(model=model, args=_args(tmp_path, max_steps=3, **setting), train_dataset=_dataset(tokenizer),
                          zo_eps=1e-2)
    trainer.train()
    assert trainer.zo_optimizer.step_count == 3 and trainer.zo_optimizer.forward_passes == 6
    assert all(math.isfinite(loss) for p in trainer.zo_optimizer.last_probes for loss in p.losses)


def test_fp16_trains_without_accelerates_gradient_scaler(tiny_model_and_tokenizer, tmp_path, monkeypatch):
    """On CUDA, fp16=True gives accelerate a GradScaler whose step asserts it saw gradients; a CPU accelerator
    given one reproduces that (an AssertionError at the optimizer step before the fix)."""
    import accelerate
    import transformers.trainer

    class WithScaler(accelerate.Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.scaler = torch.amp.GradScaler("cpu")

    monkeypatch.setattr(transformers.trainer, "Accelerator", WithScaler)
    model, tokenizer = tiny_model_and_tokenizer
    trainer = ZOTrainer(model=model, args=_args(tmp_path, max_steps=2), train_dataset=_dataset(tokenizer), zo_eps=1e-2)
    assert trainer.accelerator.scaler is None
    trainer.train()
    assert trainer.zo_optimizer.step_count == 2


def test_bf16_training_arguments_give_bf16_forward_passes_over_float32_weights(tiny_model_and_tokenizer, tmp_path):
    """`bf16=True` is the Trainer's autocast (through accelerate): ZOTrainer's probes run under it, as
    `zotune train --autocast bfloat16` does, and the weights it perturbs stay float32."""
    model, tokenizer = tiny_model_and_tokenizer
    seen = []
    model.lm_head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer = ZOTrainer(model=model, args=_args(tmp_path, max_steps=2, bf16=True), train_dataset=_dataset(tokenizer),
                        zo_method="mezo", zo_eps=1e-2)
    trainer.train()
    assert seen and set(seen) == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert trainer.zo_optimizer.forward_passes == 4
