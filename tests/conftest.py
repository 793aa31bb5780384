"""Shared fixtures: tiny generated image folders, the shared real data, an isolated cache."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401
import torchvision.models  # noqa: F401  (before any TensorFlow import: see imgclf.backends.keras)
from PIL import Image, ImageDraw

import cli_server

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CATS_DOGS = SHARED_DATA / "CATS_DOGS"
CIFAR_ZIP = SHARED_DATA / "cifar10_jpeg" / "cifar10_jpeg.zip"
COLOURS = {"blue": (40, 60, 220), "green": (40, 190, 60), "red": (220, 50, 40)}

needs_cats_dogs = pytest.mark.skipif(not CATS_DOGS.is_dir(), reason="../shared/data absent")


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Tests never download and never touch the user's cache.
    os.environ["IMGCLF_CACHE"] = str(tmp_path_factory.mktemp("imgclf-cache"))
    os.environ["IMGCLF_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    yield
    _SERVER.close()


def draw_shape(colour: tuple[int, int, int], seed: int, size: int = 32) -> Image.Image:
    """A coloured ellipse or box on a noisy light background: learnable from colour alone."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(200, 255, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    d = ImageDraw.Draw(img)
    a, b = rng.integers(2, size // 3, 2)
    box = (int(a), int(b), int(a + size // 2), int(b + size // 2))
    (d.ellipse if seed % 2 else d.rectangle)(box, fill=colour)
    return img


def make_folder(root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    for split, n in per_class.items():
        for ci, (name, colour) in enumerate(sorted(COLOURS.items())):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw_shape(
                    colour, seed + 1000 * ci + i + (500 if split == "test" else 0), size
                ).save(d / f"{name}_{i:03d}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(
    url: str, proc: subprocess.Popen, log: Callable[[], str], tries: int = 240
) -> None:
    """Poll `url` until it answers 200; a server that never does fails the test with its log."""
    import httpx

    for _ in range(tries):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"{url} did not come up: {log()}")


def tiny_run(tmp: Path, epochs: int = 3) -> Path:
    """A small CNN trained for a few epochs on 8 shapes a class: a real run, in seconds."""
    import imgclf

    data = make_folder(tmp / "d", {"train": 8, "test": 4})
    cfg = imgclf.build_config(
        data_dir=str(data), model="cnn", image_size=32, epochs=epochs, batch_size=8, workers=1,
        out_dir=str(tmp / "run"),
    )  # fmt: skip
    return imgclf.train(cfg, progress=False).run_dir


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """train/ and test/ with 3 classes, 8 and 4 images each, 32x32."""
    return make_folder(tmp_path / "tiny", {"train": 8, "test": 4})


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root (links not followed), to prove nothing changed."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p) or not os.access(p, os.R_OK):
                continue
            out[p] = (hashlib.sha256(Path(p).read_bytes()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def train_killed_at_step(step: int, **config: object) -> subprocess.CompletedProcess:
    """imgclf.train(...) in a fresh interpreter that SIGKILLs itself right after optimizer step
    `step`: the fault comes from this test hook (train's on_step), not from production code."""
    code = (
        "import json, os, signal, sys\n"
        "import imgclf\n"
        "cfg = imgclf.build_config(**json.loads(sys.argv[1]))\n"
        "def die(s):\n"
        f"    if s == {step}: os.kill(os.getpid(), signal.SIGKILL)\n"
        "imgclf.train(cfg, progress=False, on_step=die)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_cli(
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    timeout: int = 600,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """`imgclf ARGS` as a user runs it, in a process of its own (tests/cli_server.py: forked
    from a warm interpreter, or the installed console script where a fork cannot stand in)."""
    exe = Path(sys.executable).parent / "imgclf"
    full_env = {**os.environ, **(env or {})}
    fresh = cli_server.needs_fresh_interpreter(full_env, _SERVER.env or dict(os.environ))
    if os.environ.get("IMGCLF_TEST_FRESH") == "1" or fresh:
        proc = subprocess.run(
            [str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
            env=full_env,
        )  # fmt: skip
    else:
        proc = _SERVER.run([str(exe), *args], cwd or Path.cwd(), full_env, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"imgclf {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class _CliServer:
    """One tests/cli_server.py process for the session, started at the first command (after the
    session's environment is set), restarted if it ever dies."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # the server's environment, from its start

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            script = Path(__file__).with_name("cli_server.py")
            self.env = dict(os.environ)
            self.proc = subprocess.Popen(
                [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, env=self.env,
            )  # fmt: skip
            assert json.loads(self.proc.stdout.readline()) == {"ready": True}
        return self.proc

    def run(
        self, cmd: list[str], cwd: Path, env: dict, timeout: int
    ) -> subprocess.CompletedProcess:
        server = self._start()
        with tempfile.TemporaryDirectory(prefix="imgclf-cli-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"argv": cmd[1:], "cwd": str(Path(cwd).resolve()), "env": env,
                       "out": str(out), "err": str(err), "timeout": timeout}  # fmt: skip
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            reply = json.loads(server.stdout.readline())
            stdout = out.read_text(errors="replace")
            stderr = err.read_text(errors="replace")
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
        return subprocess.CompletedProcess(cmd, reply["rc"], stdout, stderr)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)


_SERVER = _CliServer()
