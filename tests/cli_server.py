"""The tests' way to run `imgclf`: the CLI's own entry point (`imgclf.cli:main`, what the console
script calls) in a fresh process forked from a warm interpreter that has already imported torch,
NumPy and the CLI, so a command pays for its own work and not for those imports again (about
1.5 s a command, over some 200 commands in the suite).

Each command is a real process of its own: its own working folder, environment, standard
streams (files, read back as text), exit status, atexit handlers and children; nothing it changes
reaches the tests or the next command. What a fork cannot give, a fresh interpreter does: an
environment that changes how Python or the C libraries start (PYTHON*, LD_*, GLIBC_TUNABLES,
OMP_*) is run as the console script itself, and so is every command when IMGCLF_TEST_FRESH=1.

Protocol: one JSON line a command on the server's stdin, one JSON line back ({"rc": N} or
{"timeout": true}). Run as a script; it imports what a command would import and waits.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
import traceback

STARTUP_KEYS = ("PYTHON", "LD_", "GLIBC_TUNABLES", "OMP_", "MKL_", "OPENBLAS_")


def needs_fresh_interpreter(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """True when env differs from the server's in a variable read at interpreter start."""
    keys = {k for k in {*env, *server_env} if k.startswith(STARTUP_KEYS)}
    return any(env.get(k) != server_env.get(k) for k in keys)


def _child(request: dict) -> None:
    """In the forked process: become the command, run it, exit with its status (never return
    into the server's loop, whatever happens)."""
    rc = 1
    try:
        _become(request)
        rc = _run()
        atexit._run_exitfuncs()  # what the interpreter runs at exit (temp folders, pools)
    except BaseException:  # noqa: BLE001  (traceback and 1, as Python does)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _become(request: dict) -> None:
    os.setsid()  # its own process group: a timeout kills it and whatever it started
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fds = [os.open(os.devnull, os.O_RDONLY)]
    fds += [os.open(request[k], os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for k in ("out", "err")]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = ["imgclf", *request["argv"]]
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _run() -> int:
    from imgclf.cli import main

    try:
        return main()
    except SystemExit as e:  # argparse's usage errors and --version
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"rc": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"timeout": True}
        time.sleep(0.01)


def serve() -> None:
    # what nearly every command imports first (torch before any TensorFlow: backends/keras)
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torchvision.models  # noqa: F401

    import imgclf.cli.parser  # noqa: F401

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints must not break the protocol
    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps(_wait(pid, request["timeout"])), file=replies, flush=True)


if __name__ == "__main__":
    serve()
