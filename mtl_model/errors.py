"""Errors that callers must tell apart: bad input is the user's to fix and is never retried."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# Storage failures a retry cannot fix: the user must free space, fix permissions or choose another folder.
USER_FIXABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}


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


def is_user_fixable(exc: BaseException) -> bool:
    """Whether an OS error is one the user must fix (disk full, read-only, permissions, a file where a folder
    goes): such errors are never retried and end a command-line run with exit 2."""
    return isinstance(exc, OSError) and exc.errno in USER_FIXABLE_ERRNOS


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and what is wrong; for a full disk also the bytes free there."""
    path = exc.filename or "?"
    message = f"{path}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        existing = next((p for p in [Path(path), *Path(path).parents] if p.exists()), Path(os.sep))
        message += f" ({shutil.disk_usage(existing).free:,} bytes free on that filesystem)"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        message += " (a file stands where the output folder goes: choose another --out)"
    return message
