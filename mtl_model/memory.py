"""Peak memory of one block of work, comparable between runs in the same process.

On a GPU: PyTorch's peak allocated bytes during the block. On a CPU: the peak growth of the process's
resident set size (sampled every 5 ms by a thread) over its size when the block began, which counts
what the block itself needed (weights it loaded, gradients, optimizer state, activations) and not
what earlier work left resident.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from types import TracebackType

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def release_freed_memory(*, collect: bool = True) -> None:
    """Collect garbage (unless `collect` is False) and hand freed heap pages back to the OS (glibc `malloc_trim`), so
    memory an earlier block freed but kept resident does not hide what the next block needs."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the measurement is an upper bound of what is reused


def resident_bytes() -> int:
    """The process's current resident set size (Linux /proc; elsewhere the peak so far, via getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """`with PeakMemory(device) as memory: …` then `memory.peak_mb` and `memory.kind`."""

    def __init__(self, device: str, interval: float = 0.005) -> None:
        self.cuda = str(device).startswith("cuda")
        self.kind = "cuda peak allocated" if self.cuda else "RSS growth"
        self.interval = interval
        self._start = self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, resident_bytes())

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        release_freed_memory()
        self._start = self._peak = resident_bytes()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self._peak = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._peak = max(self._peak, resident_bytes())

    @property
    def peak_mb(self) -> float:
        return round((self._peak - self._start) / 2**20, 1)
