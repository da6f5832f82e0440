"""What the benchmark scripts share: the flags of a run on the default model and task."""

from __future__ import annotations

import argparse


def run_parser(doc: str, *, steps: int = 100) -> argparse.ArgumentParser:
    """A parser with the model, data and optimizer flags every benchmark takes (defaults: the README's job)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the runs and results.json (default: a temporary folder)")
    return parser
