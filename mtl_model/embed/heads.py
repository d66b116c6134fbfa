"""Prediction columns of the corpus output: what each head of `EmbedPlan.heads` writes next to the embedding.

A sentence head `topic` writes `topic` (the label's name), `topic_score` (its probability, float32) and, with
`include_probs`, `topic_probs` (fixed_size_list<float32>[C], class order in the metadata). A token head `ner`
writes `ner`: list<struct<start: int32, end: int32, label: string, text: string, score: float32>>, character
offsets into the row's text (`text[start:end] == text` of the entity), decoded as `mtl_model.predict` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mtl_model.casing import text_casing_ids
from mtl_model.embed.plan import EmbedPlan
from mtl_model.predict import entity_spans

ENTITY = pa.struct(
    [
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("label", pa.string()),
        ("text", pa.string()),
        ("score", pa.float32()),
    ]
)

Alignment = list[tuple[list[int | None], list[tuple[int, int]]]]  # per row: word id per token, char offsets


def head_fields(plan: EmbedPlan) -> list[pa.Field]:
    """The output schema's prediction fields, in `plan.outputs` order."""
    fields = []
    for name, head in plan.heads.items():
        if head.kind == "sentence":
            fields += [pa.field(name, pa.string()), pa.field(f"{name}_score", pa.float32())]
            if plan.include_probs:
                fields.append(pa.field(f"{name}_probs", pa.list_(pa.float32(), len(head.labels))))
        else:
            fields.append(pa.field(name, pa.list_(ENTITY)))
    return fields


def token_alignment(tokenizer: Any, texts: list[str], max_length: int) -> Alignment:
    """Word ids and character offsets of each text's tokens, tokenized exactly as `encode_texts` cuts them."""
    encoding = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    return [
        (encoding.word_ids(row), [tuple(pair) for pair in encoding["offset_mapping"][row]])
        for row in range(len(texts))
    ]


def window_casing(texts: list[str], alignment: Alignment) -> list[list[int]]:
    """Each text's casing ids (`mtl_model.casing`) from its word alignment, for token heads with `casing_dim`."""
    return [text_casing_ids(text, word_ids, offsets) for text, (word_ids, offsets) in zip(texts, alignment)]


def head_columns(plan: EmbedPlan, scores: dict[str, Any], texts: list[str], alignment: Alignment | None) -> list:
    """Arrow arrays for `head_fields`, from `run_token_ids`' scores of one window (rows in input order)."""
    columns: list[pa.Array] = []
    for name, head in plan.heads.items():
        if head.kind == "sentence":
            probs = scores[name]  # (N, C)
            best = probs.argmax(axis=1)  # (N,)
            columns += [
                pa.array([head.labels[i] for i in best], pa.string()),
                pa.array(probs[np.arange(len(best)), best], pa.float32()),
            ]
            if plan.include_probs:
                flat = pa.array(probs.reshape(-1), pa.float32())
                columns.append(pa.FixedSizeListArray.from_arrays(flat, len(head.labels)))
            continue
        if alignment is None:
            raise ValueError(f"token head {name!r} needs the texts' word alignment")
        spans = [
            entity_spans(text, log_probs, word_ids, offsets, head.labels, head.decoding)
            for text, log_probs, (word_ids, offsets) in zip(texts, scores[name], alignment)
        ]
        columns.append(pa.array(spans, pa.list_(ENTITY)))
    return columns
