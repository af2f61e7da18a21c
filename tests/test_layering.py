"""Imports follow the data flow: `recbole_llm2rec` (models, runner, tune, and the numpy-only
atomic-file core) imports nothing from `pretrain` or `dataset_atomic`, which may import the core.
Entry scripts (`run_recbole.py`) compose them, and so does serving, the end of the flow: its
title embedder (`DOWNSTREAM`) embeds new titles with `pretrain.extract`, as the `.feat` was.
No module imports itself through others, not even inside a function (no import cycle)."""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "recbole_llm2rec"
UPSTREAM = ("pretrain", "dataset_atomic")  # later stages of the data flow
CORE = ("atomic", "errors", "feat", "feat_cache", "inter_checks", "model_folder")  # stdlib + numpy only
PROJECT = (PACKAGE, "pretrain", "dataset_atomic", "benchmarks")
DOWNSTREAM = {"recbole_llm2rec.serving.embedder": ("pretrain.extract", "pretrain.provenance")}


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


def statements(module, path):
    """Every import statement of `path`, at top level or inside functions, as (dotted module it
    names, the names it takes from it or None, line)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            yield base, [alias.name for alias in node.names], node.lineno


def imported(module, path):
    """Every module `path` imports, at top level or inside functions, as (dotted name, line)."""
    return [(base, line) for base, _, line in statements(module, path)]


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
    code = ("import sys, recbole_llm2rec.feat, recbole_llm2rec.atomic, recbole_llm2rec.errors, "
            "recbole_llm2rec.inter_checks; "
            "print(sorted(m for m in ('torch', 'recbole', 'pretrain', 'dataset_atomic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def import_graph(packages=PROJECT):
    """{module: {project modules it imports, at top level or inside functions}}; `from a import b`
    counts as importing `a.b` when that is a module, else `a`."""
    found = {}
    for package in packages:
        found.update(modules(package))
    graph = {}
    for module, path in found.items():
        targets = set()
        for base, names, _ in statements(module, path):
            targets |= {f"{base}.{n}" if f"{base}.{n}" in found else base
                        for n in names} if names else {base}
        graph[module] = {t for t in targets if t in found and t != module}
    return graph


def cycles(graph):
    """Every strongly connected set of more than one module (Tarjan). Returns sorted lists."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_cycle_finder_sees_a_cycle_through_a_lazy_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert "pretrain.encoder_pooling" in graph["pretrain.ic"]  # the scan sees lazy imports too
    assert cycles(graph) == []
