"""Multi-label cells of a labels CSV: 'cat dog', 'cat;dog', "['cat', 'dog']" (Hugging Face's list
column) or an empty cell (none of the classes), and the ImageIndex they make (data/folder.py:
`sets`, with each image's rarest class as its stratum for the seeded splits)."""

from __future__ import annotations

import ast
from collections import Counter

from imgclf.data.folder import ImageIndex
from imgclf.messages import UsageError

# delimiters people use that imgclf does not split on unless told: a cell holding one is
# refused by default rather than read as one odd class name
OTHER_DELIMITERS = (",", "|")

Row = tuple[str, str, str]  # (image path, label cell, "file line N" for errors)


def split_cell(cell: str, delim: str, where: str) -> list[str]:
    """The classes one cell names, in order; duplicates and mixed delimiters are refused."""
    cell = cell.strip()
    if cell.startswith("["):  # a list column: ['cat', 'dog']
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            raise UsageError(f"{where}: label cell {cell!r} is not a list of names") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise UsageError(f"{where}: label cell {cell!r} is not a list of names")
        parts = [x.strip() for x in parsed]
    elif delim == "none":
        parts = [cell]
    elif delim:
        parts = [x.strip() for x in cell.split(delim)]
    else:
        parts = [x.strip() for x in cell.split(";")] if ";" in cell else cell.split()
        odd = [d for d in OTHER_DELIMITERS if any(d in x for x in parts)]
        if odd:
            raise UsageError(
                f"{where}: label cell {cell!r} holds {odd[0]!r}, which imgclf does not split on "
                f"by default (spaces or ';'): give --label-delim {odd[0]!r} (or 'none' for a "
                "class name that holds it)"
            )
    parts = [x for x in parts if x]
    twice = [c for c, n in Counter(parts).items() if n > 1]
    if twice:
        raise UsageError(f"{where}: label cell {cell!r} names {twice[0]!r} twice")
    return parts


def is_multi_label(found: dict[str, list[Row]], delim: str, asked: bool) -> bool:
    """--multi-label, or any cell naming several classes (an empty cell alone is more often a
    forgotten label: refused unless --multi-label says an image may show none)."""
    cells = [(cell, where) for rows in found.values() for _, cell, where in rows]
    return asked or any(len(split_cell(cell, delim, where)) > 1 for cell, where in cells)


def multi_indices(found: dict[str, list[Row]], delim: str) -> dict[str, ImageIndex]:
    """split -> rows -> one ImageIndex per split over one sorted class list; a class no train
    image has is refused (the model could never learn it), naming a row that has it."""
    cells = {k: [(p, split_cell(c, delim, w), w) for p, c, w in rows] for k, rows in found.items()}
    names = sorted({c for rows in cells.values() for _, cs, _ in rows for c in cs})
    for name in names:
        if not name.isprintable():
            raise UsageError(f"label {name!r}: a class name must be printable text")
    in_train = {c for _, cs, _ in cells.get("train", []) for c in cs}
    for rows in cells.values():
        for _, cs, where in rows:
            if missing := [c for c in cs if c not in in_train]:
                raise UsageError(
                    f"{where}: class {missing[0]!r} has no train image (only held-out ones): a "
                    "model cannot learn it; add train images or drop it"
                )
    pos = {n: i for i, n in enumerate(names)}
    freq = Counter(c for rows in cells.values() for _, cs, _ in rows for c in cs)
    out = {}
    for split, rows in cells.items():
        rows = sorted(rows)
        sets = [tuple(sorted(pos[c] for c in cs)) for _, cs, _ in rows]
        # stratum: the image's rarest class, so that carving val keeps some of every class
        strata = [min(s, key=lambda i: (freq[names[i]], i)) if s else len(names) for s in sets]
        out[split] = ImageIndex([p for p, _, _ in rows], strata, names, sets=sets)
    return out


def sets_text(index: ImageIndex) -> str:
    """'multi-label: 3 classes, 1.6 per image on average, 12 images with none' for the log."""
    assert index.sets is not None
    n = max(len(index.sets), 1)
    none = sum(not s for s in index.sets)
    mean = sum(len(s) for s in index.sets) / n
    return f"multi-label: {mean:.2f} classes per image on average, {none} image(s) with none"


def as_multi_label(index: ImageIndex) -> ImageIndex:
    """--multi-label on single-label data: each image's one class is its set."""
    if index.sets is not None:
        return index
    out = index.subset(list(range(len(index))))
    out.sets, out.origin = [(y,) for y in index.labels], index.origin
    return out
