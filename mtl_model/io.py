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
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


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


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; swap it in for `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    temp.chmod(
        0o777 & ~_umask()
    )  # mkdtemp makes it 0700: give the finished folder the usual mode (shared storage, other users)
    try:
        yield temp
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
