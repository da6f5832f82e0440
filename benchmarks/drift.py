"""Weight drift of +-eps perturbation at learning rate 0, per dtype, in-place against deferred.

At lr 0 a ZO step must leave the weights exactly where they were; whatever moves is rounding from perturbing
and restoring in place. The script takes the first --layers transformer layers of the model (real weights; the
embedding and head stay frozen so a step is cheap), runs --steps steps at lr 0 on a batch of real text, in
fp32, bf16 and fp16, with in-place perturbation (MeZO's) and with deferred perturbation (zotune's default for
low precision), and prints the drift: the largest change of any weight, the relative norm of the change, and
the share of weights that changed, each in the run's own dtype.

    python benchmarks/drift.py --steps 1000
"""

from __future__ import annotations

import argparse
import time

import torch

from zotune import ZOOptimizer
from zotune.assets import load_model
from zotune.tasks import TASKS, load_splits

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _truncated_model(name: str, layers: int, dtype: str):
    model, tokenizer = load_model(name, dtype=dtype)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    for pname, param in model.named_parameters():
        param.requires_grad_(".layers." in pname)
    return model, tokenizer


def measure(args, dtype: str, mode: str, ids: torch.Tensor) -> dict[str, float]:
    model, _ = _truncated_model(args.model, args.layers, dtype)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in trainable}
    opt = ZOOptimizer(model, lr=0.0, eps=args.eps, seed=args.seed, perturbation=mode)

    def closure():
        return model(input_ids=ids, labels=ids).loss

    start = time.perf_counter()
    for _ in range(args.steps):
        opt.step(closure)
    seconds = time.perf_counter() - start
    changed = total = 0
    max_abs = diff_sq = norm_sq = 0.0
    for name, param in trainable:
        delta = param.detach().float() - before[name].float()
        changed += int((delta != 0).sum())
        total += delta.numel()
        max_abs = max(max_abs, float(delta.abs().max()))
        diff_sq += float(delta.pow(2).sum())
        norm_sq += float(before[name].float().pow(2).sum())
    return {"max_abs": max_abs, "relative": (diff_sq / norm_sq) ** 0.5, "changed": changed / total,
            "s_per_step": seconds / args.steps, "params": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers kept (and trained)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    _, tokenizer = load_model(args.model)
    rows = load_splits(TASKS.get("rotten_tomatoes"))["train"][: args.batch_size]
    ids = tokenizer([r["text"] for r in rows], return_tensors="pt", padding="max_length", truncation=True,
                    max_length=args.tokens)["input_ids"]
    print(f"{args.model}, first {args.layers} layers trained, {args.steps} steps at lr 0, eps {args.eps}, "
          f"batch {args.batch_size}x{args.tokens} tokens, {torch.get_num_threads()} threads")
    print("| dtype | perturbation | max abs drift | relative drift (norm) | weights changed | s/step |")
    print("|---|---|---|---|---|---|")
    for dtype in DTYPES:
        for mode in ("in_place", "deferred"):
            r = measure(args, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype], mode, ids)
            print(f"| {dtype} | {mode} | {r['max_abs']:.3g} | {r['relative']:.3g} | {100 * r['changed']:.2f}% "
                  f"| {r['s_per_step']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
