"""The folders are the layers: each module imports only its own layer and those below it.

Layers, lowest first: `core` (settings, errors, files, the command-line boundary),
`data` (CSV files, the competition's files, submissions), `kaggle` (the client
adapter), `models`, `training`, `runs` (records, run folders, outputs, reports,
blending, the ledger), `pipeline` (a whole job). Above them all, the command
lines: the modules at the top of `src` and `src/kaggle/__main__.py`, which
nothing imports. Imports inside functions count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

SOURCE = REPO_ROOT / "src"
LAYERS = ("core", "data", "kaggle", "models", "training", "runs", "pipeline")
COMMANDS = "commands"
# The pieces that never load TensorFlow, so that data checks, reports, blends and the ledger start fast.
WITHOUT_TENSORFLOW = ("data", "kaggle", "runs")
TENSORFLOW_ALLOWED = {"src.core.cli", "src.runs.folders"}  # the quiet import itself; saving a run's models


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(name: str) -> str:
    parts = name.split(".")
    if name in ("src", "src.__main__", "src.kaggle.__main__") or len(parts) == 2 and parts[1] not in LAYERS:
        return COMMANDS
    return parts[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, as (line, absolute name)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            found.append((node.lineno, base))
            # `from src.kaggle import client` imports the module src.kaggle.client.
            found += [
                (node.lineno, f"{base}.{alias.name}") for alias in node.names if _is_module(f"{base}.{alias.name}")
            ]
    return found


def _is_module(name: str) -> bool:
    path = REPO_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(SOURCE.rglob("*.py"))


def test_every_module_sits_in_a_known_layer():
    for path in MODULES:
        assert layer_of(module_name(path)) in (*LAYERS, COMMANDS), path


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_flow_down(path):
    name = module_name(path)
    layer = layer_of(name)
    for line, imported in imports_of(path):
        if not imported.startswith("src.") or not _is_module(imported):
            continue
        target = layer_of(imported)
        where = f"{path.relative_to(REPO_ROOT)}:{line} imports {imported}"
        assert target != COMMANDS or imported == "src", f"{where}: nothing imports a command line"
        if layer != COMMANDS and target != COMMANDS:
            assert LAYERS.index(target) <= LAYERS.index(layer), f"{where}: {layer} may not import {target}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_data_kaggle_and_runs_need_no_tensorflow(path):
    name = module_name(path)
    if layer_of(name) not in WITHOUT_TENSORFLOW or name in TENSORFLOW_ALLOWED:
        return
    imported = imports_of(path)
    heavy = [(line, name) for line, name in imported if name.split(".")[0] in ("tensorflow", "keras")]
    assert not heavy, f"{path.relative_to(REPO_ROOT)} imports {heavy}"
    tensorflow_users = [
        (line, name)
        for line, name in imported
        if name.startswith("src.") and layer_of(name) in ("models", "training") and name != "src.training.evaluation"
    ]
    assert not tensorflow_users, f"{path.relative_to(REPO_ROOT)} imports {tensorflow_users}"
