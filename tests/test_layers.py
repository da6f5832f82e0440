"""The package's layers (docs/architecture.md): every module imports zotune only from its own layer or those
above it, so the dependency graph has no cycles and a layer can be read without the ones below."""

import ast
from pathlib import Path

import zotune

SRC = Path(zotune.__file__).parent
# Top to bottom; a module may import from its own row or an earlier one.
LAYERS = [
    {"errors", "settings", "registry"},
    {"files"},
    {"perturb"},
    {"methods"},
    {"optim"},
    {"assets", "tasks"},
    {"integrations", "trainer"},
    {"train"},
    {"bench", "cli", "__main__", "__init__"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


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
        top = relative.parts[0].removesuffix(".py")
        for imported in _zotune_imports(path):
            if imported == "__version__":
                continue
            if _layer(imported) > _layer(top):
                wrong.append(f"{relative} imports zotune.{imported}")
    assert not wrong, wrong
