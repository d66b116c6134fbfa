"""Step 5: embed a corpus of (id, text) rows into Parquet shards for downstream jobs.

Contract (each part tested):
- The corpus (Parquet, CSV, JSONL files, a folder of them, or an `hf:` dataset) is streamed in record
  batches; memory is bounded by `sort_window`, never by the corpus size.
- Shard k holds a fixed slice of input rows (`plan_embedding`), so shards are independent: they can
  run on many workers, and a killed run recomputes only the shards that are missing.
- Each `part-NNNNN.parquet` is written to a temporary name and renamed; `_manifest.json` (shards, row
  counts, input and model fingerprints) and then `_SUCCESS` are written last. Readers wait for `_SUCCESS`.
- Output ids are the input ids, unchanged and in input order; every input row appears exactly once.
- A re-run with unchanged inputs writes nothing. Files in the folder that this step did not write are
  named in an error; a damaged shard of ours is named and recomputed.

Speed: rows are sorted by token count inside each window and the order restored afterwards; batches
pad to their own longest row; reading and tokenizing the next window overlaps the model's work on this
one; inference mode; reduced precision where it keeps embeddings within cosine 0.9999 of fp32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl_model.device import autocast_dtype, cpu_has_bf16
from mtl_model.errors import ConfigError, DataValidationError, Problem
from mtl_model.io import atomic_path, code_version, file_sha256, json_sha256, write_json_atomic
from mtl_model.model import MultiTaskModel

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "_manifest.json"
METADATA_KEY = b"mtl.embedding"
SHARD_RE = re.compile(r"^part-(\d{5})\.parquet$")
OUR_TEMP_RE = re.compile(r"^\.(part-\d{5}\.parquet|_manifest\.json|_SUCCESS)\.tmp-[0-9a-f]{8}$")
CORPUS_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
COSINE_FLOOR = 0.9999  # reduced precision is used only when it keeps embeddings this close to fp32
PRECISION_SAMPLE_ROWS = 256  # rows of the corpus's start on which that is checked (embedded twice: a fixed cost)
FP32_MAX_TOKENS = 8  # batches of texts this short run in fp32: few tokens average out no rounding, and they cost nothing
MAX_LISTED_PROBLEMS = 200


# ------------------------------------------------------------------------------------- input


def corpus_files(source: str | Path) -> list[str]:
    """The files of a corpus: one file, every supported file of a folder (sorted), or an `hf:` source."""
    if str(source).startswith("hf:"):
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
    from mtl_model.readers import parse_hf_source

    name, config, split = parse_hf_source(source, "train")
    try:
        import datasets

        return datasets.load_dataset(name, config, split=split).data.table  # memory-mapped Arrow, not loaded
    except Exception as exc:
        raise ConfigError(f"embed.corpus: cannot load Hugging Face dataset {source!r}: {str(exc).strip().splitlines()[0]}") from None


def record_batches(path: str, columns: list[str], batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """The file's rows in order as record batches of at most `batch_rows`, only `columns` (those present)."""
    try:
        if path.startswith("hf:"):
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
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}))
            for batch in reader:
                yield batch.select([c for c in columns if c in batch.schema.names])
        else:
            import pyarrow.json as pajson

            for batch in pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 22)):
                yield batch.select([c for c in columns if c in batch.schema.names])
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(path, "", f"cannot parse: {exc}")]) from exc


