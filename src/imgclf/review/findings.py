"""What `imgclf review` walks through, worst first: an audit's suspect labels, near-duplicate
leaks and outliers (audit.json), a run's `evaluate --label-issues` suspects, or `imgclf
suggest`'s list of unlabelled images to label. Each becomes one Item with the paths it shows
resolved on this machine; the page sees only items by number, never a path it could ask for."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.messages import UsageError

KINDS = ("label issue", "near-duplicate", "outlier", "to label")


@dataclass
class Item:
    kind: str
    path: str  # as corrections.csv names it: relative to DATA, or absolute when outside it
    real: str  # the file on this machine
    given: str  # its label ("" for an unlabelled image)
    suggested: str = ""
    given_probability: float | None = None
    suggested_probability: float | None = None
    score: float = 0.0
    reason: str = ""
    related: list[dict[str, Any]] = field(default_factory=list)  # {real, path, caption}

    def public(self, index: int) -> dict[str, Any]:
        """What the page gets (images by URL, no file system paths beyond the display one)."""
        return {
            "id": index,
            "kind": self.kind,
            "path": self.path,
            "given": self.given,
            "suggested": self.suggested,
            "given_probability": self.given_probability,
            "suggested_probability": self.suggested_probability,
            "score": self.score,
            "reason": self.reason,
            "related": [
                {"url": f"/image/{index}/{j + 1}", "caption": r["caption"]}
                for j, r in enumerate(self.related)
            ],
            "url": f"/image/{index}/0",
        }


class Resolver:
    """Paths as a report wrote them (relative to where it ran, or absolute) -> real files, and
    the name a correction gives them (relative to DATA when inside it)."""

    def __init__(self, root: Path, labels: dict[str, str], report_root: str = ""):
        """labels: each image of the data (real path) -> its class, as training reads it."""
        self.root, self.labels = os.path.realpath(root), labels
        self.report_root = report_root

    def real(self, shown: str) -> str:
        tries = [shown] if os.path.isabs(shown) else [shown, os.path.join(self.root, shown)]
        base = self.report_root
        if base and not os.path.isabs(shown) and shown.startswith(base):
            tries.append(os.path.join(self.root, os.path.relpath(shown, base)))
        for t in tries:
            if os.path.isfile(t):
                return os.path.realpath(t)
        raise UsageError(f"{shown}: in the findings but not found (from here or in {self.root})")

    def name(self, real: str) -> str:
        inside = real.startswith(self.root.rstrip(os.sep) + os.sep)
        return os.path.relpath(real, self.root) if inside else real


def from_audit(file: Path, root: Path, labels: dict[str, str]) -> list[Item]:
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{file}: cannot read the audit report ({e})") from None
    r = Resolver(root, labels, report.get("root", ""))
    # a multi-label audit's issues (missing/extra labels) have no one suggestion to take
    items = [_issue(x, r) for x in report.get("label_issues", []) if "suggested" in x]
    for g in report.get("near_duplicates_across", []) + report.get("near_duplicates_within", []):
        items += _near_duplicate(g, r)
    items += [_outlier(x, r) for x in report.get("outliers", [])]
    return _worst_first(items)


def from_run(run: Path, root: Path, labels: dict[str, str]) -> list[Item]:
    """`evaluate --label-issues` findings: every evaluation folder's metrics.json of the run."""
    found = sorted(run.glob("eval-*/metrics.json"))
    rows = [x for f in found for x in json.loads(f.read_text()).get("label_issues") or []]
    if not rows:
        raise UsageError(f"{run}: no label issues found by `imgclf evaluate {run} --label-issues`")
    r = Resolver(root, labels)
    return _worst_first([_issue(x, r) for x in rows])


def from_suggestions(file: Path, root: Path) -> tuple[list[Item], list[str]]:
    """`imgclf suggest`'s list (suggestions.json): unlabelled images, the model's guess, in
    the order suggest ranked them; and the suggesting run's classes. Their corrections name
    them by absolute path (they are added to the data, wherever they are)."""
    try:
        listing = json.loads(file.read_text())
        rows, run = listing["suggestions"], Path(listing["run"])
        names = json.loads((run / "meta.json").read_text())["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{file}: not an imgclf suggest list with its run ({e})") from None
    r = Resolver(root, {})
    items = []
    for x in rows:
        real = r.real(x["path"])
        why = f"uncertain: margin {x['margin']:.3f} between its two likeliest classes"
        items.append(
            Item(
                "to label", real, real, "", x["predicted"], None, x["probability"], x["score"], why
            )
        )
    return items, names


def _issue(x: dict[str, Any], r: Resolver) -> Item:
    real = r.real(x["path"])
    related = []
    for n in x.get("neighbours", []):
        try:
            nr = r.real(n["path"])
        except UsageError:
            continue  # a neighbour moved: show the rest
        caption = f"{n['class']} ({n['similarity']:.2f})"
        related.append({"real": nr, "path": r.name(nr), "caption": caption})
    why = ("confidently " if x.get("confident") else "") + (
        f"labelled {x['given']}, looks like {x['suggested']}"
    )
    return Item(
        "label issue", r.name(real), real, x["given"], x["suggested"],
        x.get("given_probability"), x.get("suggested_probability"), x["score"], why, related,
    )  # fmt: skip


def _near_duplicate(g: dict[str, Any], r: Resolver) -> list[Item]:
    """A group: one member (the test side of a leak: what excluding it fixes) beside the
    others; the decision is about it."""
    members = [(m, r.real(m["path"])) for m in g["members"]]
    members.sort(key=lambda mp: mp[0]["split"] != "test")
    (_, real), rest = members[0], members[1:]
    related = [
        {"real": p, "path": r.name(p), "caption": f"{m['split']} {r.labels.get(p, '')}".strip()}
        for m, p in rest
    ]
    splits = " and ".join(sorted({m["split"] for m, _ in members}))
    why = f"near-duplicate across {splits} ({g['method']}, {g['score']:.3f})"
    given = r.labels.get(real, "")
    return [Item("near-duplicate", r.name(real), real, given, "", None, None, g["score"], why,
                 related)]  # fmt: skip


def _outlier(x: dict[str, Any], r: Resolver) -> Item:
    real = r.real(x["path"])
    why = f"outlier: unlike the rest of its split ({x['score']:.3f})"
    return Item(
        "outlier", r.name(real), real, r.labels.get(real, ""), "", None, None, x["score"], why
    )


def _worst_first(items: list[Item]) -> list[Item]:
    """Label issues, then near-duplicates, then outliers; within each, highest score first."""
    return sorted(items, key=lambda i: (KINDS.index(i.kind), -i.score))
