"""The examples run on the tiny model: the text-classification recipe with ZOTrainer on local CSV files."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_text_classification_recipe_on_local_csv_files(tiny_model_dir, tmp_path):
    rows = [json.loads(line) for line in (Path(__file__).parent / "assets" / "tiny_sentiment" / "train.jsonl")
            .read_text().splitlines()]
    for split in ("train", "validation"):
        with open(tmp_path / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
    result = _load("text_classification").main([
        "--model_name_or_path", str(tiny_model_dir), "--train_file", str(tmp_path / "train.csv"),
        "--validation_file", str(tmp_path / "validation.csv"), "--output_dir", str(tmp_path / "out"),
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--zo_eps", "1e-2",
        "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true"])
    assert 0.0 <= result["after"] <= 1.0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert "zeroth-order" in (tmp_path / "out" / "README.md").read_text()
