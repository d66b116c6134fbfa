"""Steps 1–2: validated examples → token ids and aligned labels → padded Parquet with metadata.

The token-label rule (as in transformers' run_ner.py) lives in one function,
`align_labels_to_subwords`: the first sub-word of each word carries the word's label; later
sub-words of the same word and special tokens get IGNORE_INDEX, so the loss and the metrics see
exactly one prediction per word.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_model.casing import PAD, words_casing_ids
from mtl_model.io import write_parquet_atomic
from mtl_model.readers import TextExample, TokenExample

IGNORE_INDEX = -100
METADATA_KEY = b"mtl"
_BATCH = 1024


def align_labels_to_subwords(
    word_ids: Sequence[int | None], word_label_ids: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Per token: (label, word index). First sub-word of a word → (its label, word); others → (-100, -1)."""
    labels: list[int] = []
    word_index: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is not None and word != previous:
            labels.append(word_label_ids[word])
            word_index.append(word)
        else:
            labels.append(IGNORE_INDEX)
            word_index.append(-1)
        previous = word
    return labels, word_index


@dataclass
class EncodeStats:
    rows: int = 0
    truncated: int = 0
    words_cut_by_truncation: int = 0
    words_without_tokens: int = 0
    context_words: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _first_chunks(encoding, batch_size: int) -> list[int]:
    """Index of the first (kept) chunk of every sample; samples with more than one chunk were truncated."""
    mapping = encoding["overflow_to_sample_mapping"]
    first: list[int] = [-1] * batch_size
    for chunk, sample in enumerate(mapping):
        if first[sample] == -1:
            first[sample] = chunk
    return first


def _subword_counts(tokenizer, words: Sequence[str], cache: dict[str, int]) -> dict[str, int]:
    """Tokens per word as the tokenizer splits pre-split words (`is_split_into_words`), memoised in `cache`."""
    unseen = sorted({word for word in words if word not in cache})
    if unseen:
        encoding = tokenizer([[word] for word in unseen], is_split_into_words=True, add_special_tokens=False)
        cache.update((word, len(ids)) for word, ids in zip(unseen, encoding["input_ids"]))
    return cache


def fit_context(
    before: Sequence[str], after: Sequence[str], budget: int, counts: dict[str, int]
) -> tuple[list[str], list[str]]:
    """The context words that fit in `budget` tokens: nearest first, one from each side in turn, no gaps."""
    taken_before = taken_after = 0
    grew = True
    while grew:
        grew = False
        if taken_before < len(before) and counts[before[-1 - taken_before]] <= budget:
            budget -= counts[before[-1 - taken_before]]
            taken_before += 1
            grew = True
        if taken_after < len(after) and counts[after[taken_after]] <= budget:
            budget -= counts[after[taken_after]]
            taken_after += 1
            grew = True
    return list(before[len(before) - taken_before :]), list(after[:taken_after])


def _encoder_words(
    tokenizer, example: TokenExample, max_seq_length: int, cache: dict[str, int]
) -> tuple[list[str], int]:
    """The words the encoder reads for a sentence (its document context fitted around it) and where it starts."""
    if not (example.context_before or example.context_after):
        return list(example.tokens), 0
    counts = _subword_counts(tokenizer, [*example.context_before, *example.tokens, *example.context_after], cache)
    budget = max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
    budget -= sum(counts[word] for word in example.tokens)
    before, after = fit_context(example.context_before, example.context_after, budget, counts)
    return [*before, *example.tokens, *after], len(before)


def _sentence_word_ids(word_ids: Sequence[int | None], start: int, length: int) -> list[int | None]:
    """Encoder word ids → the sentence's own word ids (0-based); context words and special tokens → None."""
    return [None if word is None or not start <= word < start + length else word - start for word in word_ids]


