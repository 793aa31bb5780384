"""`imgclf cache [list|prune|clear]`: the decoded-image cache and unpacked archives."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    k = sub.add_parser(
        "cache",
        help="list, prune or clear the decoded-image cache and unpacked archives",
        description="list: what is cached. prune: drop rows of changed or deleted files, compact, "
        "and remove what was unused for --older-than days. clear: remove all of it.",
    )
    k.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=("list", "prune", "clear"),
        help="default: list",
    )
    k.add_argument("--cache-dir", metavar="PATH", default="", help="default ~/.cache/imgclf")
    k.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        default=30.0,
        help="prune: remove stores unused this long",
    )
    return k


def run(args: argparse.Namespace) -> int:
    from imgclf.data import cache_admin

    if args.action == "clear":
        print(f"freed {cache_admin.clear(args.cache_dir) / 1e6:.1f} MB")
    elif args.action == "prune":
        r = cache_admin.prune(args.cache_dir, args.older_than)
        freed = (r["bytes_before"] - r["bytes_after"]) / 1e6
        print(f"removed {r['stores_removed']} unused stores; freed {freed:.1f} MB")
    else:
        print(cache_admin.describe(cache_admin.list_cache(args.cache_dir)))
    return 0
