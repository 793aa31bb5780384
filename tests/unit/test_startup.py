"""What the `imgclf` command pays before its first training step: one Python process whose
malloc keeps freed batch memory, and no library the cached training path does not use."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc's malloc only",
)

# mallinfo2's hblkhd: bytes in chunks malloc got from mmap (each freed back to the OS at once)
MMAPPED = """
import ctypes, sys
class Info(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
if sys.argv[1] == "set":
    from imgclf.malloc import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
buf = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(buf)
"""


@glibc
def test_the_command_keeps_big_buffers_in_its_heap_without_starting_twice() -> None:
    """A 64 MB batch buffer came from its own mmap and went back to the OS when freed (every
    batch faulted its pages in again); `imgclf` used to re-exec itself with GLIBC_TUNABLES to stop
    that, and now sets the same in-process."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}  # make test sets it
    plain, kept = (
        int(subprocess.run([sys.executable, "-c", MMAPPED, arg], capture_output=True, text=True,
                           env=env, check=True).stdout)
        for arg in ("plain", "set")
    )  # fmt: skip
    assert plain >= 64 << 20 and kept == 0


TRAIN_AND_LIST = """
import sys
from imgclf.cli import main
status = main(sys.argv[1:])
print(status, *sorted(m for m in ("torchvision", "matplotlib", "tensorflow") if m in sys.modules))
"""


@pytest.mark.slow
def test_training_on_the_cache_loads_no_torchvision_nor_plotting(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """torchvision cost a cached run 1.2 s of start-up (only --pipeline plain's presets need it),
    and the calibration that ends a run imported evaluate's reports and plots."""
    args = ["train", str(tiny_folder), "--epochs", "1", "--image-size", "32", "--workers", "1"]
    args += ["--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_LIST, *args], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "0"
