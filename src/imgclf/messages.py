"""Text for the user: warnings on stderr with one prefix, and names made safe to print."""

from __future__ import annotations

import re
import sys

# C0 controls (ESC starts the terminal's escape and OSC sequences), DEL and the C1 block:
# a file name holding them could clear the screen or retitle the window when printed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class UsageError(ValueError):
    """A bad option, config value or combination of them: one line, exit status 2 (as for
    argparse's own usage errors)."""


def printable(text: str, lines: bool = False) -> str:
    """text with every control character written as an escape (\\x1b, \\n), the rest as is;
    lines=True keeps the newlines of a multi-line report."""
    if lines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def warn(msg: str) -> None:
    print(f"imgclf: warning: {printable(msg)}", file=sys.stderr, flush=True)
