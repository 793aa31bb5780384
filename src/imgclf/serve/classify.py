"""One upload's way through the server: parse and decode (a bounded pool of threads: memory is
decodes x pixels), then the dynamic batcher (serve/batching.py) or, for `?explain=1`, Grad-CAM.
The model is one object: batches and explanations take turns under one lock."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from imgclf.messages import UsageError
from imgclf.predictor import answer
from imgclf.serve.batching import Batcher, Overloaded
from imgclf.serve.uploads import first_file_part


class Classifier:
    def __init__(
        self,
        predictor: Any,
        decode: Callable[[bytes, int, int], np.ndarray],
        max_pixels: int,
        max_decodes: int = 0,
        top_k: int = 3,
        batching: tuple[int, float, int] = (32, 0.005, 256),
        on_batch: Callable[[int, float], None] | None = None,
        on_reject: Callable[[], None] | None = None,
        explaining: Callable[[], Any] | None = None,
    ):
        """decode(bytes, size, max_pixels) -> uint8 (size, size, 3); batching: (max batch,
        max wait in seconds, max queue); explaining() -> the predictor Grad-CAM runs on (the
        PyTorch model when the batches run in onnxruntime), loaded at the first `?explain=1`."""
        self.predictor, self.decode_fn, self.max_pixels, self.top_k = (
            predictor,
            decode,
            max_pixels,
            top_k,
        )
        self.lock = threading.Lock()
        self.decodes = threading.BoundedSemaphore(max_decodes or min(4, os.cpu_count() or 1))
        max_batch, max_wait, max_queue = batching
        self._incoming, self._count = 0, threading.Lock()
        self.batcher = Batcher(
            self._run, max_batch, max_wait, max_queue, on_batch, lambda: self._incoming
        )
        self.on_reject = on_reject
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

    def _run(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.predictor.predict_proba(images)

    def decode(self, body: bytes, ctype: str) -> tuple[np.ndarray, bytes]:
        # 177k tiny multipart parts took 1.7 s to parse: off the event loop like the decode
        data = first_file_part(body, ctype) if ctype.startswith("multipart/") else body
        with self.decodes:
            return self.decode_fn(data, self.predictor.pre.size, self.max_pixels), data

    async def answer(self, body: bytes, ctype: str, explain: bool = False) -> dict[str, Any]:
        """The top classes of one upload; explain: with its Grad-CAM overlay."""
        if explain:
            await run_in_threadpool(self.explainer)  # refused before any decoding
        with self._count:
            self._incoming += 1
        try:  # counted until queued, so the batcher waits for it
            x, data = await run_in_threadpool(self.decode, body, ctype)
            future = None if explain else self._submit(x)
        finally:
            with self._count:
                self._incoming -= 1
        if future is None:
            return await run_in_threadpool(self._explained, x, data)
        probs = await asyncio.wrap_future(future)
        return answer(probs, self.predictor.class_names, self.top_k)

    def _submit(self, x: np.ndarray) -> Any:
        try:
            return self.batcher.submit(x)
        except Overloaded:
            if self.on_reject:
                self.on_reject()
            raise HTTPException(
                503, "busy: the queue is full; try again", headers={"Retry-After": "1"}
            ) from None

    def _explained(self, x: np.ndarray, data: bytes) -> dict[str, Any]:
        from imgclf.explain import explain_batch

        model = self.explainer()
        with self.lock:
            e = explain_batch(model, x[None])
        out = answer(e.probs[0], self.predictor.class_names, self.top_k)
        out["explanation"] = explanation_json(model, x, e, data)
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
