"""The loss-curve plot written at the end of a run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_training"]


def plot_training(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Training loss (raw and smoothed) against step, with dev accuracy on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    dev = [(0, r["dev_accuracy"]) for r in records if r.get("kind") == "zero_shot" and "dev_accuracy" in r]
    dev += [(r["step"], r["accuracy"]) for r in records if r.get("kind") == "dev"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, label="train loss")
        smoothed, value = [], losses[0]
        for loss in losses:
            value = 0.9 * value + 0.1 * loss
            smoothed.append(value)
        ax.plot(steps, smoothed, color="tab:blue", label="train loss (EMA 0.9)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev), "o-", color="tab:orange", label="dev accuracy")
        ax2.set_ylabel("dev accuracy")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
