"""Shared fixtures: a tiny LLaMA model and word-level tokenizer built offline, and tiny task data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "assets"


def _vocabulary() -> list[str]:
    words = set()
    for split in ("train", "validation"):
        for line in (ASSETS / "tiny_sentiment" / f"{split}.jsonl").read_text().splitlines():
            words.update(json.loads(line)["text"].replace(".", " .").split())
    words.update(["It", "was", "terrible", "great", "Yes", "No", "Maybe"])
    return ["[PAD]", "[UNK]", "[BOS]", *sorted(words)]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="[BOS]", eos_token="[PAD]")


def build_tiny_model(vocab_size: int, seed: int = 0, *, tied: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=tied, pad_token_id=0, bos_token_id=2, eos_token_id=0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_model_and_tokenizer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def tiny_data_dir(tmp_path) -> Path:
    """A --data-dir folder holding rotten_tomatoes/{train,validation}.jsonl."""
    target = tmp_path / "data" / "rotten_tomatoes"
    shutil.copytree(ASSETS / "tiny_sentiment", target)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch, request):
    # Tests never touch the user's cache, except the one smoke test on the real default model.
    if "uses_real_cache" not in request.keywords:
        monkeypatch.setenv("ZOTUNE_HOME", str(tmp_path / "zotune-home"))


@pytest.fixture(scope="session")
def finished_run(tiny_model_dir, tmp_path_factory):
    """A data folder and an output folder holding a finished 3-step run (copied per test: ``run``)."""
    from hostile import train_args
    from zotune.cli import main

    root = tmp_path_factory.mktemp("finished")
    shutil.copytree(ASSETS / "tiny_sentiment", root / "data" / "rotten_tomatoes")
    assert main(train_args(tiny_model_dir, root / "data", root / "out")) == 0
    return root


@pytest.fixture()
def run(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    return tmp_path
