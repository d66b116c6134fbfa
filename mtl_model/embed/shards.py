"""Computing one shard: its rows in windows of `sort_window` (read and tokenized one window ahead in a thread,
overlapping the model's work), embedded and written to a temporary name that is renamed when complete.

Each shard carries its identity (input slice, settings) in its schema metadata, so a finished shard of the
same plan is recognised and kept, and a resumed run recomputes only what is missing.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_model.base import StrictModel
from mtl_model.embed.corpus import MAX_LISTED_PROBLEMS, id_type, rows_in_range
from mtl_model.embed.heads import Alignment, head_columns, head_fields, token_alignment, window_casing
from mtl_model.embed.inference import encode_texts, load_model_once, run_token_ids
from mtl_model.embed.plan import EmbedPlan, ShardSpec
from mtl_model.errors import ConfigError, DataValidationError, Problem
from mtl_model.io import atomic_path, file_sha256
from mtl_model.memory import release_freed_memory

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

METADATA_KEY = b"mtl.embedding"

Item = TypeVar("Item")
# ids, texts, token ids per row, word alignment (token heads only), truncated count
Window = tuple[pa.Array, list[str], list[list[int]], Alignment | None, int]


class ShardRecord(StrictModel):
    """One finished shard, as the manifest lists it (plus whether this call computed it)."""

    file: str
    """The shard's file name, `part-NNNNN.parquet`."""
    rows: int
    """Rows in the shard (as planned, and as written)."""
    computed: bool
    """True when this call wrote the shard; False when a finished copy was already there and kept."""
    truncated: int
    """Texts cut to the model's `max_seq_length`."""
    bytes: int
    """The file's size, which `already_done` checks before trusting an earlier run."""
    sha256: str
    """The file's content hash, for consumers that verify what they read."""


