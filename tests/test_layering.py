"""The module map of oskdft/__init__.py, read from its docstring and enforced: each layer imports
only the layers the map lists for it, all listed before it (nothing imports upward); layers
marked "no torch" stay free of torch, "no file I/O" layers do no file I/O, and only layers
marked "parses arguments" import argparse."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import oskdft

PACKAGE = Path(__file__).resolve().parents[1] / "oskdft"
MAP_LINE = re.compile(r"^ {4}(\w+) +: (.+?)(?: +\| (.+))?$")
RULES = {"no torch", "no file I/O", "parses arguments"}


def read_module_map(doc: str):
    """layer -> (the layers it may import, its rules), in the docstring's order."""
    layers = {}
    for line in doc.splitlines():
        match = MAP_LINE.match(line)
        if not match:
            continue
        name, targets, rules = match.group(1), match.group(2).split(), match.group(3)
        if targets == ["*"]:
            allowed = set(layers)
        elif targets == ["-"]:
            allowed = set()
        else:
            allowed = set(targets)
            above = allowed - set(layers)
            assert not above, (
                f"oskdft/__init__.py: {name} may not import {above}: not listed before it"
            )
        rules = {r.strip() for r in rules.split(",")} if rules else set()
        assert rules <= RULES, f"oskdft/__init__.py: {name}: unknown rule {rules - RULES}"
        layers[name] = (allowed, rules)
    return layers


MAP = read_module_map(oskdft.__doc__)
ALLOWED = {name: allowed for name, (allowed, _) in MAP.items()}
NO_TORCH = {name for name, (_, rules) in MAP.items() if "no torch" in rules}
NO_FILE_IO = {name for name, (_, rules) in MAP.items() if "no file I/O" in rules}
NO_ARGPARSE = {name for name, (_, rules) in MAP.items() if "parses arguments" not in rules}


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


def test_the_map_names_every_layer_and_only_layers():
    layers = {owner(p) for p in python_files()} - {"__init__"}
    assert layers == set(MAP), "oskdft/__init__.py's module map and oskdft/'s layers differ"


def test_the_map_is_read_as_written():
    # Catches a parser that silently drops lines or rules: the map's first and last lines.
    assert list(MAP)[0] == "layout" and ALLOWED["layout"] == set()
    assert ALLOWED["cli"] == set(MAP) - {"cli"} and NO_ARGPARSE == set(MAP) - {"cli"}
    assert {"scoring", "layout"} <= NO_TORCH and NO_FILE_IO == {"models", "losses"}


def test_read_module_map_refuses_an_upward_edge():
    with pytest.raises(AssertionError, match=r"utils may not import \{'data'\}"):
        read_module_map("    utils     : data\n    data      : utils\n")


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_map(path):
    layer = owner(path)
    if layer == "__init__":
        return
    tree = ast.parse(path.read_text())
    for module, line in imported_modules(tree):
        parts = module.split(".")
        if parts[0] == "oskdft" and len(parts) > 1:
            target = parts[1]
            assert target == layer or target in ALLOWED[layer], (
                f"{path}:{line}: {layer} must not import oskdft.{target}"
            )
        if layer in NO_TORCH:
            assert parts[0] not in {"torch", "torchaudio", "transformers", "lhotse"}, (
                f"{path}:{line}: {layer} must stay free of torch"
            )
        if layer in NO_ARGPARSE:
            assert parts[0] != "argparse", f"{path}:{line}: only cli and local/ parse arguments"


@pytest.mark.parametrize(
    "path",
    [p for p in python_files() if owner(p) in NO_FILE_IO],
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


def test_onnx_serving_imports_no_torch():
    """`oskdft verify model.onnx` runs without torch: the runtime and the layout it reads load
    none of it, directly or through another oskdft module."""
    probe = (
        "import sys, oskdft.layout, oskdft.inference.onnx_runtime\n"
        "heavy = sorted({'torch', 'lhotse', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
