"""The module map of oskdft/__init__.py, enforced: nothing imports upward, scoring has no torch,
models and losses do no file I/O, the library parses no command lines."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oskdft"

# Which oskdft subpackages each one may import (itself always allowed).
ALLOWED = {
    "utils": set(),
    "config": {"utils"},
    "data": {"utils", "config"},
    "models": {"utils", "config"},
    "losses": {"utils", "config"},
    "scoring": {"utils", "config"},
    "cache": {"models", "losses", "data", "utils", "config"},
    "embedding": {"models", "data", "scoring", "utils", "config"},
    "training": {"models", "losses", "data", "cache", "embedding", "scoring", "utils", "config"},
    "cli": {"training", "embedding", "scoring", "cache", "models", "losses", "data", "utils",
            "config"},
}
NO_TORCH = {"scoring", "utils", "config"}
NO_FILE_IO = {"models", "losses"}
NO_ARGPARSE = set(ALLOWED) - {"cli"}


def python_files():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def owner(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_map(path):
    layer = owner(path)
    if layer == "__init__":
        return
    assert layer in ALLOWED, f"{path}: new subpackage {layer!r}: add it to the module map"
    tree = ast.parse(path.read_text())
    for module, line in imported_modules(tree):
        parts = module.split(".")
        if parts[0] == "oskdft" and len(parts) > 1:
            target = parts[1]
            assert target == layer or target in ALLOWED[layer], (
                f"{path}:{line}: {layer} must not import oskdft.{target}"
            )
        if layer in NO_TORCH:
            assert parts[0] not in {"torch", "torchaudio", "transformers"}, (
                f"{path}:{line}: {layer} must stay free of torch"
            )
        if layer in NO_ARGPARSE:
            assert parts[0] != "argparse", f"{path}:{line}: only cli and local/ parse arguments"


@pytest.mark.parametrize(
    "path", [p for p in python_files() if owner(p) in NO_FILE_IO],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_models_and_losses_do_no_file_io(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            assert name not in {"open", "save", "load", "write_text", "read_text"}, (
                f"{path}:{node.lineno}: file I/O in a models/losses module"
            )
