"""The shape of the package: no import cycles, backends behind one lookup, short functions."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "imgclf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Every imgclf import anywhere in each module (function-level ones too), as module names."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    for a in node.names
                ]
            graph[mod] |= {t for t in targets if t in mods and t != mod}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 30 and graph["imgclf.cli.commands"]  # the walk really saw the tree
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_only_backends_compare_backend_names() -> None:
    compare = re.compile(r"""[=!]=\s*["'](torch|keras)["']|["'](torch|keras)["']\s*[=!]=""")
    offenders = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if "backends" not in p.parts and compare.search(p.read_text())
    ]
    assert offenders == []


def test_both_backends_use_the_same_module_names_for_the_same_jobs() -> None:
    jobs = {"train.py", "loaders.py", "callbacks.py", "optim.py", "predict.py", "export.py"}
    for backend in ("torch", "keras"):
        names = {p.name for p in (PKG / "backends" / backend).iterdir()}
        assert jobs <= names, backend
        assert "models.py" in names or "models" in names


def test_no_function_is_longer_than_a_screen_nor_a_file_longer_than_300_lines() -> None:
    long = []
    for p in PKG.rglob("*.py"):
        text = p.read_text()
        if len(text.splitlines()) > 300:
            long.append(f"{p.relative_to(PKG)} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > 50:
                    long.append(f"{p.relative_to(PKG)}:{node.name} ({n} lines)")
    assert long == []


def test_matplotlib_lives_in_viz_only() -> None:
    users = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "matplotlib" in p.read_text()]
    assert users == ["viz.py"]


def test_backend_neutral_modules_import_neither_torch_nor_keras() -> None:
    neutral = [
        "imgclf.config",
        "imgclf.runs",
        "imgclf.registry",
        "imgclf.files",
        "imgclf.data.folder",
        "imgclf.data.audit",
        "imgclf.data.audit_report",
        "imgclf.data.cache",
        "imgclf.data.sources",
        "imgclf.evaluation.metrics",
        "imgclf.evaluation.report",
        "imgclf.viz",
        "imgclf.backends",
        "imgclf.backends.common",
        "imgclf.cli.parser",
    ]
    code = (
        f"import importlib, sys\nfor m in {neutral!r}: importlib.import_module(m)\n"
        "print(sorted(k for k in ('torch', 'keras', 'tensorflow') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_submodule_shadows_a_public_function() -> None:
    """`import imgclf.x` sets imgclf.x to the submodule: a module named like an API function
    (train, evaluate, predict, export) would replace that function for everyone after it."""
    import imgclf

    functions = {n for n in imgclf.__all__ if callable(getattr(imgclf, n)) and n.islower()}
    assert {"train", "evaluate", "predict", "export"} <= functions
    clashes = [n for n in functions if (PKG / f"{n}.py").exists() or (PKG / n).is_dir()]
    assert clashes == []
    import imgclf.evaluation.metrics  # noqa: F401
    import imgclf.exporter  # noqa: F401
    import imgclf.predictor  # noqa: F401

    assert all(callable(getattr(imgclf, n)) for n in functions)
    for backend in ("torch", "keras"):  # the same inside each backend package's facade
        init = (PKG / "backends" / backend / "__init__.py").read_text()
        defs = set(re.findall(r"^def (\w+)\(", init, re.M))
        assert {"fit", "export_model", "load_predictor"} <= defs
        subs = {p.stem for p in (PKG / "backends" / backend).iterdir()}
        assert defs & subs == set(), backend