def rows_in_range(path: str, columns: list[str], offset: int, count: int, batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """Rows [offset, offset + count) of one file, streamed. Parquet skips whole row groups before the range."""
    position = 0
    if not path.startswith("hf:") and Path(path).suffix.lower() == ".parquet":
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
        batches: Iterator[pa.RecordBatch] = parquet.iter_batches(batch_size=batch_rows, columns=present, row_groups=groups)
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


def _problems_in_batch(batch: pa.RecordBatch, path: str, first_row: int, id_column: str, text_column: str) -> list[Problem]:
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
            problems.append(Problem(path, f"row {first_row + row} ({id_column} {ids[row].as_py()!r})", f"{text_column} is empty"))
    return problems


@dataclass(frozen=True)
class CorpusFile:
    """One input file: where, how many rows, and its content fingerprint."""

    path: str
    rows: int
    fingerprint: str


def scan_corpus(source: str | Path, *, id_column: str, text_column: str) -> list[CorpusFile]:
    """Count and validate every row (streamed) before anything is written; all problems reported at once."""
    from mtl_model.io import source_fingerprint

    files, problems = [], []
    for path in corpus_files(source):
        rows = 0
        for batch in record_batches(path, [id_column, text_column]):
            missing = [c for c in (id_column, text_column) if c not in batch.schema.names]
            if missing:
                raise DataValidationError([Problem(path, "", f"missing column(s) {missing}; embed.id_column / embed.text_column name them")])
            if len(problems) < MAX_LISTED_PROBLEMS:
                problems.extend(_problems_in_batch(batch, path, rows, id_column, text_column))
            rows += batch.num_rows
        files.append(CorpusFile(path, rows, source_fingerprint(path)))
    if problems:
        raise DataValidationError(problems[:MAX_LISTED_PROBLEMS])
    return files


# -------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index`: rows [offset, offset + rows) of `source`."""

    index: int
    source: str
    source_fingerprint: str
    offset: int
    rows: int

    @property
    def file(self) -> str:
        return f"part-{self.index:05d}.parquet"


def plan_shards(files: list[CorpusFile], rows_per_shard: int) -> list[ShardSpec]:
    """Fixed slices: each file is cut into shards of `rows_per_shard` rows (shards never span files)."""
    shards: list[ShardSpec] = []
    for corpus_file in files:
        for offset in range(0, corpus_file.rows, rows_per_shard):
            rows = min(rows_per_shard, corpus_file.rows - offset)
            shards.append(ShardSpec(len(shards), corpus_file.path, corpus_file.fingerprint, offset, rows))
    return shards


# ------------------------------------------------------------------------------------- model


def encode_texts(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text (special tokens included, cut to `max_length`) and how many texts were cut."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length + 1, return_attention_mask=False)["input_ids"]
    long_rows = [i for i, ids in enumerate(encoded) if len(ids) > max_length]
    if long_rows:  # re-encode the long ones properly so they still end with the special tokens
        cut = tokenizer([texts[i] for i in long_rows], truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
        for row, ids in zip(long_rows, cut):
            encoded[row] = ids
    return encoded, len(long_rows)


@torch.inference_mode()
def embed_token_ids(
    model: MultiTaskModel, encoded: list[list[int]], *, batch_size: int, device: str, precision: str = "fp32", pad_id: int = 0,
) -> np.ndarray:
    """(N, D) float32 embeddings in input order. Rows are sorted by length so each batch pads only to its
    own longest row, then put back in order."""
    model.eval()
    lengths = np.array([len(ids) for ids in encoded])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(encoded), model.embedding_dim), dtype=np.float32)  # (N, D)
    dtype = autocast_dtype(precision)
    device_type = device.split(":")[0]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, T)
        for index, row in enumerate(rows):
            input_ids[index, : lengths[row]] = encoded[row]
            mask[index, : lengths[row]] = 1
        reduced = dtype is not None and width > FP32_MAX_TOKENS  # short texts stay fp32, see FP32_MAX_TOKENS
        with torch.autocast(device_type=device_type, dtype=dtype) if reduced else contextlib.nullcontext():
            features = model(torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device))
        out[rows] = features["sentence_embedding"].float().cpu().numpy()  # (B, D)
    return out


def embed_texts(model: MultiTaskModel, tokenizer, texts: list[str], *, batch_size: int, device: str, precision: str = "fp32") -> tuple[np.ndarray, int]:
    """(N, D) embeddings of in-memory texts, in order, and how many were truncated."""
    encoded, truncated = encode_texts(tokenizer, list(texts), model.config.max_seq_length)
    pad_id = tokenizer.pad_token_id or 0
    return embed_token_ids(model, encoded, batch_size=batch_size, device=device, precision=precision, pad_id=pad_id), truncated


