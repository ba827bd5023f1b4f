"""The layer map (pyproject.toml's import-linter `layers` contract, checked by `make lint`) also holds for the
imports import-linter cannot see: no importlib calls in the package, and every `cxr_ldm....` class path
written as a string in code points to the same layer or one below."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib
from _tiny_run import ROOT

PACKAGE = ROOT / "cxr_ldm"
DOTTED = re.compile(r"^cxr_ldm(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _layers() -> list[set[str]]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    return [{name.strip().strip("()") for name in re.split(r"[|:]", layer)} for layer in layers]


def _level(module: str, layers: list[set[str]]) -> int | None:
    """0 for the top layer; None for a name outside the package's layers."""
    first = module.split(".")[1] if module.count(".") else ""
    return next((i for i, names in enumerate(layers) if first in names), None)


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_every_package_module_belongs_to_a_layer():
    layers = _layers()
    children = {
        p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()
    }
    children -= {"__init__", "__pycache__", "assets"}
    assert sorted(c for c in children if _level(f"cxr_ldm.{c}", layers) is None) == []


def test_no_dynamic_imports_and_class_path_strings_point_down():
    layers = _layers()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        here = _level(module, layers)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("importlib.import_module", "import_module", "__import__"):
                    problems.append(
                        f"{module}:{node.lineno}: {name}(...) hides an import from the layer check"
                    )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
                there = _level(node.value, layers)
                if there is not None and here is not None and there < here:
                    problems.append(f"{module}:{node.lineno}: '{node.value}' names a higher layer")
    assert problems == []


def test_the_check_sees_a_class_path_that_points_up(tmp_path):
    """The string check is live: a class path of a higher layer in a low module is found."""
    layers = _layers()
    assert _level("cxr_ldm.data.x", layers) > _level("cxr_ldm.experiments.engine.Y", layers)
    tree = ast.parse('DEFAULT = "cxr_ldm.experiments.engine.run_experiment"\n')
    found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and DOTTED.match(str(n.value))]
    assert found == ["cxr_ldm.experiments.engine.run_experiment"]


def test_no_import_circles():
    """No module reaches itself through imports (inside functions too): packages' faces aside, each import
    is one way."""
    import grimp

    graph = grimp.build_graph("cxr_ldm", include_external_packages=False)
    circles = []
    for module in sorted(graph.modules):
        if module.endswith("__init__") or graph.is_module_squashed(module):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            package_face = module.startswith(imported + ".") or imported.startswith(module + ".")
            if not package_face and graph.chain_exists(importer=imported, imported=module):
                circles.append(f"{module} <-> {imported}")
    assert circles == []
