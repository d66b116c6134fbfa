"""The temporary Prefect server of a command-line run dies with that run.

`python flows/pipeline.py` without `PREFECT_API_URL` makes Prefect start a temporary API server as a child
process; Prefect stops it when the flow ends, but a SIGKILLed (or OOM-killed) flow cannot, and the server would
run on. `tie_temporary_server_to_this_process` asks the kernel to send that child SIGTERM when its parent dies
(Linux `PR_SET_PDEATHSIG`), by wrapping the one call that starts it.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tie_temporary_server_to_this_process() -> None:
    """Make Prefect's temporary server (if this process starts one) exit when this process dies. Linux only, and
    only for a server started from the main thread: the kernel ties the child to the thread that forked it."""
    if not sys.platform.startswith("linux"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "tied_to_parent", False):
        return
    original_popen = subprocess.Popen

    def run_uvicorn_command(self: SubprocessASGIServer) -> subprocess.Popen[Any]:
        if threading.current_thread() is not threading.main_thread():
            return start(self)

        def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
            return original_popen(*args, preexec_fn=_die_with_parent, **kwargs)

        subprocess.Popen = popen  # only for the duration of Prefect's one Popen call below
        try:
            return start(self)
        finally:
            subprocess.Popen = original_popen

    run_uvicorn_command.tied_to_parent = True  # type: ignore[attr-defined]
    SubprocessASGIServer._run_uvicorn_command = run_uvicorn_command
