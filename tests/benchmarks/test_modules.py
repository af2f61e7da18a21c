"""Benchmark scripts are modules of the `benchmarks` package (`python -m benchmarks.<name>`):
they touch no sys.path and use only public names of the project."""
import ast
import subprocess
import sys

import pytest

from test_layering import REPO, PROJECT, modules, statements

BENCHMARKS = sorted(modules("benchmarks").items())


@pytest.mark.parametrize("module, path", BENCHMARKS)
def test_no_sys_path_edits(module, path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    edits = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and node.attr == "path" and isinstance(node.value, ast.Name)
             and node.value.id == "sys"]
    assert not edits, f"{path}: sys.path at lines {edits}; run it as python -m {module}"


@pytest.mark.parametrize("module, path", BENCHMARKS)
def test_only_public_names_of_the_project(module, path):
    private = [(base, name, line) for base, names, line in statements(module, path)
               if base.split(".")[0] in PROJECT for name in names or ()
               if name.startswith("_")]
    assert not private, f"{path} imports private names {private}"


def test_a_script_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "benchmarks.feat_read", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--synthetic" in out.stdout, out.stderr
