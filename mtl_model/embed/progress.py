"""How far an embedding run is: rows done, rows per second and the time left, for the log and for Prefect."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class EmbedProgress:
    """Counts rows as shards finish (shards already on disk count as done, not as speed)."""

    total_rows: int
    done_rows: int = 0
    computed_rows: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, rows: int, *, computed: bool) -> None:
        self.done_rows += rows
        if computed:
            self.computed_rows += rows

    @property
    def percent(self) -> float:
        return 100.0 * self.done_rows / self.total_rows if self.total_rows else 100.0

    def line(self) -> str:
        """`1,200/4,000 rows (30.0 %), 412 rows/s, about 7 s left`."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        speed = self.computed_rows / elapsed
        left = (self.total_rows - self.done_rows) / speed if speed > 0 else 0.0
        return (
            f"{self.done_rows:,}/{self.total_rows:,} rows ({self.percent:.1f} %), {speed:,.0f} rows/s, "
            f"about {left:,.0f} s left"
        )
