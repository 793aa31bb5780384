"""uvicorn's h11 protocol with two guards against idle and slow clients (slowloris):

- a deadline for a request's headers: a connection that has sent no complete request line and
  headers within `header_timeout` seconds (at its start, or after its previous answer) is closed;
- a ceiling on open connections (`max_open`), far above the requests served at once, so only a
  burst of new sockets, never a few idle ones, can refuse a client.

uvicorn's own `limit_concurrency` counts open connections, idle ones included (64 sockets that
send nothing answered every request, /health too, with 503 for as long as they stayed open). The
limit on requests in flight is RequestLimit in app.py, which lets health checks through.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11(H11Protocol):
    header_timeout = 10.0  # seconds
    max_open = 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers arrived: the body has its own limit
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float, max_open: int) -> type[GuardedH11]:
    """A GuardedH11 class with these limits (uvicorn builds one instance per connection)."""
    return type(
        "GuardedH11", (GuardedH11,), {"header_timeout": header_timeout, "max_open": max_open}
    )
