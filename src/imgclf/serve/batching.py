"""Dynamic batching for `imgclf serve`, as Triton's dynamic batcher and TorchServe's
batch_size/max_batch_delay do: requests wait in one bounded queue; a worker takes the first,
waits at most `max_wait_s` for more (up to `max_batch`) while others are on their way, prepares
each (the upload's decode: a bad one fails alone), runs the model once on the stack and answers
each request with its own row. Past `max_queue` waiting requests one is refused at once
(Overloaded: the server answers 503 with Retry-After), so memory never grows without bound.

`workers` threads share the queue. Each prepares its own batch, so decodes at a time are at most
`workers` (memory: workers x pixels), and while one worker decodes another runs the model: on a
2-core CPU two single-threaded model calls side by side measured faster than one call on both
cores next to the decodes (benchmarks/RESULTS.md). A batch's answers reach the event loop in
one wake-up, not one per request."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from imgclf.serve.config import ServeConfig

Job = tuple[Any, asyncio.Future]


class Overloaded(Exception):
    """The queue is full: shed this request now rather than let every answer wait."""


class Batcher:
    def __init__(
        self,
        prepare: Callable[[Any], np.ndarray],
        run_batch: Callable[[np.ndarray, bool], np.ndarray],
        cfg: ServeConfig,
        on_batch: Callable[[int, float], None] | None = None,
        incoming: Callable[[], int] = lambda: 0,
    ):
        """cfg: max_batch (resolved, not 0), max_wait_ms, max_queue and workers;
        prepare(item) -> uint8 (size, size, 3) (an exception answers that request alone);
        run_batch(uint8 (N, size, size, 3), alone) -> (N, classes), called by several workers
        at once when workers > 1 (the caller locks it if it must); alone: no other worker is
        busy and nothing is queued, so the call may take every core; on_batch(size, seconds)
        after each batch (metrics); incoming(): requests on their way (uploads being read):
        with none and an empty queue a batch starts at once (a lone client never waits)."""
        self.prepare, self.run_batch = prepare, run_batch
        self.max_batch, self.max_wait_s, max_queue = cfg.batching
        self.on_batch, self.incoming = on_batch, incoming
        self._q: queue.Queue = queue.Queue(max_queue)
        self._busy, self._counting = 0, threading.Lock()  # workers with a batch in hand
        self._threads = [
            threading.Thread(target=self._loop, name=f"imgclf-batcher-{i}", daemon=True)
            for i in range(cfg.workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, item: Any) -> asyncio.Future:
        """Queue one request (from the event loop); its future gets its class probabilities."""
        future = asyncio.get_running_loop().create_future()
        try:
            self._q.put_nowait((item, future))
        except queue.Full:
            raise Overloaded from None
        return future

    def depth(self) -> int:
        return self._q.qsize()

    def full(self) -> bool:
        return self._q.full()

    def close(self, timeout: float = 10.0) -> None:
        """Answer what is queued, then stop the workers (one stop mark each, behind the queue)."""
        deadline = time.monotonic() + timeout
        for _ in self._threads:
            self._q.put(None, timeout=max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._gather()
            with self._counting:
                self._busy += 1
            try:
                self._run(batch)
            finally:
                with self._counting:
                    self._busy -= 1

    def _gather(self) -> tuple[list[Job], bool]:
        """(the next batch, whether a stop mark came): the first request, what else is queued,
        and what arrives within max_wait_s while uploads are still being read."""
        first = self._q.get()
        if first is None:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self.incoming():
                    break  # nobody else is coming: waiting would only add latency
                try:
                    item = self._q.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[Job]) -> None:
        outcomes: list[tuple[asyncio.Future, Any]] = []
        images, owners = [], []
        for item, future in batch:
            if future.cancelled():  # the client left while it waited: nothing to decode
                continue
            try:
                images.append(self.prepare(item))
                owners.append(future)
            except Exception as e:  # this upload's error (415, 422, ...) answers it alone
                outcomes.append((future, e))
        if images:
            t0, alone = time.perf_counter(), self._busy == 1 and self._q.empty()
            try:
                outcomes += zip(owners, self.run_batch(np.stack(images), alone), strict=True)
            except Exception as e:  # every request of the batch gets the error, workers live on
                outcomes += [(f, e) for f in owners]
            else:
                if self.on_batch:
                    self.on_batch(len(images), time.perf_counter() - t0)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for future, out in outcomes:  # one loop in a server; a test may bring another
            by_loop.setdefault(future.get_loop(), []).append((future, out))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop has closed: nobody is left to answer
                pass


def _settle(outcomes: list[tuple[asyncio.Future, Any]]) -> None:
    """On the event loop: each request's row or error (skipping requests cancelled since)."""
    for future, out in outcomes:
        if future.done():
            continue
        if isinstance(out, BaseException):
            future.set_exception(out)
        else:
            future.set_result(out)
