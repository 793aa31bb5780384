"""imgclf.settings: the environment's limits, read once on first use (not when a module is
imported), and the torchrun rank read in one place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import make_folder, run_cli

# set after the import, as a notebook does: the limit still applies (it was read at import)
LIMIT_AFTER_IMPORT = """
import os, sys
from imgclf.data.images import ImageDecodeError, read_bytes
os.environ["IMGCLF_MAX_IMAGE_MB"] = "1"
try:
    read_bytes(sys.argv[1])
except ImageDecodeError as e:
    print(e)
"""


def test_a_limit_set_after_import_applies(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (2 * 2**20 + 1))
    out = subprocess.run(
        [sys.executable, "-c", LIMIT_AFTER_IMPORT, str(big)], capture_output=True, text=True
    )
    assert out.stdout.strip() == "file is 2 MB, over the 1 MB limit (IMGCLF_MAX_IMAGE_MB)"


def test_a_limit_that_is_not_a_number_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d", {"train": 2})
    out = run_cli("audit", str(data), "--out", str(tmp_path / "a"), check=False,
                  env={"IMGCLF_MAX_IMAGE_MB": "lots"})  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "imgclf audit: error: environment variable IMGCLF_MAX_IMAGE_MB='lots' is not a number"
    ]


def test_rank_is_torchruns_or_zero(monkeypatch) -> None:  # noqa: ANN001
    from imgclf.settings import rank

    monkeypatch.delenv("RANK", raising=False)
    assert rank() == 0
    monkeypatch.setenv("RANK", "3")
    assert rank() == 3
