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


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:`, imports for type hints only, which never
    run (a module may name the type of a caller's object without importing it at run time)."""
    hidden = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    return [n for n in ast.walk(tree) if id(n) not in hidden]


def import_graph() -> dict[str, set[str]]:
    """Every imgclf import anywhere in each module (function-level ones too), as module names."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in _runtime_nodes(ast.parse(path.read_text())):
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
    assert len(graph) > 30 and graph["imgclf.cli.parser"]  # the walk really saw the tree
    assert find_cycle(graph) == []


FRAMEWORKS = {"torch", "torchvision", "timm", "keras", "tensorflow"}
BACKEND_PACKAGES = ("imgclf.backends.torch", "imgclf.backends.keras")


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import anywhere in a module (inside functions too); for
    `from a import b` both a and a.b, so that `from imgclf.backends import torch` counts."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def layering_offences(modules: dict[str, str]) -> list[str]:
    """Modules outside backends/ that import a framework or reach into a backend's package
    (they go through `imgclf.backends.get(name)`), as 'module:line name'."""
    bad = []
    for mod, source in sorted(modules.items()):
        if mod == "imgclf.backends" or mod.startswith("imgclf.backends."):
            continue
        for line, name in imported_names(ast.parse(source)):
            if name.split(".")[0] in FRAMEWORKS or name.startswith(BACKEND_PACKAGES):
                bad.append(f"{mod}:{line} {name}")
    return bad


def test_only_backends_import_a_framework_or_a_backends_modules() -> None:
    modules = {m: p.read_text() for m, p in _modules().items()}
    assert len(modules) > 80  # the walk saw the tree
    assert layering_offences(modules) == []


def test_each_framework_is_imported_by_its_own_backend_only() -> None:
    """torch, torchvision and timm under backends/torch/, Keras and TensorFlow under
    backends/keras/ (which asks the PyTorch backend to load first, for the import order)."""
    own = {"torch": {"torch", "torchvision", "timm"}, "keras": {"keras", "tensorflow"}}
    bad = []
    for mod, path in _modules().items():
        for name, frameworks in own.items():
            if mod.startswith(f"imgclf.backends.{name}"):
                continue
            bad += [
                f"{mod}:{line} {n}"
                for line, n in imported_names(ast.parse(path.read_text()))
                if n.split(".")[0] in frameworks
            ]
    assert bad == []


def test_the_layering_check_catches_each_kind_of_offence() -> None:
    offences = layering_offences(
        {
            "imgclf.a": "def f():\n    import torch\n",
            "imgclf.b": "from tensorflow import keras\n",
            "imgclf.c": "from imgclf.backends.torch.embed import lite_features\n",
            "imgclf.d": "from imgclf.backends import keras\n",
            "imgclf.e": "from imgclf import backends\nimport numpy\n",
            "imgclf.backends.torch.x": "import torch\n",
        }
    )
    assert sorted({o.split(":")[0] for o in offences}) == [
        "imgclf.a",
        "imgclf.b",
        "imgclf.c",
        "imgclf.d",
    ]


def test_the_registry_is_a_leaf() -> None:
    """registry.py imports nothing that imports it back, not even at run time (it loaded each
    backend's builders with importlib, which import it): models.py does that, one level up."""
    graph = import_graph()
    source = (PKG / "registry.py").read_text()
    assert "importlib" not in source and "import_module" not in source

    def reaches(start: str, seen: set[str]) -> set[str]:
        for n in graph[start] - seen:
            seen.add(n)
            reaches(n, seen)
        return seen

    assert "imgclf.registry" not in reaches("imgclf.registry", set())
    assert graph["imgclf.registry"] <= {"imgclf.data.presets", "imgclf.messages"}


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
        "imgclf.audit.scan",
        "imgclf.audit.report",
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
