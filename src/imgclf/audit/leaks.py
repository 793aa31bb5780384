"""Which audited images leak: pairs of exact copies (for the near-duplicate search to skip), and
the held-out side of every cross-split group, which `--exclude-leaks` lists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgclf.data.folder import display_path

if TYPE_CHECKING:  # scan.py's report uses near_leaks: the report's type only, for the hints
    from imgclf.audit.scan import AuditReport


def exact_pairs(report: AuditReport) -> set[frozenset[str]]:
    """Every pair of byte-identical files (display paths), already reported as duplicates."""
    return {
        frozenset((a, b))
        for g in report.duplicates_across + report.duplicates_within
        for i, a in enumerate(g)
        for b in g[i + 1 :]
    }


def leak_members(report: AuditReport) -> list[str]:
    """Raw paths of the held-out side (test, else val) of every cross-split duplicate group."""
    splits = {s for _, s in report.readable_raw}
    held_out = "test" if "test" in splits else "val"
    shown = {display_path(p): p for p, _ in report.readable_raw}
    split_of = {display_path(p): s for p, s in report.readable_raw}
    near = near_leaks(report.near_duplicates_across, {held_out})
    exact = {p for g in report.duplicates_across for p in g if split_of.get(p) == held_out}
    return sorted(shown[p] for p in near | exact)


def near_leaks(groups: list[dict[str, Any]], held_out: set[str]) -> set[str]:
    """Display paths of the held-out members of cross-split groups whose own best match lies
    outside held_out: a direct pair with a training image, not a chain through a third image."""
    return {
        m["path"]
        for g in groups
        for m in g["members"]
        if m["split"] in held_out and m.get("match_split", m["split"]) not in held_out
    }
