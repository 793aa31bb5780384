"""Dynamic batching for `imgclf serve`, as Triton's dynamic batcher and TorchServe's
batch_size/max_batch_delay do: requests wait in one bounded queue; one thread takes the first,
waits at most `max_wait_s` for more (up to `max_batch`), runs the model once on the stack and
hands each request its own row. Past `max_queue` waiting images a request is refused at once
(Overloaded: the server answers 503 with Retry-After), so memory never grows without bound."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class Overloaded(Exception):
    """The queue is full: shed this request now rather than let every answer wait."""


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
        incoming: Callable[[], int] = lambda: 1,
    ):
        """run_batch: uint8 (N, size, size, 3) -> (N, classes); on_batch(size, seconds) after
        each batch (metrics); incoming(): requests on their way (being read or decoded): with
        none and an empty queue a batch starts at once (a lone client never waits)."""
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.on_batch, self.incoming = on_batch, incoming
        self._q: queue.Queue = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._loop, name="imgclf-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one uint8 (size, size, 3) image; its future gets its class probabilities."""
        future: Future = Future()
        try:
            self._q.put_nowait((image, future))
        except queue.Full:
            raise Overloaded from None
        return future

    def depth(self) -> int:
        return self._q.qsize()

    def full(self) -> bool:
        return self._q.full()

    def close(self, timeout: float = 10.0) -> None:
        """Answer what is queued, then stop the thread."""
        self._q.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                if self._q.empty() and not self.incoming():
                    break  # nobody else is coming: waiting would only add latency
                left = deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        live = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        t0 = time.perf_counter()
        try:
            probs = self.run_batch(np.stack([x for x, _ in live]))
        except Exception as e:  # every request of the batch gets the error, the thread lives on
            for _, f in live:
                f.set_exception(e)
            return
        for (_, f), p in zip(live, probs, strict=True):
            f.set_result(p)
        if self.on_batch:
            self.on_batch(len(live), time.perf_counter() - t0)
