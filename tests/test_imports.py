"""Every import path the documentation shows resolves, and the first release's path still works."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
_IMPORT = re.compile(r"^\s*from (zotune[\w.]*) import ([\w, ]+)|^\s*import (zotune[\w.]*)", re.MULTILINE)


def _documented_imports():
    found = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for module, names, plain in _IMPORT.findall(path.read_text(encoding="utf-8")):
            if plain:
                found.add((plain, ""))
            for name in filter(None, (n.strip() for n in names.split(","))):
                found.add((module, name))
    return sorted(found)


def test_the_docs_show_imports():
    assert len(_documented_imports()) >= 10  # the pattern still finds the README's and the docs' examples


@pytest.mark.parametrize("module, name", _documented_imports())
def test_every_documented_import_resolves(module, name):
    imported = importlib.import_module(module)
    assert not name or hasattr(imported, name), f"{module} has no {name}"


def test_the_first_releases_trainer_path_is_an_alias_with_a_deprecation_warning():
    import sys

    sys.modules.pop("zotune.trainer", None)
    with pytest.warns(FutureWarning, match="from zotune import ZOTrainer"):
        from zotune.trainer import ZOTrainer, ZOTrainingArguments
    from zotune.integrations import trainer

    assert ZOTrainer is trainer.ZOTrainer and ZOTrainingArguments is trainer.ZOTrainingArguments


def test_the_meta_training_module_moved_with_an_alias_that_warns():
    import sys

    sys.modules.pop("zotune.train.meta_train", None)
    with pytest.warns(FutureWarning, match="moved to zotune.methods.zo_finetuner.recipe"):
        from zotune.train.meta_train import meta_train
    from zotune.methods.zo_finetuner import recipe

    assert meta_train is recipe.meta_train
