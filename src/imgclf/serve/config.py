"""ServeConfig: every `imgclf serve` default in one place, validated once, built from the CLI
(cli/serve.py) and handed to create_app, the classifier and the batcher."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from imgclf.messages import UsageError

LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]", "::1"]  # Host headers accepted on loopback
RUNTIMES = ("auto", "eager", "onnx", "onnx-int8")
HTTP_PARSERS = ("auto", "httptools", "h11")


@dataclass(frozen=True)
class ServeConfig:
    run: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 10.0  # larger bodies: 413
    max_megapixels: float = 40.0  # refused from the header, before decoding
    # batcher workers: decodes at a time, and onnxruntime calls at once (0: default_workers())
    max_decodes: int = 0
    max_connections: int = 64  # requests in flight, then 503
    upload_timeout: float = 30.0  # seconds for a body, then 408
    allowed_hosts: tuple[str, ...] | None = None  # None: this machine's loopback names
    header_timeout: float = 10.0  # seconds for a request's headers, then the socket closes
    http: str = "auto"
    # 0: measured per device (serve/runtime.py). The wait was chosen from
    # benchmarks/bench_serve.py's numbers (RESULTS.md): a few per cent of one batch's compute.
    max_batch: int = 0
    max_wait_ms: float = 5.0
    max_queue: int = 256  # images waiting for the model, then 503
    runtime: str = "auto"
    drain_timeout: float = 30.0  # seconds to answer requests in flight on SIGTERM
    top_k: int = 3
    abstain: float = 0.0  # answers under this top probability say abstained: true (0: never)
    device: str = "auto"
    tta: bool | None = None  # None: as the run was trained
    calibration: bool = True  # the run's fitted temperature on the probabilities
    model_name: str = ""  # the Open Inference Protocol's name for it ("": the run folder's)
    max_request_images: int = 64  # images in one /v2 infer request, then 400

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{_flag(f.name)} must be a finite number, got {value!r}")
        if self.max_wait_ms < 0:
            raise UsageError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms:g}")
        if self.model_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.model_name):
            raise UsageError(
                f"--model-name {self.model_name!r}: letters, digits, '_', '.' and '-' only "
                "(it is a part of the URL)"
            )
        for name, choices in (("runtime", RUNTIMES), ("http", HTTP_PARSERS)):
            if getattr(self, name) not in choices:
                raise UsageError(f"--{name} must be one of {', '.join(choices)}")

    def replace(self, **changes: Any) -> ServeConfig:
        return dataclasses.replace(self, **changes)

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    @property
    def served_name(self) -> str:
        """The model's name in /v2/models/{name}: --model-name, or the run folder's."""
        return self.model_name or _url_safe(os.path.basename(os.path.abspath(self.run)))

    @property
    def workers(self) -> int:
        return self.max_decodes or default_workers()

    @property
    def batching(self) -> tuple[int, float, int]:
        """(max batch, max wait in seconds, max queue)."""
        return self.max_batch, self.max_wait_ms / 1000, self.max_queue


def default_workers() -> int:
    """Batcher workers (decodes at a time): one a core and one more, so that a worker waiting
    for Python's lock (or a request's parsing) leaves no core idle (2 cores: 9 % -> 2 % idle,
    measured), at most 4: memory is decodes x pixels."""
    return min(4, (os.cpu_count() or 1) + 1)


def default(name: str) -> Any:
    """A field's default, for the parser (one place for each)."""
    return ServeConfig.__dataclass_fields__[name].default


def _url_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("._-") or "model"


def _flag(name: str) -> str:
    return name.replace("_", "-")