def encode_examples(
    tokenizer,
    examples: Sequence[TextExample | TokenExample],
    *,
    kind: str,
    labels: Sequence[str],
    max_seq_length: int,
    tag_labels: Sequence[str] | None = None,
) -> tuple[pa.Table, EncodeStats]:
    """Tokenize a split (truncating to max_seq_length) into a ragged Arrow table; count what truncation cut.

    `kind` is `sentence`, `token`, or `joint` (token tags from `tag_labels` plus a sentence label from `labels`).
    """
    label_to_id = {label: index for index, label in enumerate(labels)}
    tag_to_id = {tag: index for index, tag in enumerate(tag_labels if kind == "joint" else labels)}
    words = kind != "sentence"
    stats = EncodeStats(rows=len(examples))
    columns: dict[str, list] = {"row_id": [], "text": [], "input_ids": [], "labels": []}
    if words:
        columns.update(word_index=[], word_labels=[], casing_ids=[])
    if kind == "joint":
        columns["sentence_labels"] = []
    counts: dict[str, int] = {}
    for start in range(0, len(examples), _BATCH):
        batch = examples[start : start + _BATCH]
        if words:
            placed = [_encoder_words(tokenizer, example, max_seq_length, counts) for example in batch]
            inputs = [encoder_words for encoder_words, _ in placed]
        else:
            inputs = [example.text for example in batch]
        encoding = tokenizer(
            inputs,
            is_split_into_words=words,
            truncation=True,
            max_length=max_seq_length,
            return_overflowing_tokens=True,
            return_attention_mask=False,
        )
        chunks_per_sample = Counter(encoding["overflow_to_sample_mapping"])
        stats.truncated += sum(1 for count in chunks_per_sample.values() if count > 1)
        for sample, chunk in enumerate(_first_chunks(encoding, len(batch))):
            example = batch[sample]
            columns["row_id"].append(example.row_id)
            columns["text"].append(example.text if isinstance(example, TextExample) else " ".join(example.tokens))
            columns["input_ids"].append(encoding["input_ids"][chunk])
            if kind == "sentence":
                columns["labels"].append(label_to_id[example.label])
                continue
            if kind == "joint":
                columns["sentence_labels"].append(label_to_id[example.label])
            word_label_ids = [tag_to_id[tag] for tag in example.tags]
            _append_word_row(
                columns, stats, example, word_label_ids, inputs[sample], placed[sample][1], encoding.word_ids(chunk)
            )
    types = {**_ENCODED_TYPES, "labels": pa.int64() if kind == "sentence" else pa.list_(pa.int64())}
    table = pa.table({name: pa.array(values, type=types[name]) for name, values in columns.items()})
    return table, stats


_ENCODED_TYPES = {
    "row_id": pa.string(),
    "text": pa.string(),  # as read (token tasks: words joined by spaces), for predictions and error analysis
    "input_ids": pa.list_(pa.int32()),
    "word_index": pa.list_(pa.int32()),
    "word_labels": pa.list_(pa.int64()),
    "casing_ids": pa.list_(pa.int8()),  # word shape per token (`mtl_model.casing`), for `model.casing_dim`
    "sentence_labels": pa.int64(),
}  # "labels": per row (sentence tasks) or per token, set by `encode_examples`


def _append_word_row(
    columns: dict[str, list],
    stats: EncodeStats,
    example: TokenExample,
    word_label_ids: list[int],
    encoder_words: list[str],
    first_word: int,
    encoder_word_ids: list[int | None],
) -> None:
    """One token-task row's columns: sub-word labels of the sentence's own words (context words get none), the
    word index back to words, casing ids for every encoder word; and what truncation cut, into `stats`."""
    stats.context_words += len(encoder_words) - len(example.tokens)
    word_ids = _sentence_word_ids(encoder_word_ids, first_word, len(example.tokens))
    token_labels, word_index = align_labels_to_subwords(word_ids, word_label_ids)
    columns["labels"].append(token_labels)
    columns["word_index"].append(word_index)
    columns["word_labels"].append(word_label_ids)
    columns["casing_ids"].append(words_casing_ids(encoder_words, encoder_word_ids))  # context words too
    present = {w for w in word_ids if w is not None}
    if present:
        stats.words_cut_by_truncation += len(example.tokens) - 1 - max(present)
    stats.words_without_tokens += sum(1 for w in range(max(present, default=-1) + 1) if w not in present)


def write_encoded(path: str | Path, table: pa.Table, metadata: dict) -> None:
    """Write a ragged (unpadded) table atomically, with the step's metadata in the schema."""
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    write_parquet_atomic(path, table)


def read_metadata(path: str | Path) -> dict:
    """The pipeline metadata stored in a tokenized Parquet file's schema."""
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:
        raise ValueError(
            f"{path}: not a tokenized file of this pipeline (no {METADATA_KEY.decode()!r} schema metadata)"
        )
    return json.loads(raw[METADATA_KEY])


