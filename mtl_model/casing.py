"""Word-shape ("casing") ids: what an uncased tokenizer throws away, given back to the token heads.

An uncased backbone (all-MiniLM-L6-v2 lower-cases its input) sees "Apple" and "apple" as the same ids, yet
capitalisation is the strongest single cue for named entities. With `model.casing_dim > 0` every token head
joins a small learned embedding of the shape of the word each token belongs to to the token's state.

The rule, one id per word, copied to every sub-word of that word (special tokens and padding get `PAD`):

    digit  any digit in the word                          "1996", "A4", "3-0"
    lower  every cased letter lower-case                  "apple", "and"
    UPPER  two or more cased letters, all upper-case      "EU", "NASA"
    Title  first cased letter upper-case, not all upper   "Apple", "McDonald", "I"
    other  no cased letter, or a lower-case first letter  ",", "(", "iPhone"

Training reads words as the data gives them (CoNLL tokens); raw text (`predict`, the embed step's token outputs)
uses the words of the backbone tokenizer's pre-tokenizer, which splits "U.S." into four words where CoNLL has one.
"""

from __future__ import annotations

from collections.abc import Sequence

PAD, LOWER, TITLE, UPPER, DIGIT, OTHER = range(6)
NUM_SHAPES = 6
SHAPE_NAMES = ("pad", "lower", "Title", "UPPER", "digit", "other")


def word_shape(word: str) -> int:
    """The shape id of one word (see the module's table)."""
    if any(char.isdigit() for char in word):
        return DIGIT
    cased = [char for char in word if char.isupper() or char.islower()]
    if not cased:
        return OTHER
    if all(char.islower() for char in cased):
        return LOWER
    if len(cased) > 1 and all(char.isupper() for char in cased):
        return UPPER
    return TITLE if cased[0].isupper() else OTHER


def token_casing_ids(word_ids: Sequence[int | None], word_shapes: Sequence[int]) -> list[int]:
    """Per token: the shape of its word (`word_ids` as a fast tokenizer gives them), `PAD` for special tokens."""
    return [PAD if word is None else word_shapes[word] for word in word_ids]


def words_casing_ids(words: Sequence[str], word_ids: Sequence[int | None]) -> list[int]:
    """Casing ids of a text given as words (`is_split_into_words=True`)."""
    return token_casing_ids(word_ids, [word_shape(word) for word in words])


def word_spans(word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """Word id → (first char, end char) in the original text, from a fast tokenizer's word ids and offsets."""
    spans: dict[int, tuple[int, int]] = {}
    for word, (start, end) in zip(word_ids, offsets):
        if word is not None:
            first, last = spans.get(word, (start, end))
            spans[word] = (min(first, start), max(last, end))
    return spans


def text_casing_ids(text: str, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Casing ids of raw text: each word is the span of `text` its tokens cover (`return_offsets_mapping=True`)."""
    shapes = {word: word_shape(text[start:end]) for word, (start, end) in word_spans(word_ids, offsets).items()}
    return [PAD if word is None else shapes[word] for word in word_ids]


def encoding_casing_ids(texts: Sequence[str], encoding) -> list[list[int]]:
    """Casing ids (B, T) of a batch of raw texts from the fast tokenizer's `BatchEncoding` of them (made with
    `return_offsets_mapping=True`): what a model with `casing_dim` takes as `casing_ids` beside `input_ids`."""
    return [
        text_casing_ids(text, encoding.word_ids(row), [tuple(pair) for pair in encoding["offset_mapping"][row]])
        for row, text in enumerate(texts)
    ]