def shard_metadata(plan: EmbedPlan, shard: ShardSpec, truncated: int) -> dict[str, Any]:
    """The `mtl.embedding` schema metadata of a shard: the model's facts and the shard's identity."""
    return {
        **plan.model_facts(),
        "truncated": truncated,
        "settings": plan.settings_key,
        "shard": {
            "index": shard.index,
            "source": shard.source,
            "source_fingerprint": shard.source_fingerprint,
            "offset": shard.offset,
            "rows": shard.rows,
        },
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


def is_ours(path: Path) -> bool:
    """Whether a Parquet file carries our metadata (so this step wrote it, whatever its state)."""
    try:
        return METADATA_KEY in (pq.read_schema(path).metadata or {})
    except (pa.ArrowInvalid, OSError):
        return False


def embedding_array(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 → Arrow fixed_size_list<float32>[D]."""
    _, dim = embeddings.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), type=pa.float32()), dim)  # (N * D,)


def _windows(
    plan: EmbedPlan, shard: ShardSpec, tokenizer: PreTrainedTokenizerBase, *, align: bool = True
) -> Iterator[Window]:
    """Windows of `sort_window` rows: ids, texts, token ids, word alignment (when a token head is in the outputs
    and `align`), truncated count."""
    token_heads = [name for name, head in plan.heads.items() if head.kind == "token"]
    columns = [plan.id_column, plan.text_column, "input_ids", "attention_mask"]
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(batches: list[pa.RecordBatch]) -> Window:
        table = pa.Table.from_batches(batches)
        texts = [str(t) for t in table.column(plan.text_column).to_pylist()]
        if "input_ids" in table.column_names and token_heads:
            raise ConfigError(
                f"embed.outputs: token head(s) {token_heads} give entity spans in the text, but {shard.source} "
                "is pre-tokenized (`input_ids`): embed it from its text column, or leave the token heads out"
            )
        if "input_ids" in table.column_names:  # already tokenized with this model's tokenizer: use the ids
            encoded = [list(ids) for ids in table.column("input_ids").to_pylist()]
            if "attention_mask" in table.column_names:  # padded rows (like the pipeline's tokenized Parquet)
                masks = table.column("attention_mask").to_pylist()
                encoded = [[i for i, keep in zip(ids, mask) if keep] for ids, mask in zip(encoded, masks)]
            ids_column = table.column(plan.id_column).to_pylist()
            bad = [
                (row, ids_column[row])
                for row, ids in enumerate(encoded)
                if len(ids) > plan.max_seq_length or not ids or max(ids) >= plan.vocab_size or min(ids) < 0
            ]
            if bad:
                raise DataValidationError(
                    [
                        Problem(
                            shard.source,
                            f"row {shard.offset + row} ({plan.id_column} {row_id!r})",
                            f"input_ids empty, longer than max_seq_length {plan.max_seq_length} or outside the "
                            f"model's vocabulary of {plan.vocab_size}: were they made by this model's tokenizer?",
                        )
                        for row, row_id in bad[:MAX_LISTED_PROBLEMS]
                    ]
                )
            truncated = 0
        else:
            encoded, truncated = encode_texts(tokenizer, texts, plan.max_seq_length)
        alignment = token_alignment(tokenizer, texts, plan.max_seq_length) if token_heads and align else None
        return table.column(plan.id_column).combine_chunks(), texts, encoded, alignment, truncated

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


def _read_ahead(iterator: Iterator[Item], depth: int = 2) -> Iterator[Item]:
    """Run `iterator` in a thread, `depth` items ahead: reading and tokenizing overlap the model's work.
    If the consumer stops early (an error while embedding), the producer is told to stop and joined."""
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
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
            yield item  # type: ignore[misc]  # anything else in the queue came from `iterator`
    finally:
        stop.set()
        thread.join()


# Shard threads of one process take turns on the one loaded model (see `embed_shard`).
_SHARD_LOCK = threading.Lock()


def embed_shard(plan: EmbedPlan, index: int, *, device: str) -> ShardRecord:
    """Compute shard `index` unless a finished copy is already there; returns its record for the manifest.

    Shards mapped onto threads of one process run one at a time (they share one model and tokenizer, and
    memory stays bounded by one shard's windows); separate processes or Dask workers run in parallel.
    """
    with _SHARD_LOCK:
        return _embed_shard(plan, index, device=device)


def _embed_shard(plan: EmbedPlan, index: int, *, device: str) -> ShardRecord:
    shard = plan.shards[index]
    target = Path(plan.out_dir) / shard.file
    if target.exists() and shard_is_complete(target, plan, shard):
        return _record(target, shard, computed=False)
    model, tokenizer = load_model_once(plan.model_dir, plan.model_fingerprint, device)
    pad_id = tokenizer.pad_token_id or 0
    # The truncation count belongs in the schema metadata, which is fixed when the writer opens: count it
    # first with a tokenize-only pass (tokenizing costs ~1 % of embedding).
    truncated = sum(cut for *_, cut in _windows(plan, shard, tokenizer, align=False))
    metadata = {METADATA_KEY: json.dumps(shard_metadata(plan, shard, truncated), sort_keys=True).encode()}
    embedding = "embedding" in plan.outputs
    schema = pa.schema(
        [pa.field(plan.id_column, id_type(shard.source, plan.id_column))]
        + ([pa.field("embedding", pa.list_(pa.float32(), plan.dimension))] if embedding else [])  # fixed_size_list[D]
        + head_fields(plan)
        + ([pa.field(plan.text_column, pa.string())] if plan.include_text else []),
        metadata=metadata,
    )
    written = 0
    with atomic_path(target) as temp:
        with pq.ParquetWriter(temp, schema) as writer:
            for ids, texts, encoded, alignment, _ in _read_ahead(_windows(plan, shard, tokenizer)):
                written += len(encoded)
                embeddings, scores = run_token_ids(  # (W, D) for the window's W rows, in input order; head scores
                    model,
                    encoded,
                    heads=tuple(plan.heads),
                    batch_size=plan.batch_size,
                    batch_tokens=plan.batch_tokens,
                    device=device,
                    precision=plan.precision,
                    pad_id=pad_id,
                    casing=window_casing(texts, alignment) if model.reads_casing and alignment else None,
                )
                columns = [ids.cast(schema.field(0).type)] + ([embedding_array(embeddings)] if embedding else [])
                columns += head_columns(plan, scores, texts, alignment)
                if plan.include_text:
                    columns.append(pa.array(texts, type=pa.string()))
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                # Each window's first batches are its longest; the heap pages their activations freed would stay
                # resident and fragment, so RSS would climb window after window (1.49 GB at 20k rows; with this,
                # docs/RESULTS.md §9): hand them back. Tensors are freed by reference counting, so no garbage
                # collection (a full one took 0.6 s per window in a profile beside other jobs: docs/RESULTS.md §10).
                release_freed_memory(collect=False)
        if written != shard.rows:  # the input changed since it was planned: never publish a short shard
            raise DataValidationError(
                [
                    Problem(
                        shard.source,
                        f"rows {shard.offset}–{shard.offset + shard.rows - 1}",
                        f"{shard.file}: read {written} rows, the plan has {shard.rows}; did the file change?",
                    ),
                ]
            )
    return _record(target, shard, computed=True)


def _record(path: Path, shard: ShardSpec, *, computed: bool) -> ShardRecord:
    """The manifest's facts about a finished shard file, read back from the file itself."""
    meta = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    return ShardRecord(
        file=shard.file,
        rows=shard.rows,
        computed=computed,
        truncated=meta["truncated"],
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
    )
