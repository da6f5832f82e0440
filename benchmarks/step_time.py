"""Step time of ZO methods against two forward passes and a reference MeZO step, with a per-phase breakdown.

A ZO step cannot be faster than its forward passes; the rest (drawing z, perturbing, restoring, updating) is
overhead. On the default model at batch 16 (same batch throughout), the script times, as medians over --repeats:

- two forward passes alone (the floor of a two-point step);
- a reference MeZO step written the way MeZO's public code does it: the global RNG reseeded before each of the
  four passes over the weights (+eps, -2 eps, +eps, update), ``torch.normal`` per tensor, restore and update
  separate;
- zotune's ``mezo`` (in-place and deferred perturbation, Gaussian and Rademacher directions), ``adalezo``,
  ``dizo``, ``zo-finetuner`` (the shipped controller), ``ldsd``, ``fzoo``, ``lozo`` and ``zo-muon``, each with the
  optimizer's own breakdown (forward, perturb, update, other); each is compared with as many forward passes as
  its step takes.

Ratios are printed against the floor of each step's own forward passes and against the reference step. When the
``mezo`` package from PyPI is importable (``pip install --no-deps mezo==0.0.1``: its declared pins want
transformers < 5, its code does not), its ``mezo.update`` step is timed too, as a third-party peer.

    python benchmarks/step_time.py --repeats 5
    python benchmarks/step_time.py --dtype bfloat16     # bf16 weights; the floor is two bf16 forward passes
    python benchmarks/step_time.py --autocast bfloat16  # fp32 weights, bf16 forward passes (zotune train --autocast)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from common import fixed_batch

from zotune import ZOOptimizer
from zotune.errors import ZotuneWarning
from zotune.tasks import candidate_scores, classification_loss
from zotune.train.precision import forward_precision

# The default noise is gaussian16 (a table read a value); "gaussian" (the inverse-CDF transform, the default before
# zotune 0.3.0) and "torch-gaussian" (torch's serial normal_, the stream of seed logs before version 2) are timed
# beside it.
CONFIGS = [("mezo", {"perturbation": "in_place"}), ("mezo", {"perturbation": "deferred"}),
           ("mezo", {"noise": "gaussian"}), ("mezo", {"noise": "torch-gaussian"}), ("mezo", {"noise": "rademacher"}),
           ("adalezo", {}), ("adalezo", {"noise": "rademacher"}), ("dizo", {}), ("zo-finetuner", {}), ("ldsd", {}),
           ("fzoo", {}), ("lozo", {}), ("zo-muon", {})]


def reference_mezo_step(params: list[torch.Tensor], closure, seed: int, eps: float, lr: float) -> None:
    """MeZO's public code: four seeded passes, one torch.normal per tensor each time, no fusion."""

    def perturb(scale: float) -> None:
        torch.manual_seed(seed)
        for param in params:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            param.data = param.data + scale * z * eps

    with torch.no_grad():
        perturb(1)
        loss_plus = float(closure())
        perturb(-2)
        loss_minus = float(closure())
        perturb(1)
        grad = (loss_plus - loss_minus) / (2 * eps)
        torch.manual_seed(seed)
        for param in params:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            param.data = param.data - lr * grad * z


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="the weights' dtype; the floor is then two forward passes in it")
    parser.add_argument("--autocast", choices=("bfloat16", "float16"),
                        help="forward passes under torch.autocast in this dtype over float32 weights; the floor is "
                             "then two such forward passes")
    parser.add_argument("--methods", help="comma-separated: time only these zotune methods (default: all rows)")
    args = parser.parse_args()
    chosen = set(args.methods.split(",")) if args.methods else None
    model, tokenizer, batch, labels = fixed_batch(args.model, args.batch_size, args.dtype)

    def closure():
        with forward_precision(model, args.autocast):
            return classification_loss(candidate_scores(model, batch, tokenizer.pad_token_id), labels)

    with torch.no_grad():
        forward = median_seconds(closure, args.repeats * 2)
    params = [p for p in model.parameters() if p.requires_grad]
    seeds = iter(range(10**6))
    reference = median_seconds(lambda: reference_mezo_step(params, closure, next(seeds), args.eps, args.lr),
                               args.repeats)
    precision = args.dtype + (f" under autocast to {args.autocast}" if args.autocast else "")
    print(f"{args.model} in {precision}, batch {args.batch_size}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} steps (forward pass: {forward:.3f} s)")
    print("| step | s/step | vs its forward passes | vs reference MeZO | forward | perturb | update | other |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| two forward passes ({precision}) | {2 * forward:.3f} | 1.00 | {2 * forward / reference:.2f} | | | | |")
    print(f"| reference MeZO (public code) | {reference:.3f} | {reference / (2 * forward):.2f} | 1.00 | | | | |")
    try:
        import mezo as pypi_mezo
    except ImportError:
        print("| mezo (PyPI) | not installed: pip install --no-deps mezo==0.0.1 | | | | | | |")
    else:
        seconds = median_seconds(lambda: pypi_mezo.update(model, None, lambda m, _: closure(), args.eps, args.lr,
                                                          next(seeds)), args.repeats)
        print(f"| mezo 0.0.1 (PyPI) | {seconds:.3f} | {seconds / (2 * forward):.2f} | {seconds / reference:.2f} "
              f"| | | | |", flush=True)
    # A step's time does not depend on its lr: that the ZO Fine-tuner controller was meta-trained for another one
    # is beside the point here.
    warnings.filterwarnings("ignore", message="The ZO Fine-tuner controller", category=ZotuneWarning)
    for method, options in CONFIGS:
        if chosen is not None and method not in chosen:
            continue
        opt = ZOOptimizer(model, method, lr=args.lr, eps=args.eps, seed=0, **options)
        phases: list[dict[str, float]] = []

        def step(opt=opt, phases=phases):
            opt.step(closure)
            phases.append(opt.last_step_seconds)

        seconds = median_seconds(step, args.repeats)
        passes = opt.forward_passes / (args.repeats + 1)
        mean = {k: statistics.mean(p[k] for p in phases[1:]) for k in ("forward", "perturb", "update", "other")}
        label = f"zotune {method}" + (f" ({', '.join(map(str, options.values()))})" if options else "")
        print(f"| {label} | {seconds:.3f} | {seconds / (passes * forward):.2f} | {seconds / reference:.2f} | "
              + " | ".join(f"{mean[k]:.3f}" for k in ("forward", "perturb", "update", "other")) + " |", flush=True)
        opt.remove_hooks()


if __name__ == "__main__":
    main()
