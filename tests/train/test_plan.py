"""The memory plan: estimates from a model's config alone, and the up-front refusal of a run that cannot fit."""

import json

import pytest

from hostile import expect_one_line_error, train_args
from zotune.cli import main
from zotune.train import plan as memory_plan

# SmolLM2-135M's shape, and the peaks measured for it at batch 16 x 64 tokens (ru_maxrss of a process that loads
# the model and takes two steps; 2026-12-06, AMD EPYC): the estimates were fitted to these.
SMOLLM2 = memory_plan.ModelShape(params=134_515_008, largest=28_311_552, hidden=576, intermediate=1536, layers=30,
                                 vocab=49_152)
MEASURED_GB = {"inference (fp32)": 1.408, "zotune MeZO, fp32": 1.454, "zotune MeZO, fp32 + bf16 autocast": 1.773,
               "zotune MeZO, bf16 weights": 1.274, "AdamW backprop (fp32)": 4.282,
               "AdamW + gradient checkpointing": 3.2, "LoRA backprop (fp32 base)": 3.1}


def test_the_plan_is_within_15_percent_of_the_measured_peaks():
    rows = {row.mode: row.bytes / 1e9 for row in memory_plan.plan_rows(SMOLLM2, batch=16, tokens=64)}
    for mode, measured in MEASURED_GB.items():
        assert abs(rows[mode] - measured) / measured < 0.15, (mode, rows[mode], measured)
    assert rows["zotune MeZO, fp32"] <= 1.05 * rows["inference (fp32)"]


def test_plan_reads_a_config_without_weights_and_says_what_fits(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "llama-8b-shape"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": False}))
    monkeypatch.setattr(memory_plan, "available_memory", lambda: 24 * 10**9)
    assert main(["plan", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "8,030 M parameters" in out
    assert "| zotune MeZO, bf16 weights | 22.3" in out and "| yes |" in out
    assert "| AdamW backprop (fp32) | 138.9" in out and "| no |" in out


def test_a_run_whose_weights_alone_cannot_fit_is_refused_before_anything_is_made(run, tiny_model_dir, capsys,
                                                                                 monkeypatch):
    monkeypatch.setattr(memory_plan, "available_memory", lambda: 10**6)
    out = run / "too-big"
    assert main(train_args(tiny_model_dir, run / "data", out, "--update", "adam")) == 2
    expect_one_line_error(capsys, "needs at least 0.3 GB as configured (--dtype float32, --update adam), and 0.0 GB "
                                  "are available: no mode fits this machine")
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--max-length", "-1"]])
def test_plan_refuses_bad_sizes(flags, capsys):
    assert main(["plan", *flags]) == 2
    expect_one_line_error(capsys, "Invalid --batch-size")


LOAD_PEAK = """
import resource, sys
from zotune.assets import load_model
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model, _ = load_model(sys.argv[1], dtype="bfloat16")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, sum(p.numel() * p.element_size() for p in model.parameters()))
"""


def test_loading_a_bf16_model_in_bf16_makes_no_float32_copy(tmp_path):
    """The load's peak above the process's baseline stays within 1.1x the bf16 weights (safetensors are mapped and
    read once, in their dtype); an fp32 copy would be 2x on top."""
    import subprocess
    import sys

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                         num_attention_heads=12, num_key_value_heads=4, tie_word_embeddings=False, pad_token_id=0,
                         bos_token_id=2, eos_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    done = subprocess.run([sys.executable, "-c", LOAD_PEAK, str(tmp_path / "bf16")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    peak, weights = map(int, done.stdout.split()[-2:])
    assert weights > 80e6 and peak <= 1.1 * weights, (peak, weights)
