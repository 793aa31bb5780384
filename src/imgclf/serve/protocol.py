"""uvicorn's HTTP protocol with two guards against idle and slow clients (slowloris):

- a deadline for a request's headers: a connection that has sent no complete request line and
  headers within `header_timeout` seconds (at its start, or after its previous answer) is closed;
- a ceiling on open connections (`max_open`), far above the requests served at once, so only a
  burst of new sockets, never a few idle ones, can refuse a client.

uvicorn's own `limit_concurrency` counts open connections, idle ones included (64 sockets that
send nothing answered every request, /health too, with 503 for as long as they stayed open). The
limit on requests in flight is RequestLimit in app.py, which lets health checks through.

The parser is httptools (C) when it is installed (the `serve` extra brings it), else h11 (pure
Python): the event loop parses every request on the cores the model needs, and httptools with
uvloop measured 4-7 % more requests/s (benchmarks/RESULTS.md). Both get the same guards.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from imgclf.messages import UsageError


class HeaderDeadline:
    """The guards, mixed into a uvicorn protocol class; `_headers_arrived` is called by the
    parser-specific hook when a request's headers are complete."""

    header_timeout = 10.0  # seconds
    max_open = 1024
    connections: set
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_open:
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        waiting = self.cycle is None or self.cycle.response_complete  # not a pipelined request
        if waiting and not self.transport.is_closing():
            self.transport.close()  # no request line and headers in time: free the slot

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedH11(HeaderDeadline, H11Protocol):
    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers arrived: the body has its own limit
            self._disarm()


def _httptools() -> type | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed
        return None

    class GuardedHttpTools(HeaderDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._disarm()  # the body has its own limit

    return GuardedHttpTools


def guarded_protocol(header_timeout: float, max_open: int, parser: str = "auto") -> type:
    """A guarded protocol class with these limits (uvicorn builds one instance a connection);
    parser: httptools, h11, or auto (httptools when installed)."""
    fast = _httptools() if parser in ("auto", "httptools") else None
    if parser == "httptools" and fast is None:
        raise UsageError("--http httptools: httptools is not installed (pip install httptools)")
    base = fast or GuardedH11
    limits = {"header_timeout": header_timeout, "max_open": max_open}
    return type(base.__name__, (base,), {**limits, "parser": "httptools" if fast else "h11"})
