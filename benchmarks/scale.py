"""Which models this machine can fine-tune, and with what: LLaMA-shaped models at real sizes, random weights.

For each shape (SmolLM2-135M, -360M, -1.7B, Llama-3.2-1B, -3B, Llama-3-8B), a folder of random bf16 weights is
written once (sharded safetensors; their values change neither memory nor time), then each approach runs in its
own process at batch 16 x 64 tokens: inference (fp32, and bf16 weights), zotune MeZO (fp32 in place, bf16 weights
deferred, fp32 under bf16 autocast, fp32 weights offloaded to memory-mapped files with ``--offload disk``) and the
backpropagation a user would otherwise run (AdamW in fp32, AdamW with gradient checkpointing, LoRA through peft).
The child reports its peak RSS (VmHWM) and seconds a step; the parent kills it if its RSS passes the cap. An
approach runs at every size up to the first one it does not fit (killed at the cap, or by the system), so each
boundary is measured, not taken from the plan; with ``--skip-by-plan`` an approach whose plan (``zotune plan``) is
over the cap is not run at all (quicker, estimated). It prints, per row, the plan beside the measurement, and the
largest model each approach trained.

    python benchmarks/scale.py --folder /tmp/zotune-scale --shapes smollm2-135m smollm2-360m --cap-gb 22
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {  # LlamaConfig fields of each published model
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "smollm2-360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                         num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=49152, tie_word_embeddings=True),
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}
APPROACHES = ["inference", "inference-bf16", "mezo-fp32", "mezo-bf16", "mezo-autocast", "mezo-offload", "adamw",
              "adamw-checkpointing", "lora"]
PLAN_ROW = {"inference": "inference (fp32)", "mezo-fp32": "zotune MeZO, fp32",
            "mezo-bf16": "zotune MeZO, bf16 weights", "mezo-autocast": "zotune MeZO, fp32 + bf16 autocast",
            "adamw": "AdamW backprop (fp32)", "adamw-checkpointing": "AdamW + gradient checkpointing",
            "lora": "LoRA backprop (fp32 base)"}
# --offload disk keeps fp32 weights in memory-mapped files: the kernel keeps as many of their pages resident as
# memory allows and drops them under pressure, so VmRSS (and VmHWM) count reclaimable page cache. Its row reports,
# and its cap watches, the process's anonymous memory (RssAnon), which is what it needs; the plan has no row for it.
ANONYMOUS_ONLY = {"mezo-offload"}


def write_model(folder: Path, shape: dict) -> None:
    """config.json, a word-level tokenizer, and random bf16 weights in shards of about 1 GB (never all in memory)."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**shape, max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         torch_dtype="bfloat16")
    vocab = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, **{f"w{i}": i for i in range(3, 1000)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[PAD]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", bos_token="[BOS]",
                            eos_token="[EOS]").save_pretrained(folder)
    with torch.device("meta"):
        names = {name: tuple(p.shape) for name, p in LlamaForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    shard, size, index, number = {}, 0, {}, 0

    def flush():
        nonlocal shard, size, number
        if shard:
            number += 1
            save_file(shard, str(folder / f"model-{number:05d}.safetensors"), metadata={"format": "pt"})
            index.update({name: f"model-{number:05d}.safetensors" for name in shard})
            shard, size = {}, 0

    for name, dims in names.items():
        if config.tie_word_embeddings and name == "lm_head.weight":
            continue
        if "norm" in name:
            tensor = torch.ones(dims, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(dims, generator=generator) * 0.02).to(torch.bfloat16)
        shard[name] = tensor
        size += tensor.numel() * 2
        if size > 1e9:
            flush()
    flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    config.save_pretrained(folder)


def child(approach: str, folder: str, batch: int, tokens: int, steps: int) -> dict:
    """Run one approach in this process; return its peak RSS and seconds a step."""
    import torch

    from zotune import ZOOptimizer
    from zotune.assets import load_model
    from zotune.train.precision import forward_precision

    dtype = "bfloat16" if approach in ("mezo-bf16", "inference-bf16") else "float32"
    offload = Path(folder).parent / f"{Path(folder).name}-offload" if approach == "mezo-offload" else None
    model, _ = load_model(folder, dtype=dtype, offload_to=offload)
    if not offload:
        # A bf16 checkpoint loads memory-mapped, each page read when first used; a forward pass over this file's
        # 1,000-word vocabulary would read 1,000 of the embedding's rows (of 128,256 at 8B). A served model holds
        # all its weights, and a fine-tuning step writes every row: every approach starts with them in memory.
        with torch.no_grad():
            for param in model.parameters():
                param.view(-1)[:: 4096 // param.element_size()].sum()
    anonymous = [_status_kb("RssAnon")]
    ids = torch.randint(3, 1000, (batch, tokens), generator=torch.Generator().manual_seed(0))
    autocast = "bfloat16" if approach == "mezo-autocast" else None

    def loss():
        with forward_precision(model, autocast):
            return model(input_ids=ids, labels=ids).loss.float()

    if approach == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    if approach == "adamw-checkpointing":
        model.gradient_checkpointing_enable()
        model.train()
    if approach.startswith("mezo"):
        opt = ZOOptimizer(model, lr=1e-7, perturbation="deferred" if offload else "auto")

        def step():
            opt.step(loss)
            anonymous.append(_status_kb("RssAnon"))
    elif approach.startswith("inference"):
        def step():
            with torch.no_grad():
                loss()
    else:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()
    step()  # the first step allocates what the others reuse
    started = time.perf_counter()
    for _ in range(steps - 1):
        step()
    seconds = (time.perf_counter() - started) / max(steps - 1, 1)
    peak_kb = max(anonymous) if offload else _status_kb("VmHWM")
    if offload:
        import shutil

        del model, opt
        shutil.rmtree(offload, ignore_errors=True)
    return {"peak_gb": peak_kb * 1024 / 1e9, "seconds_per_step": seconds}


def _status_kb(field: str, pid: str = "self") -> int:
    """A memory figure of /proc/PID/status, in kB (0 if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), 0)


def run_capped(command: list[str], cap: float, *, anonymous: bool = False) -> dict | str:
    """Run the child; kill it once its RSS (``anonymous``: its RssAnon) passes ``cap`` bytes (before the machine
    swaps). Its stderr goes to a file: a pipe nobody reads would stall a child that warns a lot."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        while proc.poll() is None:
            rss = _status_kb("RssAnon" if anonymous else "VmRSS", str(proc.pid)) * 1024
            if rss > cap:
                proc.kill()
                proc.wait()
                return f"over the {cap / 1e9:g} GB cap"
            time.sleep(0.2)
        out = proc.stdout.read()
        proc.stdout.close()
        errors.seek(0)
        if proc.returncode == -signal.SIGKILL:
            return "killed by the system (out of memory)"
        if proc.returncode:
            return f"failed: {(errors.read().strip().splitlines() or ['?'])[-1][:80]}"
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="scale-models", help="where the random-weight folders are written")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--approaches", nargs="+", default=APPROACHES, choices=APPROACHES)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cap-gb", type=float, default=22.0)
    parser.add_argument("--skip-by-plan", action="store_true",
                        help="do not run an approach whose plan is over the cap (by default it runs, to be measured)")
    parser.add_argument("--child", nargs=2, metavar=("APPROACH", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.batch_size, args.tokens, args.steps)))
        return
    from zotune.train.machine import cpu_info
    from zotune.train.plan import plan_rows, read_shape

    cap, stopped, largest, peaks = args.cap_gb * 1e9, set(), {}, {}
    info = cpu_info()
    print(f"{info['cpu_model']} ({os.cpu_count()} CPUs, bf16: {', '.join(info['cpu_bf16']) or 'none'}); batch "
          f"{args.batch_size} x {args.tokens} tokens; cap {args.cap_gb:g} GB")
    print("| model | parameters | approach | plan | measured peak | seconds a step |")
    print("|---|---|---|---|---|---|")
    for name in args.shapes:
        folder = Path(args.folder) / name
        write_model(folder, SHAPES[name])
        shape = read_shape(str(folder))
        plan = {row.mode: row.bytes for row in plan_rows(shape, batch=args.batch_size, tokens=args.tokens)}
        for approach in args.approaches:
            planned = plan.get(PLAN_ROW.get(approach))
            shown = "-" if planned is None else f"{planned / 1e9:.1f} GB"
            if approach in stopped:
                result = "not run: it stopped at a smaller size"
            elif args.skip_by_plan and planned is not None and planned > cap:
                result = f"not run: the plan is over the {args.cap_gb:g} GB cap"
            else:
                result = run_capped([sys.executable, __file__, "--child", approach, str(folder), "--batch-size",
                                     str(args.batch_size), "--tokens", str(args.tokens), "--steps",
                                     str(args.steps)], cap, anonymous=approach in ANONYMOUS_ONLY)
            if isinstance(result, str):
                stopped.add(approach)
                print(f"| {name} | {shape.params / 1e9:.2f} B | {approach} | {shown} | {result} | |")
                continue
            largest[approach] = name
            peaks[name, approach] = result["peak_gb"]
            error = "" if planned is None else f" ({(planned / 1e9 - result['peak_gb']) / result['peak_gb']:+.0%})"
            kind = " anonymous" if approach in ANONYMOUS_ONLY else ""
            print(f"| {name} | {shape.params / 1e9:.2f} B | {approach} | {shown} | "
                  f"{result['peak_gb']:.1f} GB{kind}{error} | {result['seconds_per_step']:.1f} |", flush=True)
    print("\nlargest model trained: " + ", ".join(f"{a} {largest.get(a, 'none')}" for a in args.approaches))
    for name in args.shapes:
        for mezo, inference in (("mezo-fp32", "inference"), ("mezo-bf16", "inference-bf16")):
            if (name, mezo) in peaks and (name, inference) in peaks:
                print(f"{name}: {mezo} peak / {inference} peak = {peaks[name, mezo] / peaks[name, inference]:.3f}")


if __name__ == "__main__":
    main()
