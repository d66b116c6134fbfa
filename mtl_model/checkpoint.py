"""Training checkpoints on disk: atomic `step-XXXXXXXX.pt` files tagged with the run setup's fingerprint.

What goes into a checkpoint is `TrainingRun.state_dict()`; this module only stores, finds and prunes
the files, so that a run resumes only from a checkpoint written by the same config and data.

A checkpoint folder may be shared (`remote_training.shared_dir`) or planted, so its files are untrusted:
they are read with PyTorch's weights-only unpickler, which builds tensors and plain containers and refuses
every other global (no code runs). A state must therefore hold only what that unpickler accepts (`save`
checks); a file that cannot be read that way, or that was written by another setup, is skipped with a
warning naming it and why, and the next older one is tried.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from mtl_model.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^step-(\d{8})\.pt$")
FINGERPRINT_KEY = "fingerprint"
PLAIN_SCALARS = (str, int, float, bool, type(None))  # exact types: numpy's float64 subclasses float, yet it pickles
# as a numpy global that the weights-only unpickler refuses
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def plain(value: object) -> object:
    """`value` with numpy scalars and arrays turned into Python numbers and lists, containers rebuilt as
    dicts, lists and tuples; tensors are left as they are. What the weights-only unpickler accepts."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN_SCALARS:
        return value
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if hasattr(value, "tolist"):  # numpy scalar (→ int/float/bool) or array (→ nested lists)
        return value.tolist()
    raise TypeError(f"a checkpoint holds tensors and plain Python values, not {type(value).__name__}")


def check_plain(value: object, where: str = "state") -> None:
    """Raise TypeError naming the first value (by its path) that the weights-only unpickler would refuse."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN_SCALARS:
        return
    if type(value) in (dict, OrderedDict):  # another dict type (defaultdict) is a global the unpickler refuses
        for key, item in value.items():
            if type(key) not in PLAIN_SCALARS:
                raise TypeError(f"checkpoint key {where}[{key!r}] is a {type(key).__name__}")
            check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    else:
        raise TypeError(
            f"checkpoint value {where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint holds "
            "only tensors, dicts, lists, tuples, str, int, float, bool and None (the weights-only unpickler's types)"
        )


def load_plain(path: str | Path) -> object:
    """A `torch.save` file read with the weights-only unpickler. Raises ValueError saying why it cannot be read:
    not a complete torch.save archive, a global it refuses (nothing is executed), or any other damage."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; anything else (a bare pickle, a cut file) is refused
        raise ValueError("unreadable (not a complete torch.save archive: truncated, or another format)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _GLOBAL_RE.search(str(error))
        refused = f"refused to unpickle {found.group(1)}" if found else _first_line(error)
        raise ValueError(f"not a plain-tensor checkpoint ({refused})") from None
    except Exception as error:  # untrusted bytes: any failure to parse them means the same thing
        raise ValueError(f"unreadable ({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class Checkpointer:
    """Atomic `step-XXXXXXXX.pt` files in one folder; only those written by the same run setup are resumed."""

    def __init__(self, directory: str | Path, fingerprint: str, keep: int = 2) -> None:
        self.directory, self.fingerprint, self.keep = Path(directory), fingerprint, keep

    def files(self) -> list[Path]:
        """Complete checkpoints, oldest first (temp files never match the name pattern)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if CHECKPOINT_RE.match(p.name))

    def latest(self, check: Callable[[dict], None] | None = None) -> dict | None:
        """The newest checkpoint of this setup, as it was given to `save` (the fingerprint tag removed).

        Files are read with the weights-only unpickler; one that cannot be read, was written by another setup,
        or that `check` rejects (it raises ValueError) is skipped with a warning, and the next older one tried.
        """
        for path in reversed(self.files()):
            try:
                state = self._read(path)
                if check is not None:
                    check(state)
            except ValueError as error:
                log.warning("ignoring checkpoint %s: %s", path, error)
                continue
            return state
        return None

    def _read(self, path: Path) -> dict:
        state = load_plain(path)
        if not isinstance(state, dict) or not isinstance(state.get(FINGERPRINT_KEY), str):
            raise ValueError("not a training checkpoint (no fingerprint)")
        if state[FINGERPRINT_KEY] != self.fingerprint:
            raise ValueError("written by a different config or data")
        step, named = state.get("step"), int(CHECKPOINT_RE.match(path.name).group(1))
        if type(step) is not int or step != named:
            raise ValueError(f"not the checkpoint of step {named} its name says (it holds step {step!r:.20})")
        return {key: value for key, value in state.items() if key != FINGERPRINT_KEY}

    def save(self, state: dict) -> Path:
        """Write `state` (it must hold `step`, and only what the weights-only unpickler reads back: `check_plain`)
        atomically, then prune all but the newest `keep` files."""
        check_plain(state)
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
