"""Reading the corpus: which files, their rows as streamed record batches (whole or a row range), and the
validation scan that counts and checks every row before anything is written.

Memory stays bounded by one record batch whatever the corpus size: nothing here loads a whole file. The
duplicate-id check keeps 8 bytes per row in sorted runs on a temporary file, never a set of all ids (see
`DuplicateIdFinder`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_model.base import StrictModel
from mtl_model.errors import ConfigError, DataValidationError, Problem
from mtl_model.io import is_hub_source, source_fingerprint

CORPUS_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
MAX_LISTED_PROBLEMS = 200  # more would drown the first ones; the count of the rest is not needed to fix the input
RUN_KEYS = 1 << 21  # id keys sorted in memory at once by the duplicate check (16 MiB); more spill to a temporary file
MIN_MERGE_CHUNK = 1024  # keys read from each spilled run per merge round, at least
ROWS_LISTED_PER_ID = 10  # occurrences of one duplicated id that are listed (the count says how many there are)


class CorpusFile(StrictModel):
    """One input file: where, how many rows, and its content fingerprint (so a moved corpus is the same corpus)."""

    path: str
    """The file (or `hf:` source) as the corpus names it."""
    rows: int
    """Data rows counted by the validation scan."""
    fingerprint: str
    """Content hash of the file (`mtl_model.io.source_fingerprint`); a hub dataset is named, not hashed."""


def corpus_files(source: str | Path) -> list[str]:
    """The files of a corpus: one file, every supported file of a folder (sorted), or an `hf:` source."""
    if is_hub_source(source):
        return [str(source)]
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
        if not files:
            raise ConfigError(f"embed.corpus: {path} holds no {', '.join(CORPUS_SUFFIXES)} files")
        return files
    if not path.is_file():
        raise ConfigError(f"embed.corpus: {path} does not exist")
    if path.suffix.lower() not in CORPUS_SUFFIXES:
        raise ConfigError(f"embed.corpus: {path}: unknown format {path.suffix!r}; use {', '.join(CORPUS_SUFFIXES)}")
    return [str(path)]


def _hf_table(source: str) -> pa.Table:
    """A hub dataset's split as Arrow, memory-mapped (not loaded); `datasets` is imported only for `hf:` corpora."""
    from mtl_model.readers import parse_hf_source

    name, config, split = parse_hf_source(source, "train")
    try:
        import datasets

        return datasets.load_dataset(name, config, split=split).data.table  # memory-mapped Arrow, not loaded
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ConfigError(f"embed.corpus: cannot load Hugging Face dataset {source!r}: {first_line}") from None


def record_batches(path: str, columns: list[str], batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """The file's rows in order as record batches of at most `batch_rows`, only `columns` (those present)."""
    try:
        if is_hub_source(path):
            table = _hf_table(path)
            yield from table.select([c for c in columns if c in table.column_names]).to_batches(batch_rows)
            return
        suffix = Path(path).suffix.lower()
        if suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            yield from parquet.iter_batches(batch_size=batch_rows, columns=present)
        elif suffix == ".csv":
            import pyarrow.csv as pacsv

            # Every column as written: no inference that would turn id `00042` into 42 or a text into a date.
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}),
            )
            for batch in reader:
                yield batch.select([c for c in columns if c in batch.schema.names])
        else:
            import pyarrow.json as pajson

            for batch in pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 22)):
                yield batch.select([c for c in columns if c in batch.schema.names])
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(path, "", f"cannot parse: {exc}")]) from exc


