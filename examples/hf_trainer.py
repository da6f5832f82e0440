"""A Hugging Face Trainer script switched to zeroth-order training by changing one class.

Fine-tunes the default model (SmolLM2-135M-Instruct) on Rotten Tomatoes snippets as language modelling of the
label word (`<snippet> It was great` / `terrible`, the loss on the last token only), with `ZOTrainer` in place
of `Trainer`. Run from the repository root:

    .venv/bin/python examples/hf_trainer.py --steps 20

Replace `ZOTrainer(..., zo_method="mezo", zo_eps=1e-3)` by `Trainer(...)` to get the first-order original.
"""

from __future__ import annotations

import argparse

from transformers import TrainingArguments

from zotune.assets import load_model
from zotune.integrations.trainer import ZOTrainer
from zotune.tasks import TASKS, load_splits


def labelled_examples(rows, tokenizer, max_tokens=64):
    examples = []
    for row in rows:
        prompt = tokenizer(row["text"] + " It was", add_special_tokens=False)["input_ids"][-(max_tokens - 1):]
        answer = tokenizer(" great" if row["label"] == 1 else " terrible", add_special_tokens=False)["input_ids"]
        ids = prompt + answer
        examples.append({"input_ids": ids, "labels": [-100] * len(prompt) + answer})
    return examples


def pad(batch, pad_id):
    import torch

    width = max(len(ex["input_ids"]) for ex in batch)
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for ex in batch:
        gap = width - len(ex["input_ids"])  # left padding, as for generation
        out["input_ids"].append([pad_id] * gap + ex["input_ids"])
        out["attention_mask"].append([0] * gap + [1] * len(ex["input_ids"]))
        out["labels"].append([-100] * gap + ex["labels"])
    return {k: torch.tensor(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output-dir", default="runs/hf-trainer")
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    splits = load_splits(TASKS.get("rotten_tomatoes"))
    train = labelled_examples(splits["train"][:512], tokenizer)
    held_out = labelled_examples(splits["validation"][:128], tokenizer)
    training_args = TrainingArguments(output_dir=args.output_dir, max_steps=args.steps, per_device_train_batch_size=16,
                                      per_device_eval_batch_size=32, learning_rate=1e-4, lr_scheduler_type="constant",
                                      logging_steps=5, save_strategy="no", report_to=[], seed=0, use_cpu=True)
    trainer = ZOTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=held_out,
                        data_collator=lambda batch: pad(batch, tokenizer.pad_token_id),
                        zo_method="mezo", zo_eps=1e-3)
    print("held-out loss before:", round(trainer.evaluate()["eval_loss"], 4))
    trainer.train()
    print("held-out loss after: ", round(trainer.evaluate()["eval_loss"], 4))


if __name__ == "__main__":
    main()
