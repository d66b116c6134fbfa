"""The real pretrained backbone: verified, loaded offline, and the same encoder sentence-transformers runs."""

from __future__ import annotations

import pytest
import torch

from mtl_model.backbone import BUNDLED_MODELS, load_tokenizer, resolve_backbone
from mtl_model.errors import ConfigError
from mtl_model.model import HeadSpec, build_model

pytestmark = pytest.mark.slow


def test_bundled_weights_match_the_official_sha256():
    from mtl_model.io import file_sha256

    path = resolve_backbone("bundled:all-MiniLM-L6-v2")
    assert file_sha256(f"{path}/model.safetensors") == BUNDLED_MODELS["all-MiniLM-L6-v2"][1]
    with pytest.raises(ConfigError, match="unknown bundled model 'nope'"):
        resolve_backbone("bundled:nope")


def test_offline_hub_id_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ConfigError, match=r"(?s)cannot load a tokenizer from 'no-such-org/no-such-model'.*Offline, use a local folder"
    ):
        load_tokenizer("no-such-org/no-such-model")


def test_untrained_model_embeds_like_sentence_transformers():
    """With no projection, our encoder + mean pooling + L2 norm is exactly all-MiniLM-L6-v2's pipeline."""
    from sentence_transformers import SentenceTransformer

    path = resolve_backbone("bundled:all-MiniLM-L6-v2")
    ours = build_model(
        backbone="bundled:all-MiniLM-L6-v2",
        heads=[HeadSpec(name="s", kind="sentence", labels=["a", "b"])],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=256,
    ).eval()
    tokenizer = load_tokenizer("bundled:all-MiniLM-L6-v2")
    texts = ["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply on Monday."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        embeddings = ours(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    reference = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(embeddings, reference, atol=1e-5, rtol=1e-4)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]
