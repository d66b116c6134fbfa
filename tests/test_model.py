"""Model checks: modules' contracts, overfit one batch, save → load (freeze policies: test_freeze.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_model.config import TrainConfig
from mtl_model.model import MultiTaskModel, build_model
from mtl_model.modules import Dense, Pooling, SentenceHead, TokenHead
from mtl_model.tokenization import IGNORE_INDEX, TokenizedSplit
from mtl_model.train import task_loss, train_multitask
from tests.helpers import HEADS, TINY_BERT, one_batch_split, tiny_model


def test_mean_pooling_ignores_padding():
    tokens = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]]
    )  # (2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    features = {"token_embeddings": tokens, "attention_mask": mask}
    assert Pooling("mean")(features)["sentence_embedding"].tolist() == [[2.0, 3.0], [5.0, 6.0]]
    assert Pooling("max")(features)["sentence_embedding"].tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert Pooling("cls")(features)["sentence_embedding"].tolist() == [[1.0, 2.0], [5.0, 6.0]]
    with pytest.raises(ValueError, match=r"token_embeddings \(2, 3, 2\) and attention_mask \(2, 2\)"):
        Pooling("mean")({"token_embeddings": tokens, "attention_mask": mask[:, :2]})


def test_heads_and_dense_shapes():
    assert SentenceHead(16, 4)(torch.zeros(3, 16)).shape == (3, 4)
    assert TokenHead(32, 9)(torch.zeros(3, 7, 32)).shape == (3, 7, 9)
    assert Dense(32, 16)({"sentence_embedding": torch.zeros(3, 32)})["sentence_embedding"].shape == (3, 16)
    with pytest.raises(ValueError, match=r"SentenceHead expects \(B, D\), got \(3, 7, 16\)"):
        SentenceHead(16, 4)(torch.zeros(3, 7, 16))
    with pytest.raises(ValueError, match=r"sentence_embedding \(3, 8\) does not fit Dense input \(32\)"):
        Dense(32, 16)({"sentence_embedding": torch.zeros(3, 8)})
    with pytest.raises(ValueError, match=r"logits \(2, 4\) do not match labels \(3,\)"):
        task_loss(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))


def test_model_forward_shapes(tiny_backbone):
    model = tiny_model(tiny_backbone).eval()
    ids = torch.randint(5, 100, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    out = model(ids, mask, task="ner")
    assert out["token_embeddings"].shape == (3, 10, 32)
    assert out["sentence_embedding"].shape == (3, 16)
    assert out["logits"].shape == (3, 10, 9)
    assert model(ids, mask, task="topic")["logits"].shape == (3, 4)
    torch.testing.assert_close(out["sentence_embedding"].norm(dim=-1), torch.ones(3))
    with pytest.raises(KeyError, match="no head named 'pos'"):
        model(ids, mask, task="pos")


def test_overfit_one_batch(tiny_backbone):
    """Learning works end to end: one fixed batch is memorised (summed loss of two tasks → near zero)."""
    model = tiny_model(tiny_backbone)
    topic = one_batch_split(seed=2)
    rng = np.random.default_rng(3)
    ner_labels = np.where(topic.attention_mask == 1, rng.integers(0, 9, size=topic.input_ids.shape), IGNORE_INDEX)
    ner = TokenizedSplit(topic.input_ids, topic.attention_mask, ner_labels, {"kind": "token"})
    config = TrainConfig(
        max_steps=150, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, warmup_ratio=0.0, weight_decay=0.0
    )
    result = train_multitask(model, {"topic": topic, "ner": ner}, config, device="cpu")
    assert result.losses[0] > 3.0
    assert min(result.losses[-5:]) < 0.05, result.losses[-5:]


def test_save_then_load_gives_identical_outputs(tiny_backbone, tmp_path):
    from tests.helpers import build_tiny_tokenizer

    model = tiny_model(tiny_backbone).eval()
    tokenizer = build_tiny_tokenizer(["a tiny vocabulary for the save test"])
    model.save(tmp_path / "model", tokenizer)
    loaded, loaded_tokenizer = MultiTaskModel.load(tmp_path / "model")
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7, [1] * 9])
    for task in ("topic", "sentiment", "ner"):
        a, b = model(ids, mask, task=task), loaded(ids, mask, task=task)
        assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["sentence_embedding"], b["sentence_embedding"])
    assert loaded.config == model.config and loaded.head_specs["ner"].labels == HEADS[2].labels
    assert loaded_tokenizer("save test")["input_ids"] == tokenizer("save test")["input_ids"]
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["model"]  # no temp folders left behind


def test_max_seq_length_beyond_positions_is_refused(tiny_backbone):
    with pytest.raises(ValueError, match="max_seq_length 512 exceeds the encoder's 128 positions"):
        build_model(
            backbone=str(tiny_backbone),
            heads=HEADS,
            pooling="mean",
            projection_dim=None,
            normalize=True,
            head_dropout=0.0,
            max_seq_length=512,
        )
    assert TINY_BERT["max_position_embeddings"] == 128
