"""ZO Fine-tuner: registers ``zo-finetuner`` (also found as ``zo_finetuner``), per-block perturbation scales from
a meta-trained controller."""

from zotune.methods.base import register_method
from zotune.methods.zo_finetuner.config import ZOFinetunerConfig
from zotune.methods.zo_finetuner.controller import ControllerBank
from zotune.methods.zo_finetuner.method import ZOFinetuner
from zotune.recipes import register_recipe

__all__ = ["ZOFinetuner", "ZOFinetunerConfig", "ControllerBank"]

# lr: the sweep's choice (configs/bench/lr-sweep.yaml, docs/results.md): 1e-5 beat 3e-5.
register_method("zo-finetuner", config_cls=ZOFinetunerConfig, method_cls=ZOFinetuner, lr=1e-5)
# `zotune meta-train`: the recipe that makes a controller (recipe.py, imported by the command line only).
register_recipe("meta-train", "zotune.methods.zo_finetuner.recipe",
                help="meta-train a ZO Fine-tuner controller for a model on one task")
