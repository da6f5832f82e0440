"""The counter-based Gaussian (``noise="gaussian"``): its transform checked over the 2^30 magnitudes it can draw,
and its speed in the perturbation engine beside torch's ``normal_`` (``torch-gaussian``), the 16-bit Gaussian
(``gaussian16``, a table read a value) and Rademacher signs.

- Accuracy: for every ``--stride``-th magnitude bit pattern, the compiled transform against the eager ops (they
  must agree bit for bit), against float64 ``torch.special.ndtri`` (the largest absolute error), and the moments
  E[z^2] and E[z^4] of the distribution (1 and 3 for N(0, 1)). ``--stride 1`` reads all 2^30 (minutes).
- The 16-bit Gaussian's moments over its 65,536 equally likely values (exact: E[z^2] = 1, E[z^4] a little under 3,
  its tail stopping at 4.39).
- Speed: values a second added to ``--weights`` float32 weights in blocks of 884,736 (SmolLM2-135M's MLP
  matrices), through the engine as a step adds them, best of ``--repeats``. Time it on a quiet machine.

    python benchmarks/gaussian_stream.py --stride 61
"""

from __future__ import annotations

import argparse
import time

import torch

from zotune.perturb import PerturbationEngine
from zotune.perturb.normal import standard_normal, standard_normal16
from zotune.train.machine import cpu_info

NOISES = ("torch-gaussian", "gaussian", "gaussian16", "rademacher")
BLOCK = 576 * 1536
STEP_WEIGHTS = 134_515_008  # SmolLM2-135M-Instruct's parameters, all perturbed by a full-model MeZO step


def accuracy(stride: int) -> dict[str, float]:
    compiled = torch.compile(standard_normal, dynamic=True)
    span = 1 << 24
    mismatches, worst, second, fourth, count = 0, 0.0, 0.0, 0.0, 0
    for low in range(0, 1 << 30, span):
        bits = torch.arange(low, low + span, stride, dtype=torch.int32)  # sign bit 0: the magnitudes
        z = compiled(bits)
        mismatches += int((z != standard_normal(bits)).sum())
        v = (2 * bits.double() + 1) / 2.0**32
        worst = max(worst, float((z.double() + torch.special.ndtri(v)).abs().max()))
        second += float((z.double() ** 2).sum())
        fourth += float((z.double() ** 4).sum())
        count += bits.numel()
    return {"values": count, "compiled != eager": mismatches, "max |z - exact|": worst,
            "E[z^2]": second / count, "E[z^4]": fourth / count}


def moments16() -> dict[str, float]:
    z = standard_normal16(torch.arange(0, 1 << 32, 1 << 16, dtype=torch.int64).to(torch.int32)).double()
    return {"gaussian16 values": z.numel(), "gaussian16 E[z^2]": float(z.square().mean()),
            "gaussian16 E[z^4]": float(z.pow(4).mean()), "gaussian16 max |z|": float(z.abs().max())}


def speed(weights: int, repeats: int) -> dict[str, float]:
    params = [(f"w{i}", torch.zeros(BLOCK)) for i in range(max(1, weights // BLOCK))]
    numel = sum(p.numel() for _, p in params)
    rates = {}
    for noise in NOISES:
        engine = PerturbationEngine(params, direction=noise)
        engine.apply_combinations([(b, [(0, 1e-3)], 1.0) for b in engine.blocks])  # compiles, starts threads
        best = float("inf")
        for seed in range(1, repeats + 1):
            started = time.perf_counter()
            engine.apply_combinations([(b, [(seed, 1e-3)], 1.0) for b in engine.blocks])
            best = min(best, time.perf_counter() - started)
        engine.close()
        rates[noise] = numel / best / 1e6
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=61, help="check every stride-th magnitude (1: all 2^30)")
    parser.add_argument("--weights", type=int, default=53_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{cpu_info()['cpu_model']}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for key, value in {**accuracy(args.stride), **moments16()}.items():
        print(f"  {key}: {value:.9g}" if isinstance(value, float) else f"  {key}: {value}")
    rates = speed(args.weights, args.repeats)
    for noise, rate in rates.items():
        # A MeZO step draws z three times (+eps z, -2 eps z, then the restore and the update in one pass).
        step_draws = 3 * STEP_WEIGHTS / (rate * 1e6)
        print(f"  {noise}: {rate:,.0f} M values/s ({rate / rates['torch-gaussian']:.2f}x torch-gaussian); "
              f"a MeZO step's three draws over SmolLM2-135M's weights: {step_draws:.3f} s")
    threads = torch.get_num_threads()
    for noise, what in (("gaussian", "the Gaussian transform"), ("gaussian16", "the 16-bit Gaussian's table read")):
        extra = threads * (1e3 / rates[noise] - 1e3 / rates["rademacher"])
        print(f"  {what} beyond the hash and the add: {extra:.2f} ns a value a thread")


if __name__ == "__main__":
    main()
