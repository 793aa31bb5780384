"""`imgclf cache`: what the cache folder holds, and pruning or clearing it, so it cannot grow
without bound. Only folders imgclf makes are touched; anything else in --cache-dir stays."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from imgclf.data.cache_files import (
    default_cache_dir,
    file_stamp,
    remove_orphan_rows,
    sweep_temp_files,
)
from imgclf.data.cache_manifest import FORMAT, MANIFEST
from imgclf.data.folder import display_path
from imgclf.files import write_json_synced
from imgclf.tables import table

ARCHIVES = ("unzipped", "untarred", "cifar10", "cifar10-download")
OURS = ("decoded", *ARCHIVES)


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(
        os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs
    )


def _manifest(store: Path) -> dict[str, Any] | None:
    try:
        m = json.loads((store / MANIFEST).read_text(errors="surrogateescape"))
        return m if m.get("format") == FORMAT else None
    except (OSError, ValueError):
        return None


def list_cache(cache_dir: str | Path = "") -> list[dict[str, Any]]:
    """One row per decoded store and unpacked archive: kind, path, bytes, images, last used."""
    base = Path(cache_dir or default_cache_dir())
    rows = []
    for store in sorted((base / "decoded").glob("*")):
        if not store.is_dir():
            continue
        m = _manifest(store) or {}
        used = store / "lock"
        rows.append(
            {
                "kind": f"decoded {m.get('size', '?')} px",
                "path": str(store),
                "source": m.get("root", "(old or damaged: prune removes it)"),
                "images": len(m.get("ok", {})),
                "bytes": disk_bytes(store),
                "last_used": (used if used.exists() else store).stat().st_mtime,
            }
        )
    for kind in ARCHIVES:
        for d in sorted((base / kind).glob("*")):
            if d.is_dir() and not d.name.startswith("."):
                n = sum(len(fs) for _, _, fs in os.walk(d))
                rows.append(
                    {
                        "kind": kind,
                        "path": str(d),
                        "source": "",
                        "images": n,
                        "bytes": disk_bytes(d),
                        "last_used": d.stat().st_mtime,
                    }
                )
    return rows


def prune(cache_dir: str | Path = "", older_than_days: float = 30.0) -> dict[str, int]:
    """Drop rows of files that changed or are gone, compact each store, remove stores unused
    for `older_than_days` (or old-format ones) and temp folders a killed unpack left."""
    base = Path(cache_dir or default_cache_dir())
    cutoff = time.time() - older_than_days * 86400
    before = sum(disk_bytes(base / k) for k in OURS if (base / k).exists())
    removed = 0
    for store in sorted((base / "decoded").glob("*")):
        if not store.is_dir():
            continue
        with FileLock(str(store / "lock")):
            m = _manifest(store)
            if m is None or (store / "lock").stat().st_mtime < cutoff or not _compact(store, m):
                shutil.rmtree(store)
                removed += 1
    for kind in ARCHIVES:
        for d in (base / kind).glob(".tmp-*-*"):
            target = d.name[len(".tmp-") :].rsplit("-", 1)[0]
            with FileLock(str(base / kind / f"{target}.lock")):  # the lock its builder holds
                shutil.rmtree(d, ignore_errors=True)
    after = sum(disk_bytes(base / k) for k in OURS if (base / k).exists())
    return {"stores_removed": removed, "bytes_before": before, "bytes_after": after}


def _compact(store: Path, m: dict[str, Any]) -> bool:
    """Keep the rows whose files are unchanged, in a new data file; False when none are left."""
    sweep_temp_files(store)
    row_bytes = m["size"] * m["size"] * 3
    live = {k: v for k, v in m["ok"].items() if tuple(v[1:5]) == file_stamp(k)}
    failed = {k: v for k, v in m["failed"].items() if tuple(v[:4]) == file_stamp(k)}
    if not live:
        return False
    old = store / m["data"]
    new_name = f"rows-{os.urandom(4).hex()}.u8"
    src = os.open(old, os.O_RDONLY | os.O_NOFOLLOW)
    dst = os.open(store / new_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        for i, v in enumerate(live.values()):
            os.pwrite(dst, os.pread(src, row_bytes, v[0] * row_bytes), i * row_bytes)
            v[0] = i
        os.fsync(dst)
    finally:
        os.close(src)
        os.close(dst)
    m.update({"data": new_name, "rows": len(live), "ok": live, "failed": failed})
    write_json_synced(store / MANIFEST, m)
    old.unlink()  # a run reading it keeps its open file until it ends
    remove_orphan_rows(store, keep=new_name)  # left by a build killed or out of disk space
    return True


def clear(cache_dir: str | Path = "") -> int:
    """Remove everything imgclf put in the cache folder; return the bytes freed."""
    base = Path(cache_dir or default_cache_dir())
    freed = 0
    for kind in OURS:
        if (base / kind).is_dir():
            freed += disk_bytes(base / kind)
            shutil.rmtree(base / kind)
    return freed


def describe(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "the cache is empty"
    cells = [
        [
            r["kind"],
            f"{r['bytes'] / 1e6:.1f}",
            str(r["images"]),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])),
            display_path(r["source"] or r["path"]),
        ]
        for r in rows
    ]
    head = ["kind", "MB", "images", "last used", "source / path"]
    total = sum(r["bytes"] for r in rows)
    return f"{table(cells, head, right=(1, 2))}\ntotal {total / 1e6:.1f} MB"
