"""Peak resident memory of ZO training against inference alone and a first-order AdamW step, as ratios.

Each workload runs in its own process on the default model at batch 16. The process loads the model, resets
the kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux), runs the workload, and reads the peak
(``VmHWM``), so loading's transient copies do not count and every figure includes the weights:

- ``inference``: forward passes of the training loss (what a ZO step runs), no gradients;
- ``<method>``: ``--steps`` ZO steps of that zotune method (in-place perturbation, the fp32 default, the method's
  own directions; ``-rademacher``: Rademacher directions);
- ``adamw``: ``--steps`` first-order steps, loss.backward() and torch.optim.AdamW over every weight.

    python benchmarks/memory.py --steps 3
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

METHODS = ["mezo", "mezo-rademacher", "adalezo", "dizo", "zo-finetuner", "ldsd", "fzoo", "lozo", "zo-muon"]
WORKLOADS = ["inference", *METHODS, "adamw"]


def _status_kib(field: str) -> int:
    """A KiB figure of /proc/self/status: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(workload: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one workload in this process and return its peak and baseline RSS in MiB."""
    import torch
    from common import fixed_batch

    from zotune import ZOOptimizer
    from zotune.tasks import candidate_scores, classification_loss

    model, tokenizer, batch, labels = fixed_batch(args.model, args.batch_size)

    def loss():
        return classification_loss(candidate_scores(model, batch, tokenizer.pad_token_id), labels)

    gc.collect()
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    if workload == "inference":
        with torch.no_grad():
            for _ in range(2 * args.steps):
                loss()
    elif workload in METHODS:
        method = workload.removesuffix("-rademacher")
        noise = {"noise": "rademacher"} if method != workload else {}
        opt = ZOOptimizer(model, method, lr=1e-6, eps=1e-3, seed=0, perturbation="in_place", **noise)
        for _ in range(args.steps):
            opt.step(loss)
    elif workload == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        for _ in range(args.steps):
            opt.zero_grad(set_to_none=True)
            scores = candidate_scores(model, batch, tokenizer.pad_token_id, grad=True)  # builds the autograd graph
            classification_loss(scores, labels).backward()
            opt.step()
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return {"peak_mib": _status_kib("VmHWM") / 1024, "weights_and_runtime_mib": baseline / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS)
    parser.add_argument("--one", choices=WORKLOADS, help=argparse.SUPPRESS)  # internal: run one, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("memory.py needs Linux's /proc/self/clear_refs to reset the peak-RSS counter")
    results, failures = {}, []
    for workload in args.workloads:
        command = [sys.executable, __file__, "--one", workload, "--model", args.model,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode:  # the others still run and print: a failure costs one row, not the table
            failures.append(f"{workload} failed:\n{run.stderr[-2000:]}")
            continue
        results[workload] = json.loads(run.stdout.strip().splitlines()[-1])
    base = results.get("inference")
    print(f"{args.model}, batch {args.batch_size}, {args.steps} steps; peak RSS after loading the model "
          f"(weights included)")
    print("| workload | peak RSS (MiB) | vs inference |")
    print("|---|---|---|")
    for workload, r in results.items():
        ratio = f"{r['peak_mib'] / base['peak_mib']:.3f}" if base else ""
        print(f"| {workload} | {r['peak_mib']:.0f} | {ratio} |")
    if failures:
        sys.exit("\n".join(failures))


if __name__ == "__main__":
    main()