def choose_precision(model: MultiTaskModel, tokenizer, sample_texts: list[str], *, device: str, requested: str, batch_size: int) -> tuple[str, float | None]:
    """Decide the embedding precision once. `auto`: bf16 where the device computes it natively (fp16 on GPUs
    without bf16) if, on `sample_texts`, every embedding keeps cosine ≥ 0.9999 with fp32; else fp32.
    Returns the precision and the smallest cosine measured (None when nothing was compared)."""
    if requested != "auto":
        return requested, None
    if device.startswith("cuda"):
        candidate = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif cpu_has_bf16():
        candidate = "bf16"
    else:
        return "fp32", None
    if not sample_texts:
        return "fp32", None
    reference, _ = embed_texts(model, tokenizer, sample_texts, batch_size=batch_size, device=device, precision="fp32")
    reduced, _ = embed_texts(model, tokenizer, sample_texts, batch_size=batch_size, device=device, precision=candidate)
    cosine = float(min_cosine(reference, reduced))
    return (candidate if cosine >= COSINE_FLOOR else "fp32"), cosine


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine similarity of two (N, D) arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float(np.min(np.sum(a64 * b64, axis=1) / np.maximum(norms, 1e-12)))


def embedding_array(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 → Arrow fixed_size_list<float32>[D]."""
    _, dim = embeddings.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), type=pa.float32()), dim)


# ------------------------------------------------------------------------------------ shards


@dataclass(frozen=True)
class EmbedPlan:
    """Everything a shard worker needs, as plain data (so it travels to Prefect tasks and Dask workers)."""

    out_dir: str
    model_dir: str
    model_name: str
    model_fingerprint: str
    id_column: str
    text_column: str
    include_text: bool
    batch_size: int
    sort_window: int
    precision: str
    precision_check_cosine: float | None
    dimension: int
    pooling: str
    normalized: bool
    max_seq_length: int
    vocab_size: int
    shards: tuple[ShardSpec, ...]
    inputs: tuple[CorpusFile, ...]

    @property
    def settings_key(self) -> str:
        """What decides a shard's content besides its rows: model, columns, precision."""
        return json_sha256({
            "model": self.model_fingerprint, "id": self.id_column, "text": self.text_column,
            "include_text": self.include_text, "precision": self.precision, "code": code_version(),
        })[:16]

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # lists, not tuples: plain JSON data

    @classmethod
    def from_dict(cls, raw: dict) -> EmbedPlan:
        return cls(**{**raw, "shards": tuple(ShardSpec(**s) for s in raw["shards"]), "inputs": tuple(CorpusFile(**f) for f in raw["inputs"])})


def shard_metadata(plan: EmbedPlan, shard: ShardSpec, truncated: int) -> dict:
    return {
        "model": plan.model_name, "model_fingerprint": plan.model_fingerprint, "dimension": plan.dimension,
        "pooling": plan.pooling, "normalized": plan.normalized, "max_seq_length": plan.max_seq_length,
        "precision": plan.precision, "truncated": truncated, "settings": plan.settings_key,
        "shard": {"index": shard.index, "source": shard.source, "source_fingerprint": shard.source_fingerprint,
                  "offset": shard.offset, "rows": shard.rows},
    }


def shard_is_complete(path: Path, plan: EmbedPlan, shard: ShardSpec) -> bool | None:
    """True: a finished shard of this plan. False: ours but stale. None: unreadable (truncated or damaged)."""
    try:
        metadata = pq.read_metadata(path)
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (pa.ArrowInvalid, OSError):
        return None
    if raw is None:
        return False
    meta = json.loads(raw)
    identity = ("index", "source_fingerprint", "offset", "rows")  # by content: a moved corpus is the same corpus
    expected = shard_metadata(plan, shard, 0)["shard"]
    same_rows = all(meta.get("shard", {}).get(key) == expected[key] for key in identity)
    return same_rows and meta.get("settings") == plan.settings_key and metadata.num_rows == shard.rows


def _windows(plan: EmbedPlan, shard: ShardSpec, tokenizer) -> Iterator[tuple[pa.Array, list[str], list[list[int]], int]]:
    """Windows of `sort_window` rows: ids, texts, token ids, truncated count."""
    columns = [plan.id_column, plan.text_column, "input_ids", "attention_mask"]
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(batches: list[pa.RecordBatch]):
        table = pa.Table.from_batches(batches)
        texts = [str(t) for t in table.column(plan.text_column).to_pylist()]
        if "input_ids" in table.column_names:  # already tokenized with this model's tokenizer: use the ids
            encoded = [list(ids) for ids in table.column("input_ids").to_pylist()]
            if "attention_mask" in table.column_names:  # padded rows (like the pipeline's tokenized Parquet)
                masks = table.column("attention_mask").to_pylist()
                encoded = [[i for i, keep in zip(ids, mask) if keep] for ids, mask in zip(encoded, masks)]
            ids_column = table.column(plan.id_column).to_pylist()
            bad = [(row, ids_column[row]) for row, ids in enumerate(encoded)
                   if len(ids) > plan.max_seq_length or not ids or max(ids) >= plan.vocab_size or min(ids) < 0]
            if bad:
                raise DataValidationError([
                    Problem(shard.source, f"row {shard.offset + row} ({plan.id_column} {row_id!r})",
                            f"input_ids empty, longer than max_seq_length {plan.max_seq_length} or outside the model's vocabulary "
                            f"of {plan.vocab_size}: were they made by this model's tokenizer?")
                    for row, row_id in bad[:MAX_LISTED_PROBLEMS]
                ])
            truncated = 0
        else:
            encoded, truncated = encode_texts(tokenizer, texts, plan.max_seq_length)
        return table.column(plan.id_column).combine_chunks(), texts, encoded, truncated

    for batch in rows_in_range(shard.source, columns, shard.offset, shard.rows):
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= plan.sort_window:
            table = pa.Table.from_batches(pending)
            head, rest = table.slice(0, plan.sort_window), table.slice(plan.sort_window)
            yield flush(head.to_batches())
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield flush(pending)


def _read_ahead(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run `iterator` in a thread, `depth` items ahead: reading and tokenizing overlap the model's work.
    If the consumer stops early (an error while embedding), the producer is told to stop and joined."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        put(done)

    thread = threading.Thread(target=produce, name="embed-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# Per-process state, on purpose: a worker that runs many shards loads the model once (keyed by folder and
# content fingerprint, so a retrained model is reloaded), and its shard threads take turns on it.
_MODELS: dict[tuple[str, str, str], tuple[MultiTaskModel, object]] = {}
_MODELS_LOCK = threading.Lock()
_SHARD_LOCK = threading.Lock()


def load_model_once(model_dir: str, fingerprint: str, device: str) -> tuple[MultiTaskModel, object]:
    """One loaded model per process (and fingerprint), shared by the shards a worker runs."""
    key = (model_dir, fingerprint, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS.clear()
            _MODELS[key] = MultiTaskModel.load(model_dir, map_location=device)
        return _MODELS[key]


def embed_shard(plan: EmbedPlan, index: int, *, device: str) -> dict:
    """Compute shard `index` unless a finished copy is already there; returns its record for the manifest.

    Shards mapped onto threads of one process run one at a time (they share one model and tokenizer, and
    memory stays bounded by one shard's windows); separate processes or Dask workers run in parallel.
    """
    with _SHARD_LOCK:
        return _embed_shard(plan, index, device=device)


def _embed_shard(plan: EmbedPlan, index: int, *, device: str) -> dict:
    shard = plan.shards[index]
    target = Path(plan.out_dir) / shard.file
    if target.exists() and shard_is_complete(target, plan, shard):
        return {"file": shard.file, "rows": shard.rows, "computed": False, **_shard_stats(target)}
    model, tokenizer = load_model_once(plan.model_dir, plan.model_fingerprint, device)
    pad_id = tokenizer.pad_token_id or 0
    # The truncation count belongs in the schema metadata, which is fixed when the writer opens: count it
    # first with a tokenize-only pass (tokenizing costs ~1 % of embedding).
    truncated = sum(cut for *_, cut in _windows(plan, shard, tokenizer))
    metadata = {METADATA_KEY: json.dumps(shard_metadata(plan, shard, truncated), sort_keys=True).encode()}
    schema = pa.schema(
        [(plan.id_column, _id_type(shard.source, plan.id_column)), ("embedding", pa.list_(pa.float32(), plan.dimension))]
        + ([(plan.text_column, pa.string())] if plan.include_text else []),
        metadata=metadata,
    )
    written = 0
    with atomic_path(target) as temp:
        with pq.ParquetWriter(temp, schema) as writer:
            for ids, texts, encoded, _ in _read_ahead(_windows(plan, shard, tokenizer)):
                written += len(encoded)
                embeddings = embed_token_ids(model, encoded, batch_size=plan.batch_size, device=device, precision=plan.precision, pad_id=pad_id)
                columns = [ids.cast(schema.field(0).type), embedding_array(embeddings)]
                if plan.include_text:
                    columns.append(pa.array(texts, type=pa.string()))
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        if written != shard.rows:  # the input changed since it was planned: never publish a short shard
            raise DataValidationError([Problem(shard.source, f"rows {shard.offset}–{shard.offset + shard.rows - 1}",
                                               f"{shard.file}: read {written} rows, the plan has {shard.rows}; did the file change?")])
    return {"file": shard.file, "rows": shard.rows, "computed": True, **_shard_stats(target)}


def _shard_stats(path: Path) -> dict:
    meta = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    return {"truncated": meta["truncated"], "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _id_type(source: str, id_column: str) -> pa.DataType:
    """The id column's Arrow type, as the input has it (from the file's schema or its first batch)."""
    if not source.startswith("hf:") and Path(source).suffix.lower() == ".parquet":
        try:
            return pq.ParquetFile(source).schema_arrow.field(id_column).type
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            raise DataValidationError([Problem(source, "", f"cannot read the {id_column!r} column: {exc}")]) from exc
    for batch in record_batches(source, [id_column], batch_rows=1024):
        return batch.schema.field(id_column).type
    return pa.string()


# ------------------------------------------------------------------------------ plan / finish


def _manifest_files(out_dir: Path) -> set[str]:
    """Shard names an earlier run of this step recorded in `_manifest.json` (so they are ours)."""
    try:
        return {record["file"] for record in json.loads((out_dir / MANIFEST).read_text())["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def classify_output(out_dir: Path, plan: EmbedPlan) -> tuple[list[str], list[str], list[str]]:
    """Sort the folder's entries, changing nothing: (foreign, ours to remove, our temp files).

    A shard-named file is ours when it carries our metadata or an earlier manifest lists it; ours but
    stale (other input, model or settings) or unreadable (truncated, damaged) → removed and recomputed.
    Anything else, including an unreadable `part-*.parquet` we never recorded, is foreign.
    """
    expected = {shard.file: shard for shard in plan.shards}
    recorded = _manifest_files(out_dir)
    foreign, remove, temps = [], [], []
    for entry in sorted(out_dir.iterdir()):
        name = entry.name
        if name in (MANIFEST, SUCCESS_MARKER):
            continue
        if OUR_TEMP_RE.match(name) and entry.is_file():
            temps.append(name)
        elif SHARD_RE.match(name) and entry.is_file():
            if name in expected and shard_is_complete(entry, plan, expected[name]):
                continue  # finished shard of this very plan: kept
            (remove if name in recorded or _is_ours(entry) else foreign).append(name)
        else:
            foreign.append(name)
    return foreign, remove, temps


def inspect_output(out_dir: Path, plan: EmbedPlan) -> list[str]:
    """Foreign files → an error naming them, before anything changes. Then our temp files from a killed run
    are deleted, and our stale or damaged shards are named in the log and deleted so they are recomputed."""
    if not out_dir.exists():
        return []
    foreign, remove, temps = classify_output(out_dir, plan)
    if foreign:
        raise DataValidationError([
            Problem(str(out_dir / name), "", "not written by the embed step; move it elsewhere (readers of this folder would read it too)")
            for name in foreign
        ])
    (out_dir / SUCCESS_MARKER).unlink(missing_ok=True)  # the folder is about to change
    for name in temps:
        (out_dir / name).unlink()
    for name in remove:
        path = out_dir / name
        why = "from an earlier input, model or setting" if _is_ours(path) else "truncated or damaged"
        log.warning("embeddings: %s is %s; it will be recomputed", path, why)
        path.unlink()


def _is_ours(path: Path) -> bool:
    try:
        return METADATA_KEY in (pq.read_schema(path).metadata or {})
    except (pa.ArrowInvalid, OSError):
        return False


def manifest_for(plan: EmbedPlan, records: list[dict]) -> dict:
    return {
        "format": "mtl-embeddings/1",
        "model": plan.model_name,
        "model_fingerprint": plan.model_fingerprint,
        "dimension": plan.dimension,
        "pooling": plan.pooling,
        "normalized": plan.normalized,
        "max_seq_length": plan.max_seq_length,
        "precision": plan.precision,
        "precision_check_min_cosine": plan.precision_check_cosine,
        "settings": plan.settings_key,
        "id_column": plan.id_column,
        "inputs": [asdict(f) for f in plan.inputs],
        "input_fingerprint": json_sha256([asdict(f) for f in plan.inputs])[:16],
        "rows": sum(r["rows"] for r in records),
        "truncated": sum(r["truncated"] for r in records),
        "shards": [{k: r[k] for k in ("file", "rows", "truncated", "bytes", "sha256")} for r in records],
    }


def already_done(plan: EmbedPlan) -> dict | None:
    """The manifest, when `_SUCCESS` is there and the folder holds exactly this plan's finished shards."""
    out = Path(plan.out_dir)
    if not (out / SUCCESS_MARKER).is_file() or not (out / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except ValueError:
        return None
    same = (
        manifest.get("settings") == plan.settings_key
        and manifest.get("inputs") == [asdict(f) for f in plan.inputs]
        and [s["file"] for s in manifest.get("shards", [])] == [s.file for s in plan.shards]
    )
    if not same:
        return None
    names = {p.name for p in out.iterdir()}
    if names != {MANIFEST, SUCCESS_MARKER, *(s.file for s in plan.shards)}:
        return None
    for record in manifest["shards"]:
        if (out / record["file"]).stat().st_size != record["bytes"]:
            return None
    return manifest


def plan_embedding(
    model_dir: str, corpus: str, out_dir: str, *, id_column: str, text_column: str, rows_per_shard: int, batch_size: int,
    sort_window: int, include_text: bool, precision: str, device: str, model_fingerprint: str,
) -> EmbedPlan:
    """Validate the corpus (all problems at once), fix the shard slices and decide the precision, once."""
    inputs = scan_corpus(corpus, id_column=id_column, text_column=text_column)
    model, tokenizer = load_model_once(model_dir, model_fingerprint, device)
    shards = plan_shards(inputs, rows_per_shard)
    sample: list[str] = []
    if shards:
        for batch in rows_in_range(shards[0].source, [text_column], 0, min(PRECISION_SAMPLE_ROWS, shards[0].rows)):
            sample.extend(str(t) for t in batch.column(text_column).to_pylist())
    chosen, cosine = choose_precision(model, tokenizer, sample, device=device, requested=precision, batch_size=batch_size)
    return EmbedPlan(
        out_dir=str(out_dir), model_dir=str(model_dir), model_name=model.config.backbone, model_fingerprint=model_fingerprint,
        id_column=id_column, text_column=text_column, include_text=include_text, batch_size=batch_size, sort_window=sort_window,
        precision=chosen, precision_check_cosine=cosine, dimension=int(model.embedding_dim), pooling=model.config.pooling,
        normalized=model.config.normalize, max_seq_length=model.config.max_seq_length, vocab_size=len(tokenizer),
        shards=tuple(shards), inputs=tuple(inputs),
    )


def prepare_output(plan: EmbedPlan) -> dict | None:
    """Before shards run: the finished manifest if there is nothing to do; else clear `_SUCCESS` (the folder
    is about to change) and check the folder (foreign files → error; damaged shards → recomputed)."""
    done = already_done(plan)
    if done is not None:
        return done
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inspect_output(out, plan)
    return None


def finish_embedding(plan: EmbedPlan, records: list[dict]) -> dict:
    """Write `_manifest.json`, then `_SUCCESS` last."""
    if sorted(r["file"] for r in records) != sorted(s.file for s in plan.shards):
        raise ValueError(f"shard records {len(records)} do not match the plan's {len(plan.shards)} shards")
    manifest = manifest_for(plan, sorted(records, key=lambda r: r["file"]))
    out = Path(plan.out_dir)
    write_json_atomic(out / MANIFEST, manifest)
    with atomic_path(out / SUCCESS_MARKER) as temp:
        temp.write_text(json.dumps({"rows": manifest["rows"], "shards": len(records)}) + "\n")
    return manifest


def summary_of(plan: EmbedPlan, manifest: dict, computed: int) -> dict:
    return {
        "path": plan.out_dir, "rows": manifest["rows"], "shards": len(manifest["shards"]), "computed_shards": computed,
        "dimension": manifest["dimension"], "truncated": manifest["truncated"], "precision": manifest["precision"],
    }


def embed_corpus(plan: EmbedPlan, *, device: str) -> dict:
    """All of it in one process: check the folder, compute missing shards, write manifest and `_SUCCESS`."""
    done = prepare_output(plan)
    if done is not None:
        return summary_of(plan, done, 0)
    records = [embed_shard(plan, shard.index, device=device) for shard in plan.shards]
    manifest = finish_embedding(plan, records)
    return summary_of(plan, manifest, sum(r["computed"] for r in records))
