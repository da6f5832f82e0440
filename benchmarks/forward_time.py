"""One forward pass of the training loss in each precision, timed in one process: fp32 weights, fp32 weights under
``torch.autocast`` to bf16 (``zotune train --autocast bfloat16``), and bf16 weights (``--dtype bfloat16``).

The floor of a two-point ZO step is two of these. Whether bf16 pays depends on the hardware: on a CPU with bf16
matrix units (``amx_bf16``/``avx512_bf16`` in ``lscpu``) or a GPU it is the fast path; without them bf16 is
emulated and slower than fp32. Prints the CPU's bf16 flags, medians and ratios to fp32.

    python benchmarks/forward_time.py --repeats 7
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from common import fixed_batch
from step_time import median_seconds

from zotune.tasks import candidate_scores, classification_loss
from zotune.train.precision import forward_precision


def bf16_flags() -> str:
    """The CPU's bf16 instruction flags from /proc/cpuinfo (Linux), or what is known instead."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return f"unknown ({platform.machine()})"
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return ", ".join(found) or "none (bf16 is emulated)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    model, tokenizer, batch, labels = fixed_batch(args.model, args.batch_size)

    def forward(autocast=None):
        with forward_precision(model, autocast):
            return classification_loss(candidate_scores(model, batch, tokenizer.pad_token_id), labels)

    fp32 = median_seconds(forward, args.repeats)
    autocast = median_seconds(lambda: forward("bfloat16"), args.repeats)
    model.to(torch.bfloat16)
    bf16 = median_seconds(forward, args.repeats)
    print(f"{args.model}, batch {args.batch_size}, {torch.get_num_threads()} threads, median of {args.repeats}; "
          f"CPU bf16 flags: {bf16_flags()}")
    print("| forward pass | seconds | vs fp32 |\n|---|---|---|")
    for label, seconds in (("fp32 weights", fp32), ("fp32 weights, autocast to bf16", autocast),
                           ("bf16 weights", bf16)):
        print(f"| {label} | {seconds:.3f} | {seconds / fp32:.2f} |")


if __name__ == "__main__":
    main()
