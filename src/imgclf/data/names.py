"""Class names from archives and label files: each becomes a folder name, so each must be one
safe, distinct path component."""

from __future__ import annotations

import os


def class_name_problem(name: object) -> str:
    """Why `name` cannot be a class (it becomes a folder name), or ''."""
    if not isinstance(name, str):
        return "is not text"
    if not name.strip():
        return "is empty"
    if any(c in name for c in "/\\") or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return "holds a path separator or a control character"
    if name.startswith("."):  # '.' and '..' leave the folder; '.x' would be a hidden folder
        return "starts with '.'"
    if len(os.fsencode(name)) > 255:
        return "is longer than a file name may be"
    return ""


def check_class_names(names: list[object], source: str) -> list[str]:
    """Class names from an archive or a label file, refused by name unless each is one safe,
    distinct path component: they become folders, and two equal names would merge classes."""
    seen: set[str] = set()
    for name in names:
        why = class_name_problem(name)
        if not why and name in seen:
            why = "appears twice (two classes would merge)"
        if why:
            raise ValueError(f"{source}: class name {name!r} {why}"[:300])
        seen.add(name)  # type: ignore[arg-type]
    return names  # type: ignore[return-value]
