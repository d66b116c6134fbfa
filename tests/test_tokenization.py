"""The sub-word label rule, padding and Parquet round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from mtl_model.readers import TextExample, TokenExample
from mtl_model.tokenization import (
    IGNORE_INDEX,
    align_labels_to_subwords,
    encode_examples,
    load_tokenized,
    pad_encoded,
    write_encoded,
)

NER_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_alignment_rule_on_a_hand_written_sentence(minilm_tokenizer):
    words = ["Nkosazana", "Dlamini-Zuma", "visited", "Wolfsburg", "on", "Tuesday"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O", "O"]
    encoding = minilm_tokenizer(words, is_split_into_words=True)
    assert minilm_tokenizer.convert_ids_to_tokens(encoding["input_ids"]) == [
        "[CLS]",
        "nk",
        "##osa",
        "##zan",
        "##a",
        "dl",
        "##ami",
        "##ni",
        "-",
        "zu",
        "##ma",
        "visited",
        "wolf",
        "##sburg",
        "on",
        "tuesday",
        "[SEP]",
    ]
    labels, word_index = align_labels_to_subwords(encoding.word_ids(), [NER_LABELS.index(t) for t in tags])
    X = IGNORE_INDEX
    # first sub-word of each word carries its label; later sub-words and [CLS]/[SEP] get -100
    assert labels == [X, 3, X, X, X, 4, X, X, X, X, X, 0, 1, X, 0, 0, X]
    assert word_index == [-1, 0, -1, -1, -1, 1, -1, -1, -1, -1, -1, 2, 3, -1, 4, 5, -1]


def test_alignment_of_adjacent_words_and_specials():
    assert align_labels_to_subwords([None, 0, 1, 1, 2, None], [5, 6, 7]) == (
        [X := IGNORE_INDEX, 5, 6, X, 7, X],
        [-1, 0, 1, -1, 2, -1],
    )


def test_encode_counts_truncation_and_pads_to_fixed_width(tmp_path, minilm_tokenizer):
    examples = [
        TokenExample("a:1", ["Nkosazana", "Dlamini-Zuma", "visited", "Wolfsburg"], ["B-PER", "I-PER", "O", "B-LOC"]),
        TokenExample("a:3", ["Paris"], ["B-LOC"]),
    ]
    table, stats = encode_examples(minilm_tokenizer, examples, kind="token", labels=NER_LABELS, max_seq_length=8)
    assert stats.as_dict() == {
        "rows": 2,
        "truncated": 1,
        "words_cut_by_truncation": 2,
        "words_without_tokens": 0,
        "context_words": 0,
    }
    assert table.column("input_ids").to_pylist()[0].__len__() == 8
    assert table.column("word_labels").to_pylist() == [[3, 4, 0, 1], [1]]
    encoded = tmp_path / "enc.parquet"
    write_encoded(encoded, table, {"task": "ner", "kind": "token", "labels": NER_LABELS, "max_seq_length": 8})
    pad_encoded(encoded, tmp_path / "pad.parquet", max_seq_length=8, pad_token_id=0)
    split = load_tokenized(tmp_path / "pad.parquet")
    assert split.input_ids.shape == (2, 8) and split.labels.shape == (2, 8)
    assert split.attention_mask.tolist() == [[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]
    assert split.labels[1].tolist() == [IGNORE_INDEX, 1] + [IGNORE_INDEX] * 6
    assert split.input_ids[1, 3:].tolist() == [0] * 5
    meta = json.loads(pq.read_schema(tmp_path / "pad.parquet").metadata[b"mtl"])
    assert meta["labels"] == NER_LABELS and meta["padded_to"] == 8


def test_sentence_examples_round_trip(tmp_path, minilm_tokenizer):
    examples = [TextExample("s:2", "a gorgeous , witty film .", "1"), TextExample("s:3", "dull", "0")]
    table, stats = encode_examples(minilm_tokenizer, examples, kind="sentence", labels=["0", "1"], max_seq_length=16)
    assert stats.truncated == 0
    write_encoded(tmp_path / "e.parquet", table, {"task": "s", "kind": "sentence", "labels": ["0", "1"]})
    pad_encoded(tmp_path / "e.parquet", tmp_path / "p.parquet", max_seq_length=16, pad_token_id=0)
    split = load_tokenized(tmp_path / "p.parquet")
    assert split.labels.tolist() == [1, 0]
    assert split.attention_mask.sum(axis=1).tolist() == [8, 3]
    assert np.array_equal(split.input_ids[1, :3], minilm_tokenizer("dull")["input_ids"])
