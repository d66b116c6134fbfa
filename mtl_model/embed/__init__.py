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

One module per concern:
- `corpus`: which files, their rows as record batches or a row range, the validation scan (`CorpusFile`).
- `inference`: tokenize, embed token ids, choose the precision, one loaded model per process.
- `plan`: the typed plan handed to every worker (`EmbedPlan`, `ShardSpec`), `plan_embedding`.
- `shards`: one shard: windows, read-ahead, write (`embed_shard` → `ShardRecord`).
- `output`: the folder check, manifest, `_SUCCESS`, and the run's `EmbeddingResult`.
- `run`: all of it in one process (`run_embedding`).
"""

from __future__ import annotations

from mtl_model.embed.corpus import (
    CORPUS_SUFFIXES,
    CorpusFile,
    corpus_files,
    record_batches,
    rows_in_range,
    scan_corpus,
)
from mtl_model.embed.inference import (
    FP32_MAX_TOKENS,
    Precision,
    RequestedPrecision,
    decide_precision,
    embed_texts,
    embed_token_ids,
    encode_texts,
    load_model_once,
)
from mtl_model.embed.output import (
    MANIFEST,
    SUCCESS_MARKER,
    EmbeddingResult,
    already_done,
    classify_output,
    finish_embedding,
    inspect_output,
    manifest_for,
    prepare_output,
    summary_of,
)
from mtl_model.embed.plan import PRECISION_SAMPLE_ROWS, EmbedPlan, ShardSpec, plan_embedding, plan_shards
from mtl_model.embed.run import run_embedding
from mtl_model.embed.shards import METADATA_KEY, ShardRecord, embed_shard, embedding_array, shard_is_complete
from mtl_model.embed.tiers import TierCheck, check_tier, min_cosine, neighbour_overlap

__all__ = [
    "CORPUS_SUFFIXES",
    "FP32_MAX_TOKENS",
    "MANIFEST",
    "METADATA_KEY",
    "PRECISION_SAMPLE_ROWS",
    "SUCCESS_MARKER",
    "CorpusFile",
    "EmbedPlan",
    "EmbeddingResult",
    "Precision",
    "RequestedPrecision",
    "ShardRecord",
    "ShardSpec",
    "already_done",
    "decide_precision",
    "TierCheck",
    "check_tier",
    "neighbour_overlap",
    "classify_output",
    "corpus_files",
    "embed_shard",
    "embed_texts",
    "embed_token_ids",
    "embedding_array",
    "encode_texts",
    "finish_embedding",
    "inspect_output",
    "load_model_once",
    "manifest_for",
    "min_cosine",
    "plan_embedding",
    "plan_shards",
    "prepare_output",
    "record_batches",
    "rows_in_range",
    "run_embedding",
    "scan_corpus",
    "shard_is_complete",
    "summary_of",
]
