"""Wall time and peak RSS of one child process, measured so that the parent's own memory does not leak in.

Linux counts a child's peak RSS from before its `exec`: a child forked from a benchmark that has loaded torch
reports at least the benchmark's RSS. So the command runs under a tiny launcher (`python -I -S`, a few MiB) that
forks it and reads `RUSAGE_CHILDREN` after it exits.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as report:
    report.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


@dataclass(frozen=True)
class ProcessStats:
    """What one run of a command cost."""

    returncode: int
    seconds: float  # wall, from start to exit (the launcher adds ~20 ms)
    peak_rss_bytes: int  # the command's own peak resident memory
    stdout: str | None  # captured when asked for


def run_measured(
    command: list[str],
    *,
    stderr: IO[str] | int | None = None,
    capture_stdout: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessStats:
    """Run `command` to completion under the launcher; its stdout is returned when `capture_stdout`, else dropped."""
    with tempfile.TemporaryDirectory(prefix="process-stats-") as folder:
        report = Path(folder) / "maxrss"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), *command],
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=env,
            cwd=cwd,
        )
        seconds = time.perf_counter() - started
        peak_kib = int(report.read_text()) if report.is_file() else 0  # ru_maxrss is in KiB on Linux
    return ProcessStats(done.returncode, seconds, peak_kib * 1024, done.stdout if capture_stdout else None)
