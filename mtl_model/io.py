"""Content hashing and atomic writes: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (streamed, so large files do not load into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """sha256 over every file under a directory (relative names and contents), or of one file."""
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


HF_PREFIX = "hf:"  # `hf:<name>[/<config>][:<split>]`: a Hugging Face hub dataset instead of a file


def is_hub_source(source: str | Path) -> bool:
    """Whether a data source names a hub dataset (`hf:…`) rather than a local file or folder."""
    return str(source).startswith(HF_PREFIX)


def source_fingerprint(source: str | Path) -> str:
    """Content hash of a data source: a file's or folder's sha256; a hub dataset (`hf:…`) is named, not hashed."""
    if is_hub_source(source):
        return f"hub:{source}"
    return tree_sha256(source)


def json_sha256(value: Any) -> str:
    """Stable hash of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the library's own source: a code change invalidates every cached step."""
    package_root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package_root.rglob("*.py")):
        digest.update(str(source.relative_to(package_root)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _temp_sibling(path: Path) -> Path:
    """`.<name>.tmp-<pid>-<random>`: the writer's pid in the name, so a cleanup never deletes a live writer's file."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def temp_of_another_live_writer(name: str) -> bool:
    """Whether a `_temp_sibling` file belongs to another process that is still running (so it must not be deleted)."""
    try:
        pid = int(name.rsplit(".tmp-", 1)[1].split("-")[0])
        os.kill(pid, 0)
    except (IndexError, ValueError):
        return False
    except PermissionError:
        return True  # alive, another user's
    except ProcessLookupError:
        return False
    return pid != os.getpid()  # our own leftovers (an earlier step of this run) are safe to remove


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(target)
    try:
        yield temp
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for every thread)."""
    try:
        line = next(
            status_line
            for status_line in Path("/proc/self/status").read_text().splitlines()
            if status_line.startswith("Umask:")
        )
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        return 0o022


def follow_umask(root: Path) -> None:
    """Give a finished folder and everything in it the modes the umask gives new files (0644/0755 usually):
    `mkdtemp` makes 0700 and some writers (safetensors) 0600, so another account on shared storage could read
    the config but not the weights."""
    umask = _umask()
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


FILES_MANIFEST = "_files.json"  # every file of a finished folder with its size and sha256


def write_files_manifest(root: Path) -> None:
    """Record every file under `root` (size and sha256) in `root/_files.json`, so a reader can tell a complete
    folder from one with a deleted, truncated or changed file (`files_manifest_problems`)."""
    files = {
        str(path.relative_to(root)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != FILES_MANIFEST
    }
    write_json_atomic(root / FILES_MANIFEST, {"format": "mtl-files/1", "files": files})


def files_manifest_problems(root: str | Path) -> list[str]:
    """What differs between a folder and its `_files.json`: one line per missing, resized or changed file
    (empty: the folder is exactly what was written). A folder without a readable manifest is one problem."""
    root = Path(root)
    try:
        files = json.loads((root / FILES_MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{root / FILES_MANIFEST}: missing or unreadable ({type(exc).__name__})"]
    problems = []
    for name, record in files.items():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != record["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, {record['bytes']} were written")
        elif file_sha256(path) != record["sha256"]:
            problems.append(f"{path}: contents changed since it was written (sha256 differs)")
    return problems


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; swap it in for `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield temp
        follow_umask(temp)
        if target.exists():
            retired = _temp_sibling(target)
            os.replace(target, retired)
            os.replace(temp, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def write_json_atomic(path: str | Path, value: Any) -> None:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet_atomic(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as temp:
        pq.write_table(table, temp)
