"""Errors that callers must tell apart: bad input is the user's to fix and is never retried."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one place in one input file."""

    path: str
    location: str  # "line 12", "row doc-7", "byte offset 3051"
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.location}: {self.message}" if self.location else f"{self.path}: {self.message}"


class DataValidationError(ValueError):
    """Input data is malformed. Carries every problem found, so the user fixes them in one pass."""

    def __init__(self, problems: list[Problem], *, limit: int = 50) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:limit])
        more = f"\n  ... and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        files = sorted({p.path for p in self.problems})
        super().__init__(f"{len(self.problems)} problem(s) in input data ({', '.join(files)}):\n{shown}{more}")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""
