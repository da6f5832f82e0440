"""ZOTrainer: a transformers.Trainer that trains with forward passes only."""

import pytest
from transformers import TrainingArguments

from zotune.errors import ConfigError
from zotune.trainer import ZOTrainer


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
