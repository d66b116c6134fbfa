"""One writer per output folder: an advisory `fcntl` lock in `<out>/.mtl.lock`, held for the whole run.

A second run into the same folder fails at once (exit 2) naming the holder, instead of both training and
one deleting the other's files. The kernel releases the lock when its process dies, so a lock file left by a
killed run is simply taken over (with a log line naming the dead holder).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from mtl_model.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".mtl.lock"


class OutputLocked(ConfigError):
    """Another live run is writing the same output folder."""


def _holder(text: str) -> dict:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (started {started}: {holder.get('command', '?')})"


def _acquire(path: Path) -> int:
    """An open descriptor holding the lock on `path` (the file that is at `path` now, not an unlinked one)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise OutputLocked(
                f"{path.parent} is being written by {_describe(holder)}; wait for that run to end or choose another "
                f"--out (lock: {path})"
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our lock: lock the new one


@contextlib.contextmanager
def output_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold `<out_dir>/.mtl.lock` for the block. A folder this call had to create is removed again when the block
    fails and left nothing else in it (so bad input leaves no output folder behind)."""
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = _acquire(path)
    previous = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
    if previous:
        log.warning("%s: taking over the lock left by %s, which is no longer running", out, _describe(previous))
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    succeeded = False
    try:
        yield path
        succeeded = True
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiting opener then locks a fresh file
        os.close(fd)
        if created and not succeeded and not any(out.iterdir()):
            out.rmdir()
