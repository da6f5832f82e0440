"""The loss-curve plot written at the end of a run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_training", "plot_layer_draws", "pyplot"]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Training loss (raw and smoothed) against step, with dev accuracy on a second axis."""
    plt = pyplot()

    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    dev = [(0, r["dev_score"]) for r in records if r.get("kind") == "zero_shot" and "dev_score" in r]
    dev += [(r["step"], r["score"]) for r in records if r.get("kind") == "dev" and "score" in r]
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
        ax2.plot(*zip(*dev), "o-", color="tab:orange", label="dev metric")
        ax2.set_ylabel("dev metric (accuracy or F1)")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_layer_draws(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """A heat map of how often each layer (arm) was drawn per evaluation interval, as a share of the draws."""
    plt = pyplot()
    reports = [r for r in records if r.get("kind") == "sampler" and "draws" in r]
    arms = reports[-1]["arms"]
    shares = []
    for report in reports:
        total = sum(report["draws"]) or 1
        shares.append([d / total for d in report["draws"]])
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.18 * len(arms) + 1)))
    image = ax.imshow(list(map(list, zip(*shares))), aspect="auto", cmap="viridis", origin="lower",
                      extent=(0, len(reports), -0.5, len(arms) - 0.5))
    ax.set_xticks([i + 0.5 for i in range(len(reports))], [str(r["step"]) for r in reports])
    ax.set_yticks(range(len(arms)), arms, fontsize=6 if len(arms) > 16 else 8)
    ax.set_xlabel("evaluation interval ending at step")
    fig.colorbar(image, ax=ax, label="share of draws")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