def rows_in_range(
    path: str,
    columns: list[str],
    offset: int,
    count: int,
    batch_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Rows [offset, offset + count) of one file, streamed. Parquet skips whole row groups before the range."""
    position = 0
    if not is_hub_source(path) and Path(path).suffix.lower() == ".parquet":
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataValidationError([Problem(path, "", f"cannot read as Parquet: {exc}")]) from exc
        present = [c for c in columns if c in parquet.schema_arrow.names]
        groups, start = [], 0
        for index in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(index).num_rows
            if start + size > offset and start < offset + count:
                groups.append(index)
            elif not groups:
                position = start + size
            start += size
        batches: Iterator[pa.RecordBatch] = parquet.iter_batches(
            batch_size=batch_rows,
            columns=present,
            row_groups=groups,
        )
    else:
        batches = record_batches(path, columns, batch_rows)
    end = offset + count
    for batch in batches:
        batch_start, batch_end = position, position + batch.num_rows
        position = batch_end
        if batch_end <= offset:
            continue
        if batch_start >= end:
            break
        low, high = max(offset, batch_start) - batch_start, min(end, batch_end) - batch_start
        yield batch.slice(low, high - low)


def id_type(source: str, id_column: str) -> pa.DataType:
    """The id column's Arrow type, as the input has it (from the file's schema or its first batch), so the
    output keeps the input's ids unchanged."""
    if not is_hub_source(source) and Path(source).suffix.lower() == ".parquet":
        try:
            return pq.ParquetFile(source).schema_arrow.field(id_column).type
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            raise DataValidationError([Problem(source, "", f"cannot read the {id_column!r} column: {exc}")]) from exc
    for batch in record_batches(source, [id_column], batch_rows=1024):
        return batch.schema.field(id_column).type
    return pa.string()


def _problems_in_batch(
    batch: pa.RecordBatch,
    path: str,
    first_row: int,
    id_column: str,
    text_column: str,
) -> list[Problem]:
    """Empty ids and empty texts, each named by file and row (0-based data row)."""
    problems = []
    ids = batch.column(id_column)
    texts = batch.column(text_column)
    bad_ids = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        bad_ids = np.union1d(bad_ids, np.flatnonzero(np.asarray(ids.fill_null("x").to_pylist()) == ""))
    for row in bad_ids:
        problems.append(Problem(path, f"row {first_row + int(row)}", f"{id_column} is empty"))
    text_values = texts.to_pylist()
    for row, text in enumerate(text_values):
        if text is None or not str(text).strip():
            where = f"row {first_row + row} ({id_column} {ids[row].as_py()!r})"
            problems.append(Problem(path, where, f"{text_column} is empty"))
    return problems


# ------------------------------------------------------------------------------------------ duplicate ids

_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


_hash = hashlib.blake2b  # an id's 8-byte key: blake2b(id bytes, digest_size=8, person=its kind of value)


def id_keys(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, 8-byte keys) of the batch's non-empty ids (null and "" ids are reported as empty instead).

    An integer id's key is a bijective mix (splitmix64) of its value, so integer keys never collide; any other id's
    key is its 8-byte blake2b digest, which may collide, so equal keys are only candidates until the ids compare
    equal. Keys are spread uniformly either way, which keeps the merge of sorted runs even.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    valid = ~ids.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(ids.type):
        values = ids.fill_null(0).to_numpy(zero_copy_only=False)
        keys = values.astype(np.uint64) if values.dtype.kind == "u" else values.astype(np.int64).view(np.uint64)
        keys = (keys ^ (keys >> _S30)) * _MIX_1
        keys = (keys ^ (keys >> _S27)) * _MIX_2
        keys = keys ^ (keys >> _S31)
        positions = np.flatnonzero(valid)
        return positions, keys[positions]
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        values, kind = ids.cast(pa.large_binary()).to_pylist(), b"str"  # UTF-8 bytes, without decoding
    elif pa.types.is_binary(ids.type) or pa.types.is_large_binary(ids.type):
        values, kind = ids.to_pylist(), b"bytes"
    else:
        values, kind = [None if v is None else repr(v).encode("utf-8") for v in ids.to_pylist()], b"repr"
    positions = [i for i, value in enumerate(values) if value]  # null and "" ids are reported as empty instead
    hash_ = _hash
    digests = b"".join([hash_(values[i], digest_size=8, person=kind).digest() for i in positions])
    return np.asarray(positions, dtype=np.int64), np.frombuffer(digests, dtype=np.uint64)