def _pad(rows: list[list[int]], length: int, value: int, dtype) -> np.ndarray:
    out = np.full((len(rows), length), value, dtype=dtype)  # (N, L)
    for index, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"row {index} has {len(row)} tokens, more than max_seq_length {length}")
        out[index, : len(row)] = row
    return out


def _fixed(matrix: np.ndarray, arrow_type: pa.DataType) -> pa.FixedSizeListArray:
    rows, length = matrix.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=arrow_type), length)


def pad_encoded(source: str | Path, target: str | Path, *, max_seq_length: int, pad_token_id: int) -> dict:
    """Pad a ragged encoded file to max_seq_length and write it atomically; returns its metadata."""
    table = pq.read_table(source)
    metadata = read_metadata(source)
    input_ids = table.column("input_ids").to_pylist()
    lengths = [len(row) for row in input_ids]
    ids = _pad(input_ids, max_seq_length, pad_token_id, np.int32)  # (N, L)
    mask = (np.arange(max_seq_length)[None, :] < np.asarray(lengths, dtype=np.int64)[:, None]).astype(
        np.int8
    )  # (N, L)
    columns = {
        "row_id": table.column("row_id"),
        **({"text": table.column("text")} if "text" in table.column_names else {}),
        "input_ids": _fixed(ids, pa.int32()),
        "attention_mask": _fixed(mask, pa.int8()),
    }
    if metadata["kind"] == "sentence":
        columns["labels"] = table.column("labels")
    else:
        if metadata["kind"] == "joint":
            columns["sentence_labels"] = table.column("sentence_labels")
        columns["labels"] = _fixed(
            _pad(table.column("labels").to_pylist(), max_seq_length, IGNORE_INDEX, np.int64), pa.int64()
        )
        columns["word_index"] = _fixed(
            _pad(table.column("word_index").to_pylist(), max_seq_length, -1, np.int32), pa.int32()
        )
        columns["word_labels"] = table.column("word_labels")
        if "casing_ids" in table.column_names:
            columns["casing_ids"] = _fixed(
                _pad(table.column("casing_ids").to_pylist(), max_seq_length, PAD, np.int8), pa.int8()
            )
    metadata = {**metadata, "padded_to": max_seq_length, "pad_token_id": pad_token_id}
    padded = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    write_parquet_atomic(target, padded)
    return metadata


@dataclass
class TokenizedSplit:
    """A padded split in memory as numpy arrays (training and evaluation read this)."""

    input_ids: np.ndarray  # (N, L) int64
    attention_mask: np.ndarray  # (N, L) int64
    labels: np.ndarray  # (N,) for sentence tasks, (N, L) for token tasks
    metadata: dict
    word_index: np.ndarray | None = None  # (N, L), token tasks
    word_labels: list[list[int]] | None = None  # per row, every word's gold label id
    sentence_labels: np.ndarray | None = None  # (N,), joint tasks
    casing_ids: np.ndarray | None = None  # (N, L) word shape per token (`mtl_model.casing`), token tasks

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def sentence_view(self) -> TokenizedSplit:
        """A joint split seen as a sentence task (labels = the sentence labels)."""
        return TokenizedSplit(
            self.input_ids, self.attention_mask, self.sentence_labels, {**self.metadata, "kind": "sentence"}
        )


def _matrix(column: pa.ChunkedArray, dtype) -> np.ndarray:
    array = column.combine_chunks()
    width = array.type.list_size
    return array.values.to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, width)


def load_tokenized(path: str | Path) -> TokenizedSplit:
    """Read a padded Parquet file written by `pad_encoded`."""
    table = pq.read_table(path)
    metadata = read_metadata(path)
    token_task = metadata["kind"] != "sentence"
    return TokenizedSplit(
        input_ids=_matrix(table.column("input_ids"), np.int64),
        attention_mask=_matrix(table.column("attention_mask"), np.int64),
        labels=_matrix(table.column("labels"), np.int64)
        if token_task
        else table.column("labels").to_numpy().astype(np.int64),
        metadata=metadata,
        word_index=_matrix(table.column("word_index"), np.int64) if token_task else None,
        word_labels=table.column("word_labels").to_pylist() if token_task else None,
        sentence_labels=table.column("sentence_labels").to_numpy().astype(np.int64)
        if metadata["kind"] == "joint"
        else None,
        casing_ids=_matrix(table.column("casing_ids"), np.int64) if "casing_ids" in table.column_names else None,
    )
