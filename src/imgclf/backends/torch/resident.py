"""The decoded split held on the device (airbench's loader): when a split's uint8 rows fit in GPU
memory with room to spare, they are copied there once, as one tensor, and every batch is an index
into it, normalised and augmented on the GPU: no host work and no host-to-device copy per batch.
When they do not fit, batches are copied from pinned memory on a side stream, ahead of the step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from imgclf.data.cache import DecodedCache

# Share of the free GPU memory a split may take: the rest is for the model, its activations and
# the other split (a batch of 100 AlexNet activations at 227 px alone takes ~1 GiB).
RESIDENT_SHARE = 0.4
CHUNK_ROWS = 1024  # rows per host-to-device copy while loading: bounds host memory


def fits_on_device(rows: int, size: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return False  # on the CPU the memory-mapped cache already is host memory
    free, _ = torch.cuda.mem_get_info(device)
    return rows * size * size * 3 <= RESIDENT_SHARE * free


def load_rows(cache: DecodedCache, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (len(rows), size, size, 3) on device, position i holding cache row rows[i]."""
    s = cache.size
    out = torch.empty((len(rows), s, s, 3), dtype=torch.uint8, device=device)
    for i in range(0, len(rows), CHUNK_ROWS):
        chunk = torch.from_numpy(cache.read_rows(rows[i : i + CHUNK_ROWS]))
        if device.type == "cuda":
            chunk = chunk.pin_memory()
        out[i : i + len(chunk)].copy_(chunk, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the pinned chunks are freed when this returns
    return out


def resident_batches(
    images: torch.Tensor, labels: torch.Tensor, parts: Iterator[tuple[np.ndarray, int, int]]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """(uint8 NHWC, labels, (offset, global length)) for each (positions, offset, global length):
    a gather on the device."""
    for pos, lo, total in parts:
        idx = torch.from_numpy(pos).to(images.device, non_blocking=True)
        yield images[idx], labels[idx], (lo, total)


def on_side_stream(
    items: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]]:
    """Run the batch producer's GPU work (copy, normalise, augment) on its own CUDA stream, so it
    overlaps the training step on the default stream; each batch comes with the event to wait on."""
    stream = torch.cuda.Stream(device)
    it = iter(items)
    while True:
        with torch.cuda.stream(stream):
            item = next(it, None)
        if item is None:
            return
        ready = torch.cuda.Event()
        ready.record(stream)
        yield item[0], item[1], ready


def wait_for(
    items: Iterator[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The consumer's side of `on_side_stream`: the step's stream waits for the batch, and the
    caching allocator learns the tensors are used there (else it could reuse their memory)."""
    for x, y, ready in items:
        current = torch.cuda.current_stream(device)
        current.wait_event(ready)
        x.record_stream(current)
        y.record_stream(current)
        yield x, y
