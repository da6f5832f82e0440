"""The memory plan: estimates from a model's config alone, and the up-front refusal of a run that cannot fit."""

import json

import pytest

from hostile import expect_one_line_error, train_args
from zotune.cli import main
from zotune.train import plan as memory_plan

# SmolLM2-135M's shape (the built-in, cached in float32), and the peaks measured for it at batch 16 x 64 tokens
# (ru_maxrss of a process that loads the model and takes two steps; 2026-12-06, AMD EPYC).
SMOLLM2 = memory_plan.ModelShape(params=134_515_008, largest=8_388_608, hidden=576, intermediate=1536, layers=30,
                                 vocab=49_152, kv_width=192)
MEASURED_GB = {"inference (fp32)": 1.408, "zotune MeZO, fp32": 1.454, "zotune MeZO, fp32 + bf16 autocast": 1.773,
               "zotune MeZO, bf16 weights": 1.274, "AdamW backprop (fp32)": 4.282,
               "AdamW + gradient checkpointing": 3.2, "LoRA backprop (fp32 base)": 3.1}

# The shapes of benchmarks/scale.py (random bf16 checkpoints; a deferred probe copies at most a group of 8 M values
# of their linear and embedding weights) and the peaks it measured for every approach that fitted in 22 GB
# (docs/scale.md; 2026-12-07, 2-core AMD EPYC, batch 16 x 64 tokens).
SCALE_SHAPES = {
    "smollm2-135m": memory_plan.ModelShape(134_515_008, 8_388_608, 576, 1536, 30, 49_152, 2, 192),
    "smollm2-360m": memory_plan.ModelShape(361_821_120, 8_388_608, 960, 2560, 32, 49_152, 2, 320),
    "llama-3.2-1b": memory_plan.ModelShape(1_235_814_400, 8_388_608, 2048, 8192, 16, 128_256, 2, 512),
    "smollm2-1.7b": memory_plan.ModelShape(1_711_376_384, 8_388_608, 2048, 8192, 24, 49_152, 2, 2048),
    "llama-3.2-3b": memory_plan.ModelShape(3_212_749_824, 8_388_608, 3072, 8192, 28, 128_256, 2, 1024),
    "llama-3-8b": memory_plan.ModelShape(8_030_261_248, 8_388_608, 4096, 14336, 32, 128_256, 2, 1024),
}
INFERENCE, MEZO_FP32, AUTOCAST, MEZO_BF16 = ("inference (fp32)", "zotune MeZO, fp32",
                                             "zotune MeZO, fp32 + bf16 autocast", "zotune MeZO, bf16 weights")
ADAMW, CHECKPOINTING, LORA = "AdamW backprop (fp32)", "AdamW + gradient checkpointing", "LoRA backprop (fp32 base)"
SCALE_MEASURED_GB = [
    ("smollm2-135m", INFERENCE, 1.5), ("smollm2-135m", MEZO_FP32, 1.5), ("smollm2-135m", AUTOCAST, 1.8),
    ("smollm2-135m", ADAMW, 4.4), ("smollm2-135m", CHECKPOINTING, 3.2), ("smollm2-135m", LORA, 3.0),
    ("smollm2-360m", INFERENCE, 2.5), ("smollm2-360m", MEZO_FP32, 2.6), ("smollm2-360m", AUTOCAST, 3.3),
    ("smollm2-360m", ADAMW, 8.5), ("smollm2-360m", CHECKPOINTING, 7.3), ("smollm2-360m", LORA, 5.2),
    ("llama-3.2-1b", INFERENCE, 7.8), ("llama-3.2-1b", MEZO_FP32, 7.8), ("llama-3.2-1b", AUTOCAST, 9.6),
    ("llama-3.2-1b", LORA, 10.4),
    ("smollm2-1.7b", INFERENCE, 10.6), ("smollm2-1.7b", MEZO_FP32, 10.6), ("smollm2-1.7b", AUTOCAST, 12.1),
    ("smollm2-1.7b", LORA, 14.5),
    ("llama-3.2-3b", INFERENCE, 17.3), ("llama-3.2-3b", MEZO_FP32, 19.6), ("llama-3.2-3b", AUTOCAST, 21.7),
    ("smollm2-135m", MEZO_BF16, 1.3), ("smollm2-360m", MEZO_BF16, 1.8), ("llama-3.2-1b", MEZO_BF16, 4.3),
    ("smollm2-1.7b", MEZO_BF16, 4.8), ("llama-3.2-3b", MEZO_BF16, 8.5), ("llama-3-8b", MEZO_BF16, 18.3),
]


def test_the_plan_is_within_15_percent_of_the_measured_peaks():
    rows = {row.mode: row.bytes / 1e9 for row in memory_plan.plan_rows(SMOLLM2, batch=16, tokens=64)}
    for mode, measured in MEASURED_GB.items():
        assert abs(rows[mode] - measured) / measured < 0.15, (mode, rows[mode], measured)
    assert rows["zotune MeZO, fp32"] <= 1.05 * rows["inference (fp32)"]


@pytest.mark.parametrize("name, mode, measured", SCALE_MEASURED_GB)
def test_the_plan_is_within_15_percent_of_every_measured_size(name, mode, measured):
    rows = {row.mode: row.bytes / 1e9 for row in memory_plan.plan_rows(SCALE_SHAPES[name], batch=16, tokens=64)}
    assert abs(rows[mode] - measured) / measured < 0.15, (rows[mode], measured)


def test_a_converting_load_counts_in_the_peak_and_not_in_what_fits():
    """A bf16 checkpoint loaded as float32 peaks with its files mapped (6 bytes a parameter, measured), but those
    pages are the system's to drop: whether a run fits counts the 4 bytes it keeps."""
    shape = SCALE_SHAPES["smollm2-1.7b"]
    fp32 = {row.mode: row for row in memory_plan.plan_rows(shape, batch=1, tokens=1)}[INFERENCE]
    assert fp32.bytes == pytest.approx(memory_plan.PROCESS_BYTES + 6 * shape.params, rel=0.01)
    assert fp32.needed == pytest.approx(memory_plan.PROCESS_BYTES + 4 * shape.params, rel=0.01)
    stored_fp32 = memory_plan.ModelShape(*[getattr(shape, f) for f in ("params", "largest", "hidden", "intermediate",
                                                                       "layers", "vocab")], stored_bytes=4)
    same = {row.mode: row for row in memory_plan.plan_rows(stored_fp32, batch=1, tokens=1)}[INFERENCE]
    assert same.bytes == same.needed == fp32.needed


def test_plan_reads_a_config_without_weights_and_says_what_fits(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "llama-8b-shape"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16"}))
    monkeypatch.setattr(memory_plan, "available_memory", lambda: 24 * 10**9)
    assert main(["plan", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "8,030 M parameters" in out
    assert "| zotune MeZO, bf16 weights | 18.28 GB | yes |" in out
    assert "| AdamW backprop (fp32) | 142.66 GB | no |" in out


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
