"""One upload's way through the server: queued for the dynamic batcher, whose workers parse and
decode it (a bounded number at a time: memory is decodes x pixels) and run the model on a
batch (serve/batching.py); or, for `?explain=1`, decoded and explained by Grad-CAM in a thread.
A model that batches and explanations share takes turns under one lock."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from imgclf.messages import UsageError
from imgclf.predictor import answer, mark_unsure, thresholds_of
from imgclf.serve.batching import Batcher, Overloaded
from imgclf.serve.config import ServeConfig
from imgclf.serve.uploads import first_file_part


class Classifier:
    def __init__(
        self,
        predictor: Any,
        cfg: ServeConfig,
        decode: Callable[[bytes, int, int], np.ndarray],
        concurrent: bool = False,
        hooks: tuple[Callable[[int, float], None] | None, Callable[[], None] | None] = (None, None),
        explaining: Callable[[], Any] | None = None,
        solo: Any = None,
    ):
        """cfg: its limits (max_pixels, top_k, the batching, workers: decodes at a time);
        decode(bytes, size, max_pixels) -> uint8 (size, size, 3); concurrent: whether the model
        may run in several workers at once (an onnxruntime session may; a PyTorch or Keras model
        that explanations also use takes turns under a lock); hooks: (on_batch(size, seconds),
        on_reject()) for the metrics; explaining() -> the predictor Grad-CAM runs on (the
        PyTorch model when the batches run in onnxruntime), loaded at the first `?explain=1`;
        solo: the same model on every core, for a batch that runs while nothing else does (a
        lone client: one thread a call is the fastest under load, not alone)."""
        self.predictor, self.decode_fn, self.max_pixels = predictor, decode, cfg.max_pixels
        self.solo, self.concurrent = solo, concurrent
        self.top_k, (on_batch, self.on_reject) = cfg.top_k, hooks
        self.abstain = cfg.abstain
        self.lock = threading.Lock()
        self.decodes = threading.BoundedSemaphore(cfg.workers)
        self.arriving = 0  # uploads being read: the batcher waits for them (max_wait)
        self.batcher = Batcher(self._prepare, self._run, cfg, on_batch, lambda: self.arriving)
        self._explaining = explaining or (lambda: predictor)
        self._explainer: Any = None

    def explainer(self) -> Any:
        """The predictor for explanations, loaded once (a 400 for a backend without Grad-CAM)."""
        from imgclf.explain import explainer

        with self.lock:
            if self._explainer is None:
                self._explainer = self._explaining()
        try:
            explainer(self._explainer)
        except UsageError as e:
            raise HTTPException(400, str(e)) from None
        return self._explainer

    def _run(self, images: np.ndarray, alone: bool) -> np.ndarray:
        if self.concurrent:
            return (self.solo if alone and self.solo else self.predictor).predict_proba(images)
        with self.lock:
            return self.predictor.predict_proba(images)

    def decode(self, body: bytes, ctype: str) -> tuple[np.ndarray, bytes]:
        # 177k tiny multipart parts took 1.7 s to parse: off the event loop like the decode
        data = first_file_part(body, ctype) if ctype.startswith("multipart/") else body
        with self.decodes:
            return self.decode_fn(data, self.predictor.pre.size, self.max_pixels), data

    def _prepare(self, item: tuple[bytes, str] | Callable[[], np.ndarray]) -> np.ndarray:
        """An upload (body, content type) decoded, or a tensor's row (the protocol's pixels)."""
        return item() if callable(item) else self.decode(*item)[0]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Count an upload as on its way while its body is read (the event loop's thread)."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    async def answer(self, body: bytes, ctype: str, explain: bool = False) -> dict[str, Any]:
        """The top classes of one upload (parsed, decoded and classified by the batcher's
        workers); explain: with its Grad-CAM overlay (decoded and explained in a thread)."""
        if explain:
            await run_in_threadpool(self.explainer)  # refused before any decoding
            x, data = await run_in_threadpool(self.decode, body, ctype)
            return await run_in_threadpool(self._explained, x, data)
        (probs,) = await self.probabilities([(body, ctype)])
        return self._answer(probs)

    def _answer(self, probs: np.ndarray) -> dict[str, Any]:
        """/predict's body for one image's probabilities (with --abstain: abstained)."""
        out = answer(probs, self.predictor.class_names, self.top_k, thresholds_of(self.predictor))
        if self.abstain:
            mark_unsure([out], self.abstain)
        return out

    async def probabilities(self, items: list[Any]) -> np.ndarray:
        """(n, classes) for n batcher items, all queued or none (a full queue: 503 at once,
        the ones already queued withdrawn); an item's error (a bad image) fails the request."""
        futures = []
        try:
            for item in items:
                futures.append(self.batcher.submit(item))
        except Overloaded:
            for f in futures:
                f.cancel()  # the batcher skips cancelled requests
            if self.on_reject:
                self.on_reject()
            raise HTTPException(
                503, "busy: the queue is full; try again", headers={"Retry-After": "1"}
            ) from None
        if len(futures) == 1:  # an upload: no gathering task on the event loop's hot path
            return (await futures[0])[None]
        try:
            rows = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            for f in futures:
                f.cancel()  # the client left: the others need no model time
        for r in rows:
            if isinstance(r, BaseException):
                raise r
        return np.stack(rows)

    def _explained(self, x: np.ndarray, data: bytes) -> dict[str, Any]:
        from imgclf.explain import explain_batch

        model = self.explainer()
        with self.lock:
            e = explain_batch(model, x[None])
        names = self.predictor.class_names
        out = self._answer(e.probs[0])
        out["explanation"] = explanation_json(model, x, e, data)
        if len(out.get("labels", [])) > 1:  # multi-label: a map for each class found
            more = []
            for name in out["labels"][1:]:
                with self.lock:
                    one = explain_batch(model, x[None], [names.index(name)])
                more.append(explanation_json(model, x, one, data))
            out["explanations"] = [out["explanation"], *more]
        return out


def explanation_json(predictor: Any, image: np.ndarray, e: Any, data: bytes) -> dict[str, Any]:
    """The overlay as a data URL, the class explained and the peak in the upload's pixels."""
    import base64
    import io

    from imgclf.explain import original_size, overlay, peak, png_bytes, to_original

    names, c = predictor.class_names, e.classes[0]
    png = png_bytes(overlay(image, e.cams[0], f"{names[c]} {e.probs[0][c]:.2f}"))
    x, y = to_original(*peak(e.cams[0]), *original_size(io.BytesIO(data)), predictor.pre.size)
    return {
        "png": "data:image/png;base64," + base64.b64encode(png).decode(),
        "class": names[c],
        "peak_xy": [round(x, 1), round(y, 1)],
    }
