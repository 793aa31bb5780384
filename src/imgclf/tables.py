"""The one way imgclf prints a table (tabulate): plain columns two spaces apart for the
terminal, or a Markdown pipe table where the output is meant to be pasted (bench, RESULTS.md).
Numbers are formatted by the caller and right-aligned here; text is left-aligned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    right: Sequence[int] = (),
    markdown: bool = False,
) -> str:
    """rows of already formatted cells; `right`: the indices of the columns to right-align."""
    align = ["right" if i in right else "left" for i in range(len(headers))]
    return tabulate(
        [[("" if v is None else v) for v in row] for row in rows],
        headers=list(headers),
        tablefmt="pipe" if markdown else "plain",
        colalign=align,
        disable_numparse=True,  # "1,234" and "95.00%" stay as the caller wrote them
    )
