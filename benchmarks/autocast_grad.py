"""How far autocast's bf16 forward passes move a ZO step's projected gradient from its float32 value.

On one batch of the default task and the same directions (the optimizer's seed), the projected gradient
g = (L+ - L-) / (2 eps) is computed with float32 forward passes and under ``torch.autocast`` (float32 weights in
both, lr 0 so the weights stay put). A ZO estimate is already noisy across directions (g's spread over
directions is its signal-to-noise); what matters is whether bf16 rounding adds noise comparable to that spread.
Prints each direction's pair, their correlation, the RMS of the differences and the spread of g over directions.
No seconds are measured, so it may share the cores with other work.

    python benchmarks/autocast_grad.py --directions 16
"""

from __future__ import annotations

import argparse
import statistics

from common import fixed_batch

from zotune import ZOOptimizer
from zotune.tasks import candidate_scores, classification_loss
from zotune.train.precision import forward_precision


def projected_grads(model, closure, count: int, eps: float) -> list[float]:
    optimizer = ZOOptimizer(model, "mezo", lr=0.0, eps=eps, seed=0)
    grads = []
    for _ in range(count):
        optimizer.step(closure)
        grads.append(optimizer.last_probes[0].projected_grad)
    return grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--directions", type=int, default=16)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--autocast", default="bfloat16", choices=("bfloat16", "float16"))
    args = parser.parse_args()
    model, tokenizer, batch, labels = fixed_batch(args.model, args.batch_size, "float32")
    grads = {}
    for mode in (None, args.autocast):
        def closure(mode=mode):
            with forward_precision(model, mode):
                return classification_loss(candidate_scores(model, batch, tokenizer.pad_token_id), labels)

        grads[mode] = projected_grads(model, closure, args.directions, args.eps)
    exact, mixed = grads[None], grads[args.autocast]
    print(f"{args.model}, batch {args.batch_size}, eps {args.eps:g}: projected gradients of {args.directions} "
          f"directions in float32 and under autocast to {args.autocast}")
    print("| direction | float32 | autocast | difference |")
    print("|---|---|---|---|")
    for i, (a, b) in enumerate(zip(exact, mixed)):
        print(f"| {i} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    rms = statistics.fmean((b - a) ** 2 for a, b in zip(exact, mixed)) ** 0.5
    print(f"\ncorrelation {statistics.correlation(exact, mixed):.4f}; RMS difference {rms:.3f}; "
          f"spread of g over directions (std, float32) {statistics.stdev(exact):.3f}; "
          f"bf16 noise adds {rms ** 2 / statistics.variance(exact):.1%} to the estimate's variance")


if __name__ == "__main__":
    main()
