"""Size of a seed log per 1,000 steps for each method, and a bitwise check of its replay.

A seed log line holds a step's seed, learning rate, loss values and projected gradients, plus the sampled blocks
for AdaLeZO: its size depends on the method and on the number of layers, not on the width of the model. The
script therefore trains a narrow model with the default model's layout (SmolLM2-135M: 30 layers of 9 tensors,
tied embeddings) on random tokens, writes the log as `zotune train` does, replays it onto the initial weights,
and prints the bytes per 1,000 steps and whether the replayed weights are bitwise equal to the trained ones.

    python benchmarks/seed_log_size.py --steps 1000
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from zotune import ZOOptimizer
from zotune.train.replay import replay
from zotune.train.seedlog import SeedLogWriter, read_seed_log

METHODS = {"mezo": {}, "adalezo": {}, "dizo": {}, "ldsd": {}}


def _model(layers: int) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=30, help="as SmolLM2-135M")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    base = _model(args.layers)
    ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
    print(f"{args.layers}-layer LLaMA layout, {args.steps} steps, lr {args.lr}, eps 1e-3, default method options")
    print("| method | forward passes/step | seed log KiB per 1,000 steps | bytes/step | replay bitwise equal |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for method, options in METHODS.items():
            model = copy.deepcopy(base)
            opt = ZOOptimizer(model, method, lr=args.lr, eps=1e-3, method_options=options)
            path = Path(tmp) / f"{method}.jsonl"
            log = SeedLogWriter(path, opt, model, model_name="narrow", dtype="float32")

            def loss(model=model):
                return model(input_ids=ids, labels=ids).loss

            for _ in range(args.steps):
                opt.step(loss, fresh_closure=lambda j, loss=loss: loss)
                log.append(opt.last_record)
            log.finish(args.steps)
            result = replay(read_seed_log(path), copy.deepcopy(base))
            size = path.stat().st_size
            print(f"| {method} | {opt.forward_passes / args.steps:.2f} | {size / 1024 * 1000 / args.steps:.1f} | "
                  f"{size / args.steps:.0f} | {result.matches_log} |", flush=True)


if __name__ == "__main__":
    main()
