"""Training checkpoints on disk: atomic `step-XXXXXXXX.pt` files tagged with the run setup's fingerprint.

What goes into a checkpoint is `TrainingRun.state_dict()`; this module only stores, finds and prunes
the files, so that a run resumes only from a checkpoint written by the same config and data.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from mtl_model.io import atomic_path

CHECKPOINT_RE = re.compile(r"^step-(\d{8})\.pt$")
FINGERPRINT_KEY = "fingerprint"


class Checkpointer:
    """Atomic `step-XXXXXXXX.pt` files in one folder; only those written by the same run setup are resumed."""

    def __init__(self, directory: str | Path, fingerprint: str, keep: int = 2) -> None:
        self.directory, self.fingerprint, self.keep = Path(directory), fingerprint, keep

    def files(self) -> list[Path]:
        """Complete checkpoints, oldest first (temp files never match the name pattern)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if CHECKPOINT_RE.match(p.name))

    def latest(self) -> dict | None:
        """The newest checkpoint of this setup, as it was given to `save` (the fingerprint tag removed)."""
        for path in reversed(self.files()):
            state = torch.load(path, map_location="cpu", weights_only=False)
            if state.get(FINGERPRINT_KEY) == self.fingerprint:
                return {key: value for key, value in state.items() if key != FINGERPRINT_KEY}
            print(f"ignoring checkpoint {path}: written by a different config or data", file=sys.stderr)
        return None

    def save(self, state: dict) -> Path:
        """Write `state` (it must hold `step`) atomically, then prune all but the newest `keep` files."""
        path = self.directory / f"step-{state['step']:08d}.pt"
        with atomic_path(path) as temp:
            torch.save({**state, FINGERPRINT_KEY: self.fingerprint}, temp)
        for old in self.files()[: -self.keep]:
            old.unlink()
        return path

    def clear(self) -> None:
        """Remove every checkpoint: the finished model supersedes them."""
        for path in self.files():
            path.unlink()
