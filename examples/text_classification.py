"""The transformers text-classification recipe on your own CSV files, trained zeroth-order with ``ZOTrainer``.

What ``run_glue.py``-style scripts do — ``datasets`` reads the CSVs, the tokenizer maps the text column, a
sequence-classification head scores it, ``Trainer`` trains and evaluates — with ``ZOTrainingArguments`` and
``ZOTrainer`` in place of ``TrainingArguments`` and ``Trainer``, so every ZO setting is a flag too. From the
repository root, e.g. on the Rotten Tomatoes snippets written out as CSV:

    .venv/bin/python examples/text_classification.py --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct \\
        --train_file train.csv --validation_file validation.csv --text_column text --label_column label \\
        --output_dir runs/text-classification --max_steps 100 --learning_rate 1e-4 --zo_eps 1e-3 \\
        --lr_scheduler_type constant --per_device_train_batch_size 16 --use_cpu

``--model_name_or_path`` also takes a local folder (``zotune`` resolves built-in names such as ``smollm2-135m``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
)

from zotune.assets import resolve_model_path
from zotune.integrations.trainer import ZOTrainer, ZOTrainingArguments


@dataclass
class DataArguments:
    model_name_or_path: str = field(default="smollm2-135m", metadata={"help": "built-in name, folder or hub id"})
    train_file: str = field(default="train.csv", metadata={"help": "CSV or JSON lines with the training rows"})
    validation_file: str = field(default="validation.csv", metadata={"help": "rows to evaluate on"})
    text_column: str = field(default="text")
    label_column: str = field(default="label", metadata={"help": "integer class indices 0..K-1"})
    max_length: int = field(default=128)


def main(argv: list[str] | None = None) -> dict[str, float]:
    import datasets

    data_args, args = HfArgumentParser((DataArguments, ZOTrainingArguments)).parse_args_into_dataclasses(argv)
    kind = "csv" if data_args.train_file.endswith(".csv") else "json"
    raw = datasets.load_dataset(kind, data_files={"train": data_args.train_file,
                                                  "validation": data_args.validation_file})
    num_labels = len(set(raw["train"][data_args.label_column]))
    source = resolve_model_path(data_args.model_name_or_path)  # zotune's route: built-ins, GGUF, folders, hub ids
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels)  # a new head
    model.config.pad_token_id = tokenizer.pad_token_id  # decoder-only models score the last non-pad token

    def tokenize(batch):
        encoded = tokenizer(batch[data_args.text_column], truncation=True, max_length=data_args.max_length)
        encoded["labels"] = batch[data_args.label_column]
        return encoded

    columns = raw["train"].column_names
    tokenized = raw.map(tokenize, batched=True, remove_columns=columns)

    def accuracy(prediction) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    trainer = ZOTrainer(model=model, args=args, train_dataset=tokenized["train"],
                        eval_dataset=tokenized["validation"], data_collator=DataCollatorWithPadding(tokenizer),
                        compute_metrics=accuracy)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    print(f"held-out accuracy {before['eval_accuracy']:.4f} -> {after['eval_accuracy']:.4f} "
          f"({trainer.zo_optimizer.forward_passes} forward passes, {args.zo_method}, eps {args.zo_eps})")
    trainer.save_model()
    trainer.create_model_card(finetuned_from=data_args.model_name_or_path)  # names zotune, not AdamW
    return {"before": before["eval_accuracy"], "after": after["eval_accuracy"]}


if __name__ == "__main__":
    main(sys.argv[1:])
