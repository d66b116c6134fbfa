"""Reading the corpus: which files, their rows as streamed record batches (whole or a row range), and the
validation scan that counts and checks every row before anything is written.

Memory stays bounded by one record batch whatever the corpus size: nothing here loads a whole file.
"""

from __future__ import annotations

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


def scan_corpus(source: str | Path, *, id_column: str, text_column: str) -> list[CorpusFile]:
    """Count and validate every row (streamed) before anything is written; all problems reported at once."""
    files, problems = [], []
    for path in corpus_files(source):
        rows = 0
        for batch in record_batches(path, [id_column, text_column]):
            missing = [c for c in (id_column, text_column) if c not in batch.schema.names]
            if missing:
                raise DataValidationError(
                    [
                        Problem(
                            path, "", f"missing column(s) {missing}; embed.id_column / embed.text_column name them"
                        ),
                    ]
                )
            if len(problems) < MAX_LISTED_PROBLEMS:
                problems.extend(_problems_in_batch(batch, path, rows, id_column, text_column))
            rows += batch.num_rows
        files.append(CorpusFile(path=path, rows=rows, fingerprint=source_fingerprint(path)))
    if problems:
        raise DataValidationError(problems[:MAX_LISTED_PROBLEMS])
    return files
