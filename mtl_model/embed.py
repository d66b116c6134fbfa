"""Step 5: embed a corpus of (id, text) rows into Parquet shards for downstream jobs.

Output folder: `part-00000.parquet`, … then `_SUCCESS`, swapped in atomically as a whole, so readers
never see a half-written result. Each shard keeps the input's `id` column unchanged and in input
order; `embedding` is `fixed_size_list<float32>[dim]`, readable as is by pandas, pyarrow and DuckDB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl_model.errors import DataValidationError, Problem
from mtl_model.io import atomic_dir
from mtl_model.model import MultiTaskModel

SUCCESS_MARKER = "_SUCCESS"


def read_corpus(path: str | Path, *, id_column: str, text_column: str) -> pa.Table:
    """Read CSV, JSONL or Parquet (by suffix) and validate: ids present and unique, texts non-empty."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        elif suffix in (".jsonl", ".json"):
            import pyarrow.json as pajson

            table = pajson.read_json(path)
        elif suffix == ".parquet":
            table = pq.read_table(path)
        else:
            raise DataValidationError([Problem(str(path), "", f"unknown corpus format {suffix!r}; use .csv, .jsonl or .parquet")])
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataValidationError([Problem(str(path), "", f"cannot parse: {exc}")]) from exc
    missing = [c for c in (id_column, text_column) if c not in table.column_names]
    if missing:
        raise DataValidationError([Problem(str(path), "", f"missing column(s) {missing}; columns are {table.column_names}")])

    problems: list[Problem] = []
    ids = table.column(id_column).to_pylist()
    texts = table.column(text_column).to_pylist()
    first_row: dict[object, int] = {}
    for row, (row_id, text) in enumerate(zip(ids, texts)):
        where = f"row {row} (id {row_id!r})"
        if row_id is None or row_id == "":
            problems.append(Problem(str(path), f"row {row}", "id is empty"))
        elif row_id in first_row:
            problems.append(Problem(str(path), where, f"duplicate id (first at row {first_row[row_id]})"))
        else:
            first_row[row_id] = row
        if text is None or not str(text).strip():
            problems.append(Problem(str(path), where, "text is empty"))
    if problems:
        raise DataValidationError(problems)
    return table


@torch.inference_mode()
def embed_texts(
    model: MultiTaskModel, tokenizer, texts: list[str], *, batch_size: int, device: str
) -> tuple[np.ndarray, int]:
    """(N, D) float32 embeddings in input order, and how many texts were truncated.

    Texts are sorted by token count so each batch pads only to its own longest row.
    """
    model.eval()
    max_length = model.config.max_seq_length
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length + 1, return_attention_mask=False)["input_ids"]
    truncated = sum(1 for ids in encoded if len(ids) > max_length)
    if truncated:  # re-encode the long ones properly so they end with the special tokens
        cut = tokenizer([texts[i] for i, ids in enumerate(encoded) if len(ids) > max_length], truncation=True,
                        max_length=max_length, return_attention_mask=False)["input_ids"]
        long_rows = [i for i, ids in enumerate(encoded) if len(ids) > max_length]
        for row, ids in zip(long_rows, cut):
            encoded[row] = ids
    lengths = np.array([len(ids) for ids in encoded])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(texts), model.embedding_dim), dtype=np.float32)  # (N, D)
    pad_id = tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, T)
        for index, row in enumerate(rows):
            input_ids[index, : lengths[row]] = encoded[row]
            mask[index, : lengths[row]] = 1
        features = model(torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device))
        out[rows] = features["sentence_embedding"].float().cpu().numpy()  # (B, D)
    return out, truncated


def embedding_array(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 → Arrow fixed_size_list<float32>[D]."""
    rows, dim = embeddings.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), type=pa.float32()), dim)


def embed_corpus(
    model: MultiTaskModel,
    tokenizer,
    corpus: pa.Table,
    out_dir: str | Path,
    *,
    id_column: str,
    text_column: str,
    batch_size: int,
    rows_per_shard: int,
    include_text: bool,
    device: str,
    model_name: str,
    model_fingerprint: str,
) -> dict:
    """Embed every row and write the shards; returns a summary (rows, shards, dim, truncated)."""
    texts = [str(text) for text in corpus.column(text_column).to_pylist()]
    embeddings, truncated = embed_texts(model, tokenizer, texts, batch_size=batch_size, device=device)
    config = model.config
    metadata = {
        "model": model_name,
        "model_fingerprint": model_fingerprint,
        "dimension": int(model.embedding_dim),
        "pooling": config.pooling,
        "projection_dim": config.projection_dim,
        "normalized": config.normalize,
        "max_seq_length": config.max_seq_length,
        "truncated": truncated,
        "rows": len(texts),
    }
    shards = []
    with atomic_dir(out_dir) as temp:
        for shard, start in enumerate(range(0, max(len(texts), 1), rows_per_shard)):
            stop = min(start + rows_per_shard, len(texts))
            columns = {id_column: corpus.column(id_column).slice(start, stop - start), "embedding": embedding_array(embeddings[start:stop])}
            if include_text:
                columns["text"] = pa.array(texts[start:stop], type=pa.string())
            table = pa.table(columns).replace_schema_metadata({"mtl.embedding": json.dumps(metadata, sort_keys=True)})
            name = f"part-{shard:05d}.parquet"
            pq.write_table(table, temp / name)
            shards.append({"file": name, "rows": stop - start})
        (temp / SUCCESS_MARKER).write_text(json.dumps({"shards": shards, **metadata}, indent=2) + "\n")
    return {**metadata, "shards": len(shards), "path": str(out_dir)}
