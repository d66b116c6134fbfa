"""The casing feature: word-shape ids, their path through tokenization, and token heads that read them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from mtl_model.casing import DIGIT, LOWER, OTHER, PAD, TITLE, UPPER, text_casing_ids, word_shape, words_casing_ids
from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from mtl_model.readers import TokenExample
from mtl_model.tokenization import (
    align_labels_to_subwords,
    encode_examples,
    load_tokenized,
    pad_encoded,
    write_encoded,
)
from mtl_model.train import task_loss

SENTENCE = ["EU", "rejects", "German", "call", "to", "boycott", "McDonald", "'s", "1996", "iPhone", "."]
SHAPES = [UPPER, LOWER, TITLE, LOWER, LOWER, LOWER, TITLE, LOWER, DIGIT, OTHER, OTHER]
TAGS = ["O", "B-ORG"]


def test_word_shapes_of_a_known_sentence():
    assert [word_shape(word) for word in SENTENCE] == SHAPES
    assert [word_shape(word) for word in ["I", "A4", "3-0", "(", "é", "École", "ÉCOLE"]] == [
        TITLE, DIGIT, DIGIT, OTHER, LOWER, TITLE, UPPER,
    ]  # fmt: skip


def test_every_sub_word_gets_its_words_shape_and_specials_get_pad(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    encoding = tokenizer(SENTENCE, is_split_into_words=True)
    casing = words_casing_ids(SENTENCE, encoding.word_ids())
    assert casing[0] == PAD and casing[-1] == PAD  # [CLS], [SEP]
    assert casing[1:-1] == [SHAPES[word] for word in encoding.word_ids()[1:-1]]
    assert len(casing) > len(SENTENCE) + 2  # the tiny vocabulary splits words: sub-words copy the shape


def test_raw_text_gives_the_same_ids_as_its_words(tiny_backbone):
    """`predict` reads raw text; with the pre-tokenizer's words the ids equal those of the same words given."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    text = " ".join(SENTENCE)
    encoding = tokenizer(text, return_offsets_mapping=True)
    from_text = text_casing_ids(text, encoding.word_ids(), encoding["offset_mapping"])
    words = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    from_words = words_casing_ids(
        [word for word, _ in words], tokenizer([w for w, _ in words], is_split_into_words=True).word_ids()
    )
    assert from_text == from_words
    first_sub_words = [
        from_text[i] for i, w in enumerate(encoding.word_ids()) if w is not None and w != encoding.word_ids()[i - 1]
    ]
    # the pre-tokenizer splits "'s" into "'" and "s"
    assert first_sub_words == SHAPES[:7] + [OTHER, LOWER] + SHAPES[8:]


def test_tokenized_parquet_carries_padded_casing_ids(tiny_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    examples = [
        TokenExample(row_id="a:1", tokens=["Paris", "is", "big"], tags=["B-ORG", "O", "O"]),
        TokenExample(row_id="a:2", tokens=["NASA"], tags=["B-ORG"]),
    ]
    table, _ = encode_examples(tokenizer, examples, kind="token", labels=TAGS, max_seq_length=16)
    write_encoded(tmp_path / "ragged.parquet", table, {"kind": "token", "labels": TAGS})
    pad_encoded(tmp_path / "ragged.parquet", tmp_path / "padded.parquet", max_seq_length=16, pad_token_id=0)
    split = load_tokenized(tmp_path / "padded.parquet")
    assert split.casing_ids.shape == (2, 16)
    lengths = split.attention_mask.sum(axis=1)
    assert (split.casing_ids[np.arange(16)[None, :] >= lengths[:, None]] == PAD).all()
    word_of = split.word_index[0]
    assert split.casing_ids[0, word_of >= 0].tolist() == [TITLE, LOWER, LOWER]  # first sub-word of each word
    assert split.casing_ids[1, word_of[:0].size + 1] == UPPER


def casing_model(backbone, casing_dim: int, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    heads = [HeadSpec(name="ner", kind="token", labels=TAGS)]
    return build_model(
        backbone=str(backbone), heads=heads, pooling="mean", projection_dim=16, normalize=True,
        head_dropout=0.0, max_seq_length=32, casing_dim=casing_dim,
    )  # fmt: skip


def case_only_batch(tokenizer):
    """The same sentences in two casings: "Apple" is B-ORG, "apple" is O. An uncased tokenizer gives both the same
    ids, so only the casing ids can tell them apart."""
    sentences = [["Apple", "pie"], ["apple", "pie"], ["Orange", "juice"], ["orange", "juice"]]
    encoding = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    labels, casing = [], []
    for row, words in enumerate(sentences):
        word_ids = encoding.word_ids(row)
        casing.append(words_casing_ids(words, word_ids))
        labels.append(align_labels_to_subwords(word_ids, [int(word[0].isupper()) for word in words])[0])
    return encoding["input_ids"], encoding["attention_mask"], torch.tensor(casing), torch.tensor(labels)


@pytest.mark.parametrize("casing_dim, solvable", [(8, True), (0, False)])
def test_casing_lets_a_token_head_learn_what_lowercasing_hides(tiny_backbone, casing_dim, solvable):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    input_ids, mask, casing, labels = case_only_batch(tokenizer)
    model = casing_model(tiny_backbone, casing_dim).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = task_loss(model(input_ids, mask, task="ner", casing_ids=casing)["logits"], labels)
        loss.backward()
        optimizer.step()
    model.eval()
    predicted = model(input_ids, mask, task="ner", casing_ids=casing)["logits"].argmax(-1)  # (B, T)
    scored = labels != -100
    accuracy = float((predicted[scored] == labels[scored]).float().mean())
    if solvable:
        assert accuracy == 1.0 and float(loss.detach()) < 0.15
    else:  # "Apple pie" and "apple pie" are the same ids: one of each pair's first words must be wrong
        assert accuracy <= 0.75


def test_casing_model_saves_and_reloads_with_identical_outputs(tiny_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    input_ids, mask, casing, _ = case_only_batch(tokenizer)
    model = casing_model(tiny_backbone, 4).eval()
    model.save(tmp_path / "model", tokenizer)
    loaded, _ = MultiTaskModel.load(tmp_path / "model")
    assert loaded.config.casing_dim == 4 and loaded.reads_casing
    before = model(input_ids, mask, task="ner", casing_ids=casing)["logits"]
    after = loaded(input_ids, mask, task="ner", casing_ids=casing)["logits"]
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    title = torch.full_like(casing, TITLE)
    assert not torch.equal(loaded(input_ids, mask, task="ner", casing_ids=title)["logits"], after)


def test_casing_head_without_or_with_misshaped_ids_says_both_shapes(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    input_ids, mask, casing, _ = case_only_batch(tokenizer)
    model = casing_model(tiny_backbone, 4).eval()
    with pytest.raises(ValueError, match="pass casing_ids"):
        model(input_ids, mask, task="ner")
    with pytest.raises(ValueError, match=rf"casing_ids \(4, {casing.shape[1] - 1}\) do not match token states \(4, "):
        model(input_ids, mask, task="ner", casing_ids=casing[:, :-1])


def test_predict_feeds_casing_from_raw_text(tiny_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    casing_model(tiny_backbone, 4).save(tmp_path / "model", tokenizer)
    loaded, _ = MultiTaskModel.load(tmp_path / "model")
    results = loaded.predict(["Apple sells apple in PARIS ."])
    assert set(results[0]) == {"ner", "embedding"}
    assert all(entity["text"] in "Apple sells apple in PARIS ." for entity in results[0]["ner"])
