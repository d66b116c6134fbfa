"""Document context for token tasks (`TaskSpec.document_context_words`): neighbouring sentences of the same
document as unlabelled encoder input, fitted to the token budget without ever cutting the sentence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mtl_model.casing import word_shape, words_casing_ids
from mtl_model.config import TaskSpec
from mtl_model.readers import TokenExample, read_conll
from mtl_model.task_data import attach_document_context, load_task_data
from mtl_model.tokenization import IGNORE_INDEX, encode_examples, fit_context

TAGS = ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
CONLL = """-DOCSTART- -X- -X- O

CRICKET NN O
- : O
LEICESTERSHIRE NNP B-ORG

Leicestershire NNP B-ORG
won VBD O

-DOCSTART- -X- -X- O

Paris NNP B-LOC
rains VBZ O
"""


def _sentence(row_id: str, words: str, document: int | None) -> TokenExample:
    tokens = words.split()
    return TokenExample(row_id, tokens, ["O"] * len(tokens), document=document)


def test_reader_numbers_documents_from_docstart_lines(tmp_path):
    (tmp_path / "docs.txt").write_text(CONLL)
    (tmp_path / "plain.txt").write_text("Paris NNP B-LOC\n\nrains VBZ O\n")
    with_docs = read_conll(tmp_path / "docs.txt").examples
    assert [(example.tokens[0], example.document) for example in with_docs] == [
        ("CRICKET", 1),
        ("Leicestershire", 1),
        ("Paris", 2),
    ]
    assert [example.document for example in read_conll(tmp_path / "plain.txt").examples] == [None, None]


def test_context_takes_nearest_words_and_stays_inside_the_document():
    examples = [
        _sentence("a", "one two three", 1),
        _sentence("b", "four five", 1),
        _sentence("c", "six seven eight", 1),
        _sentence("d", "nine ten", 2),
        _sentence("e", "alone here", None),
    ]
    out = attach_document_context(examples, words=4)
    assert [(e.context_before, e.context_after) for e in out] == [
        ((), ("four", "five", "six", "seven")),
        (("one", "two", "three"), ("six", "seven", "eight")),
        (("two", "three", "four", "five"), ()),
        ((), ()),  # document 2 has one sentence
        ((), ()),  # a file without document markers shares no context
    ]
    assert [e.tokens for e in out] == [e.tokens for e in examples] and out[1].tags == ["O", "O"]


def test_fit_context_alternates_sides_nearest_first_within_budget():
    counts = {"a": 1, "b": 2, "c": 1, "x": 1, "y": 3, "z": 1}
    # before a b c | sentence | x y z: take c (1), x (1), b (2), then y (3) does not fit in the 1 left, a (1) does.
    assert fit_context(["a", "b", "c"], ["x", "y", "z"], budget=5, counts=counts) == (["a", "b", "c"], ["x"])
    assert fit_context(["a", "b", "c"], ["x", "y", "z"], budget=2, counts=counts) == (["c"], ["x"])
    assert fit_context(["a", "b", "c"], ["x", "y", "z"], budget=0, counts=counts) == ([], [])
    assert fit_context([], ["x", "y", "z"], budget=100, counts=counts) == ([], ["x", "y", "z"])


def test_encoded_context_is_input_only_and_labels_stay_on_the_sentence(minilm_tokenizer):
    sentence = TokenExample(
        "s:5", ["Leicestershire", "won"], ["B-ORG", "O"], context_before=("CRICKET", "-"), context_after=("at", "Oval")
    )
    table, stats = encode_examples(minilm_tokenizer, [sentence], kind="token", labels=TAGS, max_seq_length=32)
    ids = table.column("input_ids").to_pylist()[0]
    whole = minilm_tokenizer(["CRICKET", "-", "Leicestershire", "won", "at", "Oval"], is_split_into_words=True)
    assert ids == whole["input_ids"]  # [CLS] context sentence context [SEP]
    labels, word_index = table.column("labels").to_pylist()[0], table.column("word_index").to_pylist()[0]
    labelled = [(position, label) for position, label in enumerate(labels) if label != IGNORE_INDEX]
    first_of = {word: whole.word_ids().index(word) for word in (2, 3)}  # the sentence's words in the encoder input
    assert labelled == [(first_of[2], 1), (first_of[3], 0)]  # B-ORG, O: nothing on context tokens
    assert [w for w in word_index if w >= 0] == [0, 1] and word_index[first_of[2]] == 0
    assert table.column("word_labels").to_pylist() == [[1, 0]]
    assert table.column("text").to_pylist() == ["Leicestershire won"]
    encoder_words = ["CRICKET", "-", "Leicestershire", "won", "at", "Oval"]
    casing = table.column("casing_ids").to_pylist()[0]
    assert casing == words_casing_ids(encoder_words, whole.word_ids())  # context words carry their shape too
    assert casing[1] == word_shape("CRICKET") != casing[-2] == word_shape("Oval")
    assert stats.context_words == 4 and stats.truncated == 0


def test_context_is_cut_before_the_sentence_ever_is(minilm_tokenizer):
    words = ["Leicestershire", "won", "by", "an", "innings"]
    sentence = TokenExample(
        "s:7", words, ["B-ORG", "O", "O", "O", "O"], context_before=tuple("a b c d".split()), context_after=("e", "f")
    )
    sentence_tokens = len(minilm_tokenizer(words, is_split_into_words=True)["input_ids"])
    table, stats = encode_examples(
        minilm_tokenizer, [sentence], kind="token", labels=TAGS, max_seq_length=sentence_tokens + 3
    )
    assert len(table.column("input_ids").to_pylist()[0]) == sentence_tokens + 3
    assert stats.truncated == 0 and stats.words_cut_by_truncation == 0
    assert stats.context_words == 3  # d, e, c: nearest first, alternating
    assert table.column("word_labels").to_pylist() == [[1, 0, 0, 0, 0]]


def test_load_task_data_gives_every_split_context(tmp_path):
    for name in ("train.txt", "test.txt"):
        (tmp_path / name).write_text(CONLL)
    spec = TaskSpec(
        name="ner",
        kind="token",
        format="conll",
        files={"train": "train.txt", "test": "test.txt"},
        labels=TAGS,
        document_context_words=8,
    )
    data = load_task_data(spec, {"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"})
    for split in ("train", "test"):
        leicester = data.splits[split][1]
        assert leicester.context_before == ("CRICKET", "-", "LEICESTERSHIRE") and leicester.context_after == ()
        assert data.splits[split][2].context_before == ()  # "Paris" opens document 2


def test_context_needs_a_format_that_marks_documents():
    with pytest.raises(ValidationError, match="document_context_words needs documents"):
        TaskSpec(
            name="ner",
            kind="token",
            format="jsonl",
            files={"train": "t.jsonl", "test": "t.jsonl"},
            document_context_words=16,
        )
