"""Audit output: the terminal table, the JSON report, the exclude list and the size histogram."""

from __future__ import annotations

from pathlib import Path

from imgclf.audit.scan import MAX_ASPECT, AuditReport
from imgclf.data.folder import exclude_text
from imgclf.files import write_json, write_text
from imgclf.tables import table

MAX_LISTED = 20


def format_audit(r: AuditReport) -> str:
    out = _overview(r)
    for title, items in _sections(r):
        if items:
            out += ["", f"{title}: {len(items)}"]
            out += [f"  {x}" for x in items[:MAX_LISTED]]
            if len(items) > MAX_LISTED:
                out.append(f"  ... and {len(items) - MAX_LISTED} more (see the JSON report)")
    out += _suspect_counts(r)
    problems = r.problems()
    out += [f"warning: {w}" for w in r.warnings()]
    out += ["", "problems: " + ("; ".join(problems) if problems else "none")]
    return "\n".join(out)


def _overview(r: AuditReport) -> list[str]:
    """Counts per class and split, what was readable, modes, formats and the size table."""
    out = [f"audit of {r.root}", ""]
    classes = sorted({c for counts in r.counts.values() for c in counts})
    splits = list(r.counts)
    counts = [[c, *(str(r.counts[s].get(c, "-")) for s in splits)] for c in classes]
    counts.append(["total", *(str(sum(r.counts[s].values())) for s in splits)])
    out.append(table(counts, ["class", *splits], right=range(1, len(splits) + 1)))
    out += [
        "",
        f"readable images: {r.images}    unreadable: {len(r.unreadable)}    "
        f"non-image files ignored: {r.non_image_files}",
    ]
    out.append("modes: " + ", ".join(f"{m} {n}" for m, n in r.modes.items()))
    out.append("formats: " + ", ".join(f"{m} {n}" for m, n in r.formats.items()))
    if r.size_stats.get("width"):
        w, h = r.size_stats["width"], r.size_stats["height"]
        stats = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")
        rows = [[k, f"{w[k]:.1f}", f"{h[k]:.1f}"] for k in stats]
        out += ["", table(rows, ["", "width", "height"], right=(1, 2))]
    return out


def _sections(r: AuditReport) -> list[tuple[str, list]]:
    return [
        ("unreadable files", [f"{u['path']}: {u['reason']}" for u in r.unreadable]),
        (
            "duplicated across splits (train/test leak)",
            [" = ".join(g) for g in r.duplicates_across],
        ),
        ("duplicates within a split", [" = ".join(g) for g in r.duplicates_within]),
        ("near-duplicates across splits (leak)", [_near(g) for g in r.near_duplicates_across]),
        ("near-duplicates within a split", [_near(g) for g in r.near_duplicates_within]),
        *_suspects(r),
        ("folders not followed", [f"{x['path']}: {x['reason']}" for x in r.refused_links]),
        ("empty class folders", r.empty_class_folders),
        (
            "classes missing from a split",
            [f"{s}: {', '.join(c)}" for s, c in r.missing_classes.items()],
        ),
        ("animated images (first frame used)", r.animated),
        ("tiny images (< 8 px)", r.tiny),
        (f"extreme aspect ratios (over {MAX_ASPECT}:1)", r.extreme_aspect),
        ("non-image files (examples)", r.non_image_examples),
    ]


def _suspects(r: AuditReport) -> list[tuple[str, list[str]]]:
    """The --label-issues sections: the top suspect labels, then the outliers."""
    issues = [
        f"{x['score']:.3f} {x['split']}:{x['path']} ({x['text']})"
        if "text" in x  # multi-label: missing and extra labels
        else f"{x['score']:.3f} {x['split']}:{x['path']} ({x['given']} -> {x['suggested']}"
        + (", confident)" if x["confident"] else ")")
        for x in r.label_issues
    ]
    outliers = [f"{x['score']:.3f} {x['split']}:{x['path']}" for x in r.outliers]
    return [("suspect labels, most suspect first", issues), ("outliers, farthest first", outliers)]


def _suspect_counts(r: AuditReport) -> list[str]:
    """How the suspects were found and how many per split and class pair."""
    if not r.label_issue_summary:
        return []
    s = r.label_issue_summary
    if s.get("multi_label"):
        how = (
            f"images with a likely missing or extra label (confident learning per class); "
            f"features {s['features']}, 5-fold out-of-sample per-label accuracy "
            f"{s['out_of_sample_label_accuracy']:.1%} on {s['images']} images"
        )
    else:
        how = (
            f"({s['confident']} confident by Northcutt et al.'s thresholds, the rest predicted != "
            f"given); features {s['features']}, 5-fold out-of-sample accuracy "
            f"{s['out_of_sample_accuracy']:.1%} on {s['images']} images"
        )
    out = ["", f"label issues: {len(r.label_issues)} {how}"]
    out += [f"  {sp}: {pair}: {n}" for sp, c in s["by_split"].items() for pair, n in c.items()]
    per_split = ", ".join(f"{sp} {sum(o['split'] == sp for o in r.outliers)}" for sp in r.counts)
    out.append(f"outliers: {len(r.outliers)} ({per_split})")
    return out


def _near(g: dict) -> str:
    members = " ~ ".join(f"{m['split']}:{m['path']}" for m in g["members"])
    return f"{g['score']:.3f} ({g['method']}) {members}"


def write_audit_outputs(
    r: AuditReport, out_dir: Path | None, json_path: str = "", exclude_path: str = ""
) -> list[Path]:
    written = []
    exclude = exclude_text(sorted({*r.bad_raw, *r.leaks_raw, *r.issues_raw, *r.outliers_raw}))
    targets = [(json_path, "json"), (exclude_path, "exclude")]
    if out_dir is not None:
        targets += [
            (str(out_dir / "audit.json"), "json"),
            (str(out_dir / "exclude.txt"), "exclude"),
        ]
    for path, kind in targets:
        if path:
            written.append(
                write_json(path, r.to_dict()) if kind == "json" else write_text(path, exclude)
            )
    return written
