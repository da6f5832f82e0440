"""The table of every method (with its sampler) that the generic method tests run over
(tests/methods/test_generic.py): a new method gets those tests by adding a row here.

Each case trains on a small quadratic over tensors named like a LLaMA model (so AdaLeZO finds layers, DiZO its
k and v projections, ZO Fine-tuner its blocks), with options that make the method do its own work within a few
steps (a DiZO projection round every 2 steps, LDSD's policy learning, a ZO Fine-tuner controller whose sigmas
differ between blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zotune import ZOOptimizer

LAYERS, WIDTH = 3, 2
UPDATE_RULES = {"sgd": 0.003, "momentum": 0.001, "sign": 0.03, "cons": 0.003, "adam": 0.03}  # rule -> its lr
FZOO_LRS = {"sgd": 3e-5, "momentum": 3e-6, "cons": 3e-5}


@dataclass(frozen=True)
class MethodCase:
    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    sampler: str | None = None
    noise: str = "gaussian"
    controller: bool = False  # ZO Fine-tuner: write a controller for the problem's tensors first
    # Learning rates of the rules whose step scales with the estimate (FZOO's normalised estimate is about
    # 1/eps larger than a gradient), where they differ from UPDATE_RULES'.
    lrs: dict[str, float] = field(default_factory=dict)
    # The update rules the method composes with (None: every one); it refuses the others at construction.
    updates: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return self.label


CASES = [
    MethodCase("mezo", "mezo"),
    MethodCase("mezo-rademacher", "mezo", noise="rademacher"),
    MethodCase("adalezo", "adalezo", {"sample_fraction": 0.5}),
    MethodCase("dizo", "dizo", {"interval": 2, "probes": 2}),
    MethodCase("dizo+adalezo", "dizo", {"interval": 2, "probes": 2, "sample_fraction": 0.5}, sampler="adalezo"),
    MethodCase("ldsd", "ldsd", {"candidates": 3, "lr_mu": 0.01}),
    MethodCase("zo-finetuner", "zo-finetuner", controller=True),
    MethodCase("lozo", "lozo", {"rank": 1, "interval": 2}),
    MethodCase("lozo-m", "lozo", {"rank": 1, "interval": 2, "beta": 0.9}, updates=("sgd",)),
    MethodCase("fzoo", "fzoo", {"perturbations": 3}, lrs=FZOO_LRS),
    MethodCase("fzoo+adalezo", "fzoo", {"perturbations": 3, "sample_fraction": 0.5}, sampler="adalezo",
               lrs=FZOO_LRS),
    # The orthogonalised step moves each matrix by lr whatever the estimate's size; norm scales by vector_lr.
    MethodCase("zo-muon", "zo-muon", {"perturbations": 3, "interval": 2, "vector_lr": 1e-3}, updates=("sgd",),
               lrs={"sgd": 0.01}),
    MethodCase("zo-muon-subspace", "zo-muon", {"perturbations": 2, "rank": 1, "interval": 2,
                                              "orthogonalize": False}),
]


class LayeredModel(torch.nn.Module):
    """Tensors named like a LLaMA model's (``model.layers.0.self_attn.k_proj.weight``, ...), without a forward:
    the loss reads them directly."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        names = ["model.embed_tokens.weight"]
        for i in range(LAYERS):
            names += [f"model.layers.{i}.self_attn.{p}_proj.weight" for p in "qkv"]
            names.append(f"model.layers.{i}.input_layernorm.weight")
        for name in names:
            *path, leaf = name.split(".")
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, torch.nn.Module())
                module = getattr(module, part)
            shape = (WIDTH,) if "norm" in name else (WIDTH, WIDTH)
            module.register_parameter(leaf, torch.nn.Parameter(torch.randn(shape, generator=g)))


def named_params(seed: int = 0) -> list[tuple[str, torch.nn.Parameter]]:
    return list(LayeredModel(seed).named_parameters())


def quadratic(named, seed: int = 0):
    """A positive-definite quadratic with its minimum away from the start, and fresh 'batches' (DiZO's probes)
    that shift it slightly."""
    g = torch.Generator().manual_seed(seed + 1)
    centers = [p.detach().clone() + 0.5 for _, p in named]
    scales = [torch.rand(p.shape, generator=g) + 0.5 for _, p in named]

    def loss() -> float:
        return float(sum(((p.detach() - c) ** 2 * w).sum() for (_, p), c, w in zip(named, centers, scales)))

    def fresh(j: int):
        return lambda: loss() + 0.01 * j

    return loss, fresh


def _controller(named, folder: Path) -> str:
    from zotune.methods.zo_finetuner.controller import ControllerBank

    path = folder / "controller.safetensors"
    if not path.exists():
        shapes = {n: tuple(p.shape) for n, p in named}
        bank = ControllerBank(shapes, generator=torch.Generator().manual_seed(3), metadata={"base_model": "db"})
        with torch.no_grad():  # sigmas that differ between blocks
            bank.w2.normal_(generator=torch.Generator().manual_seed(3), std=2.0)
        bank.save(path)
    return str(path)


def build(case: MethodCase, named, folder: Path, **settings: Any) -> ZOOptimizer:
    options = dict(case.options)
    if case.controller:
        options["controller"] = _controller(named, folder)
    options.update(settings.pop("method_options", {}))
    settings = {"lr": 0.01, "eps": 1e-3, "seed": 3, **settings}
    return ZOOptimizer(named, case.method, sampler=case.sampler, noise=case.noise,
                       method_options=options, **settings)


def weights(named) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for _, p in named])
