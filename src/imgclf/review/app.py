"""`imgclf review`'s local page (FastAPI, as `imgclf serve`): the findings one by one, each
decision written to corrections.csv as it is made (atomically: a crash or a closed tab loses
nothing, and reopening resumes where the last decision left off). The page asks for images by
item number only, so it can show nothing but the findings; it binds to loopback with the same
Host check as serve, and takes decisions only as JSON (a page elsewhere cannot post one
without a CORS preflight, which this server never answers)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from imgclf.data.corrections import read_rows, write_rows
from imgclf.review.findings import KINDS, Item
from imgclf.serve.config import LOCAL_HOSTS

ACTIONS = ("keep", "accept", "relabel", "exclude")


class Review:
    """The findings and the decisions so far (corrections.csv's rows, in the order made)."""

    def __init__(self, items: list[Item], classes: list[str], csv_path: Path):
        self.items, self.classes, self.csv = items, classes, csv_path
        self.labelling = bool(items) and all(i.kind == "to label" for i in items)
        self.by_path = {it.path: n for n, it in enumerate(items)}
        # earlier decisions on these items resume; rows about other images are kept as they are
        self.rows = read_rows(csv_path)
        self.lock = threading.Lock()

    def decisions(self) -> dict[int, dict[str, str]]:
        return {self.by_path[r["path"]]: r for r in self.rows if r["path"] in self.by_path}

    def progress(self) -> dict[str, Any]:
        done = self.decisions()
        kinds = {
            k: {"reviewed": sum(1 for n in done if self.items[n].kind == k), "total": total}
            for k in KINDS
            if (total := sum(1 for it in self.items if it.kind == k))
        }
        return {"reviewed": len(done), "total": len(self.items), "by_kind": kinds}

    def state(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "labelling": self.labelling,
            "items": [it.public(n) for n, it in enumerate(self.items)],
            "decisions": {str(n): r for n, r in self.decisions().items()},
            "progress": self.progress(),
            "corrections": str(self.csv),
        }

    def decide(self, n: int, action: str, label: str = "") -> dict[str, str]:
        it = self._item(n)
        if action not in ACTIONS:
            raise HTTPException(400, f"action {action!r}: one of {', '.join(ACTIONS)}")
        if action == "accept":
            if not it.suggested:
                raise HTTPException(400, f"item {n} has no suggested label to accept")
            label = it.suggested
        if action in ("accept", "relabel") and label not in self.classes:
            raise HTTPException(400, f"class {label!r} is not one of {', '.join(self.classes)}")
        if action == "keep" and self.labelling:
            raise HTTPException(400, "an unlabelled image has no label to keep: pick a class")
        decision = {"keep": "keep", "exclude": "exclude"}.get(action, "relabel")
        if decision == "relabel" and self.labelling:
            decision = "label"
        elif decision == "relabel" and label == it.given:
            decision, label = "keep", ""
        row = {
            "path": it.path,
            "given": it.given,
            "decision": decision,
            "new_label": label if decision in ("relabel", "label") else "",
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with self.lock:
            self.rows = [r for r in self.rows if r["path"] != it.path] + [row]
            write_rows(self.csv, self.rows)
        return row

    def undo(self) -> int | None:
        """Take back the latest decision on these findings; the item it was about."""
        with self.lock:
            for k in range(len(self.rows) - 1, -1, -1):
                if self.rows[k]["path"] in self.by_path:
                    gone = self.rows.pop(k)
                    write_rows(self.csv, self.rows)
                    return self.by_path[gone["path"]]
        return None

    def image(self, n: int, which: int) -> str:
        it = self._item(n)
        if which == 0:
            return it.real
        if not 1 <= which <= len(it.related):
            raise HTTPException(404, f"item {n} has no image {which}")
        return it.related[which - 1]["real"]

    def _item(self, n: int) -> Item:
        if not 0 <= n < len(self.items):
            raise HTTPException(404, f"no item {n}")
        return self.items[n]


def create_review_app(review: Review, hosts: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="imgclf review", docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or LOCAL_HOSTS)
    page = files("imgclf.review").joinpath("static/review.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return review.state()

    @app.post("/api/decide")
    async def decide(request: Request) -> dict[str, Any]:
        body = await _json(request)
        n, action = body.get("id"), body.get("action")
        if not isinstance(n, int) or not isinstance(action, str):
            raise HTTPException(400, "send {id: number, action: keep|accept|relabel|exclude}")
        row = review.decide(n, action, str(body.get("label") or ""))
        return {"id": n, "decision": row, "progress": review.progress()}

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        await _json(request)
        return {"id": review.undo(), "progress": review.progress()}

    @app.get("/image/{n}/{which}")
    def image(n: int, which: int) -> FileResponse:
        return FileResponse(review.image(n, which))

    return app


async def _json(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "decisions are sent as application/json")
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body
