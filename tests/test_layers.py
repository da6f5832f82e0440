"""The package's layers (docs/architecture.md): every module imports zotune only from its own layer or those
above it, so the dependency graph has no cycles and a layer can be read without the ones below."""

import ast
from pathlib import Path

import zotune

SRC = Path(zotune.__file__).parent
# Top to bottom; a module may import from its own row or an earlier one.
LAYERS = [
    {"errors", "settings", "registry", "recipes"},
    {"files"},
    {"perturb"},
    {"methods"},
    {"optim"},
    {"assets", "tasks"},
    {"integrations", "trainer"},
    {"train"},
    {"bench", "commands", "cli", "__main__", "__init__"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _is_recipe(relative: Path) -> bool:
    """A plug-in's recipe (``methods/<name>/recipe.py``, ``zotune.recipes``) is built from the training components,
    so it belongs to the training layer, whatever folder it sits in."""
    return relative.parts[0] == "methods" and relative.name == "recipe.py"


def _zotune_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "zotune":
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else node.names[0].name)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("zotune."))
    return found


def test_every_module_belongs_to_a_layer_and_imports_only_upwards():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        top = "train" if _is_recipe(relative) else relative.parts[0].removesuffix(".py")
        for imported in _zotune_imports(path):
            if imported == "__version__":
                continue
            if _layer(imported) > _layer(top):
                wrong.append(f"{relative} imports zotune.{imported}")
    assert not wrong, wrong


def test_only_the_command_line_and_deprecated_aliases_import_a_recipe():
    """A recipe is imported by its registered path (``zotune.recipes``), never by a module: the method's own
    modules sit below the training layer the recipe is built on."""
    importers = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(name.endswith(".recipe") for name in names):
                importers.append(str(path.relative_to(SRC)))
    assert importers == ["train/meta_train.py"], importers
