"""The built wheel, as `pip install imgclf` gives it to a user: installed into a fresh virtual
environment outside the checkout, run from another folder. Catches package data left out of the
wheel, imports of files that exist only in the checkout, and repo-relative paths.

The wheel goes in with --no-deps; the venv sees the dependencies already installed in this
checkout's .venv through a path entry (whose own .pth files, the editable install among them,
are not run). Installing TensorFlow, torch and the rest again took 3 of the suite's 20 minutes;
instead every Requires-Dist of the wheel (with the extras a user asks for) is checked against
what the venv can import, and every module imgclf imports against what its requirements
provide, so a dependency out of its range or one the wheel forgot to declare still fails here."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# Run by the venv's python. unmet: each requirement of the installed imgclf, with the extras a
# user installs (not dev), that no importable distribution satisfies. undeclared: each module
# imgclf imports that no declared requirement, nor one of theirs, provides.
CHECK_REQUIREMENTS = """
import ast, re, sys
from importlib.metadata import PackageNotFoundError, files, packages_distributions, requires
from importlib.metadata import version
from packaging.requirements import Requirement

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def wanted(text, extras):
    r = Requirement(text)
    return r if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras) else None

unmet, declared, todo = [], set(), []
for text in requires("imgclf"):
    r = wanted(text, ("", "keras", "serve", "extra-weights"))
    if r is None:
        continue
    try:
        if not r.specifier.contains(version(r.name), prereleases=True):
            unmet.append(f"{text} (installed {version(r.name)})")
        todo.append(r.name)
    except PackageNotFoundError:
        unmet.append(f"{text} (not installed)")
while todo:  # what the declared requirements bring with them
    name = norm(todo.pop())
    if name in declared:
        continue
    declared.add(name)
    try:
        todo += [r.name for t in requires(name) or [] if (r := wanted(t, ("",)))]
    except PackageNotFoundError:
        pass
imported = set()
for f in files("imgclf"):
    if f.suffix == ".py":
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
owners = packages_distributions()
undeclared = sorted(
    m for m in imported - set(sys.stdlib_module_names) - {"imgclf"}
    if not {norm(d) for d in owners.get(m, [])} & declared
)
print({"unmet": unmet, "undeclared": undeclared})
"""


def _run(*cmd: str, cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def test_the_wheel_installs_and_runs_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    dist = tmp_path / "dist"
    # what `make dist` runs (the sdist too: it must build from its own files)
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO),
         cwd=tmp_path, env=env)  # fmt: skip
    wheel = next(dist.glob("imgclf-*.whl"))
    assert next(dist.glob("imgclf-*.tar.gz"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path, env=env)
    py = str(venv / "bin" / "python")
    _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel),
         cwd=tmp_path, env=env)  # fmt: skip
    site = _run(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                cwd=tmp_path, env=env)  # fmt: skip
    deps = Path(sysconfig.get_path("purelib"))  # this checkout's .venv
    Path(site.strip(), "zz_deps.pth").write_text(f"{deps}\n")  # after the venv's own packages
    found = _run(py, "-c", CHECK_REQUIREMENTS, cwd=tmp_path, env=env)
    assert found.strip() == "{'unmet': [], 'undeclared': []}", found
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exe = str(venv / "bin" / "imgclf")
    where = _run(str(venv / "bin" / "python"), "-c", "import imgclf; print(imgclf.__file__)",
                 cwd=elsewhere, env=env)  # fmt: skip
    assert str(venv) in where and str(REPO) not in where
    version = _run(exe, "--version", cwd=elsewhere, env=env)
    assert version.strip() == "imgclf " + _project_version()
    models = _run(exe, "models", cwd=elsewhere, env=env)
    assert "efficientnet_lite0" in models and "keras" in models
    demo = _run(exe, "demo", "--out", "runs/demo", "--epochs", "1", cwd=elsewhere, env=env)
    assert (
        "Demo done" in demo and (elsewhere / "runs" / "demo" / "run-cnn" / "report.html").exists()
    )
    for page in ("serve/static/index.html", "review/static/review.html"):
        found = next(venv.glob(f"lib/python*/site-packages/imgclf/{page}"))
        assert found.stat().st_size > 100  # package data made it into the wheel


def _project_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