class DuplicateIdFinder:
    """Pass 1 of the duplicate-id check: which id keys (see `id_keys`) occur more than once, in bounded memory.

    Keys are buffered up to `run_keys` (8 bytes each), sorted, checked for repeats, and written as a run of distinct
    sorted keys to a temporary file (8 bytes per row on disk). The runs are then merged in rounds that read at most
    max(`run_keys`, 1024 × runs) keys, so memory stays near 2 × `run_keys` × 8 bytes (32 MiB by default) up to
    about 4 billion rows, and grows by 8 KiB per run (2 million rows) beyond. At most `limit` candidate keys are kept:
    callers confirm them by comparing the ids themselves (`confirm_duplicates`), so a hash collision is never
    reported.
    """

    def __init__(self, run_keys: int | None = None, limit: int = 4 * MAX_LISTED_PROBLEMS) -> None:
        self.run_keys = run_keys or RUN_KEYS
        self.limit = limit
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._runs: list[tuple[int, int]] = []  # [start, end) in keys of the spill file
        self._spill = None
        self._written = 0
        self._found: list[np.ndarray] = []
        self._found_count = 0

    @property
    def truncated(self) -> bool:
        """True when more keys repeated than `limit` (the search stopped there)."""
        return self._found_count >= self.limit

    def add(self, keys: np.ndarray) -> None:
        """Note the keys of one batch (any number of them: they are cut into runs of `run_keys`)."""
        while len(keys) and not self.truncated:
            piece, keys = keys[: self.run_keys - self._buffered], keys[self.run_keys - self._buffered :]
            self._buffer.append(piece)
            self._buffered += len(piece)
            if self._buffered >= self.run_keys:
                self._spill_run(self._sorted_distinct())

    def _note(self, repeated: np.ndarray) -> None:
        if len(repeated):
            self._found.append(repeated)
            self._found_count += len(repeated)
            if self._found_count >= self.limit:  # a key may have been noted twice: count distinct ones
                self._found = [np.unique(np.concatenate(self._found))]
                self._found_count = len(self._found[0])

    def _sorted_distinct(self) -> np.ndarray:
        keys = np.sort(np.concatenate(self._buffer)) if self._buffer else np.empty(0, np.uint64)
        self._buffer, self._buffered = [], 0
        same = keys[1:] == keys[:-1]
        self._note(np.unique(keys[1:][same]))
        return keys[np.concatenate(([True], ~same))] if len(keys) else keys

    def _spill_run(self, keys: np.ndarray) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="mtl-ids-")
        self._spill.write(keys.tobytes())
        self._runs.append((self._written, self._written + len(keys)))
        self._written += len(keys)

    def finish(self) -> np.ndarray:
        """The sorted distinct keys that occur more than once (at most `limit`)."""
        if not self._runs:
            self._sorted_distinct()
        else:
            if self._buffered:
                self._spill_run(self._sorted_distinct())
            self._spill.flush()
            self._merge(np.memmap(self._spill, dtype=np.uint64, mode="r", shape=(self._written,)))
        self.close()
        found = np.unique(np.concatenate(self._found)) if self._found else np.empty(0, np.uint64)
        return found[: self.limit]

    def _merge(self, keys: np.ndarray) -> None:
        """Each run holds distinct sorted keys: a round takes every key ≤ the smallest last key of the runs'
        next chunks (so no key is split across rounds), sorts them together and notes the repeats."""
        runs, positions = self._runs, [start for start, _ in self._runs]
        chunk = max(MIN_MERGE_CHUNK, self.run_keys // len(runs))
        while not self.truncated:
            active = [i for i, (_, end) in enumerate(runs) if positions[i] < end]
            if len(active) < 2:
                return  # one run's keys are distinct
            pieces = {i: keys[positions[i] : min(positions[i] + chunk, runs[i][1])] for i in active}
            ends = [piece[-1] for i, piece in pieces.items() if positions[i] + len(piece) < runs[i][1]]
            boundary = min(ends) if ends else None
            taken = []
            for i, piece in pieces.items():
                count = len(piece) if boundary is None else int(np.searchsorted(piece, boundary, side="right"))
                taken.append(np.asarray(piece[:count]))
                positions[i] += count
            merged = np.sort(np.concatenate(taken))
            self._note(merged[1:][merged[1:] == merged[:-1]])

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def confirm_duplicates(files: list[str], id_column: str, candidates: np.ndarray) -> list[Problem]:
    """Pass 2: read the ids again, keep the rows whose key is a candidate, and group them by the id itself; an id
    on two or more rows is a duplicate, named by file and row (0-based data row) of each occurrence. Memory: the
    candidates and at most `ROWS_LISTED_PER_ID` rows of each."""
    groups: dict[tuple[int, object], list] = {}  # (key, id) → [id, count, [(path, row), ...]], in corpus order
    for path in files:
        row = 0
        for batch in record_batches(path, [id_column]):
            ids = batch.column(id_column)
            positions, keys = id_keys(ids)
            hit = np.isin(keys, candidates)
            for position, key in zip(positions[hit].tolist(), keys[hit].tolist()):
                value = ids[position].as_py()
                group = groups.setdefault((key, (type(value).__name__, value)), [value, 0, []])
                group[1] += 1
                if len(group[2]) < ROWS_LISTED_PER_ID:
                    group[2].append((path, row + position))
            row += batch.num_rows
    problems = []
    for value, count, rows in groups.values():
        if count < 2:
            continue  # a hash collision, not a duplicate
        (first_path, first_row), *repeats = rows
        for path, row in repeats:
            first = f"row {first_row}" if path == first_path else f"{first_path}:row {first_row}"
            problems.append(Problem(path, f"row {row}", f"duplicate {id_column} {value!r} (first at {first})"))
        if count > len(rows):
            problems.append(
                Problem(
                    first_path,
                    f"row {first_row}",
                    f"{id_column} {value!r} occurs {count} times (the first {len(rows)} are listed)",
                )
            )
    return problems


def scan_corpus(
    source: str | Path, *, id_column: str, text_column: str, allow_duplicate_ids: bool = False
) -> list[CorpusFile]:
    """Count and validate every row (streamed) before anything is written; all problems reported at once.

    Problems: a file with no data rows, an empty id or text, and (unless `allow_duplicate_ids`) an id on more than
    one row, across all files of a folder corpus. The duplicate check hashes each id to 8 bytes, sorts them in runs
    of `RUN_KEYS` spilled to a temporary file and merges the runs (`DuplicateIdFinder`: about 32 MiB of memory and
    8 bytes per row of temporary disk, whatever the corpus size up to billions of rows); only repeated keys are
    looked at again, in a second pass that compares the ids themselves, so a hash collision is never reported.
    """
    files, problems = [], []
    finder = None if allow_duplicate_ids else DuplicateIdFinder()
    try:
        for path in corpus_files(source):
            rows = 0
            if is_hub_source(path) or os.path.getsize(path) > 0:  # an empty file is not parseable CSV or JSON
                for batch in record_batches(path, [id_column, text_column]):
                    missing = [c for c in (id_column, text_column) if c not in batch.schema.names]
                    if missing:
                        raise DataValidationError(
                            [
                                Problem(
                                    path,
                                    "",
                                    f"missing column(s) {missing}; embed.id_column / embed.text_column name them",
                                ),
                            ]
                        )
                    if len(problems) < MAX_LISTED_PROBLEMS:
                        problems.extend(_problems_in_batch(batch, path, rows, id_column, text_column))
                    if finder is not None:
                        finder.add(id_keys(batch.column(id_column))[1])
                    rows += batch.num_rows
            if rows == 0:
                problems.append(Problem(path, "", "no rows: the file has no data rows (empty, or a header only)"))
            files.append(CorpusFile(path=path, rows=rows, fingerprint=source_fingerprint(path)))
        if finder is not None and len(problems) < MAX_LISTED_PROBLEMS:
            candidates = finder.finish()
            if finder.truncated:
                message = f"{finder.limit} or more ids occur more than once; the check stopped there (first listed)"
                problems.append(Problem(files[0].path, "", message))
            if len(candidates):
                problems.extend(confirm_duplicates([f.path for f in files], id_column, candidates))
    finally:
        if finder is not None:
            finder.close()
    if problems:
        raise DataValidationError(problems[:MAX_LISTED_PROBLEMS])
    return files
