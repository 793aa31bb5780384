"""Run a parsed command's handler; expected failures become one line on stderr and an exit
status (0 success, 1 failed or problems found, 2 usage error, 130 interrupted)."""

from __future__ import annotations

import argparse
import sys

from imgclf.messages import UsageError, printable


def dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        return _error(args, e, 2)
    except MemoryError:
        return _error(args, "out of memory", 1)
    except RecursionError:
        return _error(args, "nesting too deep (folders?)", 1)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, OSError) and e.filename and str(e.filename) not in str(msg):
            msg = f"{e.filename}: {e.strerror or e}"
        return _error(args, msg, 1)


def _error(args: argparse.Namespace, msg: object, status: int) -> int:
    print(f"imgclf {args.command}: error: {printable(str(msg))}", file=sys.stderr)
    return status
