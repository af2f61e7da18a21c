"""Imports follow the data flow: `recbole_llm2rec` (models, runner, tune, and the numpy-only
atomic-file core) imports nothing from `pretrain` or `dataset_atomic`, which may import the core.
Entry scripts (`run_recbole.py`) compose them, and so does serving, the end of the flow: its
title embedder (`DOWNSTREAM`) embeds new titles with `pretrain.extract`, as the `.feat` was."""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "recbole_llm2rec"
UPSTREAM = ("pretrain", "dataset_atomic")  # later stages of the data flow
CORE = ("atomic", "errors", "feat", "feat_cache")
DOWNSTREAM = {"recbole_llm2rec.serving.embedder": ("pretrain.extract", "pretrain.provenance")}  # recbole_llm2rec's modules pretrain/dataset_atomic use


def modules(package):
    """{dotted module name: file path} of every module of `package`, sub-packages included."""
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3]
                dotted = rel.replace(os.sep, ".").removesuffix(".__init__")
                found[dotted] = os.path.join(folder, name)
    return found


def imported(module, path):
    """Every module `path` imports, at top level or inside functions, as (dotted name, line)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            names.append((base, node.lineno))
    return names


def test_the_scan_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from pretrain.extract import ensure_feat\n"
                    "    from . import feat\n")
    assert imported("recbole_llm2rec.m", str(path)) == [
        ("os", 1), ("pretrain.extract", 4), ("recbole_llm2rec", 5)]


@pytest.mark.parametrize("module, path", sorted(modules(PACKAGE).items()))
def test_recbole_llm2rec_imports_nothing_from_pretrain_or_dataset_atomic(module, path):
    bad = [(name, line) for name, line in imported(module, path)
           if name.split(".")[0] in UPSTREAM and name not in DOWNSTREAM.get(module, ())]
    assert not bad, f"{path}: imports {bad} (against the data flow)"


@pytest.mark.parametrize("core", CORE)
def test_core_modules_import_only_the_standard_library_numpy_and_each_other(core):
    module = f"{PACKAGE}.{core}"
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for name, line in imported(module, modules(PACKAGE)[module]):
        top = name.split(".")[0]
        if top == PACKAGE:
            assert name.split(".")[1] in CORE, f"{module}:{line} imports {name}"
        else:
            assert top in allowed, f"{module}:{line} imports {name} (not stdlib or numpy)"


def test_importing_the_core_loads_neither_torch_nor_recbole():
    code = ("import sys, recbole_llm2rec.feat, recbole_llm2rec.atomic, recbole_llm2rec.errors; "
            "print(sorted(m for m in ('torch', 'recbole', 'pretrain', 'dataset_atomic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
