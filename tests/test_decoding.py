"""BIO-constrained decoding: never an invalid sequence, the exact best valid one, and saved with the model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtl_model.decoding import bio_constraints, decode, is_valid_bio, viterbi

LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_constraints_follow_bio():
    allowed, first = bio_constraints(LABELS)
    index = {label: i for i, label in enumerate(LABELS)}
    assert not first[index["I-ORG"]] and first[index["B-ORG"]] and first[index["O"]]
    assert allowed[index["B-ORG"], index["I-ORG"]] and allowed[index["I-ORG"], index["I-ORG"]]
    assert not allowed[index["O"], index["I-ORG"]] and not allowed[index["B-LOC"], index["I-ORG"]]
    assert not allowed[index["I-PER"], index["I-ORG"]] and allowed[index["I-PER"], index["B-ORG"]]


def test_the_apple_case_opens_the_entity_with_b():
    """`Apple → I-ORG` (argmax) becomes `B-ORG`: the best sequence BIO allows."""
    probs = np.full((2, len(LABELS)), 0.01)
    probs[0, LABELS.index("I-ORG")], probs[0, LABELS.index("B-ORG")] = 0.6, 0.3  # "Apple"
    probs[1, LABELS.index("O")] = 0.9  # "said"
    log_probs = np.log(probs / probs.sum(axis=1, keepdims=True))
    assert [LABELS[i] for i in decode(log_probs, LABELS, "argmax")] == ["I-ORG", "O"]
    assert [LABELS[i] for i in decode(log_probs, LABELS, "bio_viterbi")] == ["B-ORG", "O"]


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_is_the_best_valid_sequence_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    log_probs = np.log(rng.dirichlet(np.ones(len(labels)), size=4))  # (W=4, C=5)
    path = viterbi(log_probs, *bio_constraints(labels))
    valid = [p for p in itertools.product(range(len(labels)), repeat=4) if is_valid_bio([labels[i] for i in p])]
    best = max(valid, key=lambda p: sum(log_probs[w, c] for w, c in enumerate(p)))
    assert tuple(path) == best and is_valid_bio([labels[i] for i in path])


def test_shapes_are_checked_and_empty_sentences_decode_to_nothing():
    allowed, first = bio_constraints(LABELS)
    assert viterbi(np.zeros((0, len(LABELS))), allowed, first).shape == (0,)
    with pytest.raises(ValueError, match=r"log_probs \(3, 4\) do not match constraints \(7, 7\) and \(7,\)"):
        viterbi(np.zeros((3, 4)), allowed, first)


def test_decoding_is_saved_with_the_model_and_used_by_evaluation(tmp_path, tiny_backbone):
    """A model trained with `bio_viterbi` evaluates with it after save → load, and never emits invalid BIO."""
    from transformers import AutoTokenizer

    from mtl_model.evaluate import token_log_probs, word_tags
    from mtl_model.model import HeadSpec, MultiTaskModel, build_model
    from mtl_model.tokenization import TokenizedSplit

    heads = [HeadSpec(name="ner", kind="token", labels=LABELS)]
    model = build_model(
        backbone=str(tiny_backbone), heads=heads, pooling="mean", projection_dim=None, normalize=True,
        head_dropout=0.0, max_seq_length=32, token_decoding="bio_viterbi",
    )  # fmt: skip
    model.save(tmp_path / "model", AutoTokenizer.from_pretrained(tiny_backbone))
    loaded, _ = MultiTaskModel.load(tmp_path / "model")
    assert loaded.config.token_decoding == "bio_viterbi"
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 300, size=(16, 12))  # (N, L): one word per token after [CLS]
    word_index = np.tile(np.arange(-1, 11), (16, 1))  # (N, L): position 0 is [CLS]
    word_labels = [list(rng.integers(0, len(LABELS), size=11)) for _ in range(16)]
    split = TokenizedSplit(ids, np.ones_like(ids), np.zeros_like(ids), {"kind": "token"}, word_index, word_labels)
    log_probs = token_log_probs(loaded, split, "ner", batch_size=8, device="cpu")
    _, predicted = word_tags(split, log_probs, LABELS, loaded.config.token_decoding)
    _, greedy = word_tags(split, log_probs, LABELS, "argmax")
    assert all(is_valid_bio(tags) for tags in predicted)
    assert not all(is_valid_bio(tags) for tags in greedy)  # an untrained head does emit invalid BIO
