"""Raw text in, every head out: label names with scores, entities whose offsets index the original text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_model.casing import encoding_casing_ids
from mtl_model.decoding import is_valid_bio
from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from tests.helpers import save_prediction_model

NER = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
TRICKY = [
    "Apple opened a store in Paris, said Tim Cook.",
    "Zürich’s café «Crème» — naïve façade, 東京 and São Paulo!",
    "Emoji 😀🚀 between words 👍🏽 and flags 🇫🇷 too",
    "",
    "   leading and trailing spaces   ",
    " ".join(["word"] * 200),  # far beyond max_seq_length: the rest gets no entity
    "no entities here",
]


@pytest.fixture(scope="module", params=[0, 8], ids=["uncased-heads", "casing-feature"])
def saved(request, tmp_path_factory, tiny_backbone):
    """Every prediction test runs on a model without and one with the casing feature (`model.casing_dim`)."""
    target = tmp_path_factory.mktemp("predict") / "model"
    return save_prediction_model(tiny_backbone, target, NER, 32, casing_dim=request.param)


def test_every_head_from_one_call_with_names_scores_and_exact_offsets(saved):
    model, _ = MultiTaskModel.load(saved)
    results = model.predict(TRICKY, batch_size=3)
    assert len(results) == len(TRICKY)
    found = 0
    for text, result in zip(TRICKY, results):
        assert result["topic"]["label"] in {"World", "Sports"} and 0.5 <= result["topic"]["score"] <= 1.0
        assert len(result["embedding"]) == 16 and abs(np.linalg.norm(result["embedding"]) - 1) < 1e-5
        for entity in result["ner"]:
            assert text[entity["start"] : entity["end"]] == entity["text"] and entity["text"], entity
            assert entity["label"] in {"LOC", "ORG", "PER"} and 0.0 < entity["score"] <= 1.0
        found += len(result["ner"])
        starts = [e["start"] for e in result["ner"]]
        assert starts == sorted(starts)
    assert found > 10
    assert results[3]["ner"] == []  # an empty text has no words
    assert max(e["end"] for e in results[5]["ner"]) < 32 * len("word ")  # the cut part has no entity


def test_predictions_do_not_depend_on_the_batch(saved):
    model, _ = MultiTaskModel.load(saved)
    one_by_one = [model.predict([text])[0] for text in TRICKY]
    batched = model.predict(TRICKY, batch_size=len(TRICKY))
    for single, together in zip(one_by_one, batched):
        assert single["topic"]["label"] == together["topic"]["label"]
        assert [(e["start"], e["end"], e["label"]) for e in single["ner"]] == [
            (e["start"], e["end"], e["label"]) for e in together["ner"]
        ]
        np.testing.assert_allclose(single["embedding"], together["embedding"], atol=1e-5)


def test_entities_come_from_a_valid_bio_sequence(saved):
    from mtl_model.error_analysis import entities
    from mtl_model.predict import first_sub_words

    model, tokenizer = MultiTaskModel.load(saved)
    encoding = tokenizer(
        TRICKY, truncation=True, max_length=32, padding=True, return_tensors="pt", return_offsets_mapping=True
    )
    casing = torch.tensor(encoding_casing_ids(TRICKY, encoding)) if model.reads_casing else None  # (B, T)
    with torch.inference_mode():
        logits = model(encoding["input_ids"], encoding["attention_mask"], task="ner", casing_ids=casing)["logits"]
    from mtl_model.decoding import decode

    for row in range(len(TRICKY)):
        positions = [position for _, position in first_sub_words(encoding.word_ids(row))]
        tags = [NER[t] for t in decode(torch.log_softmax(logits[row, positions], -1).numpy(), NER, "bio_viterbi")]
        assert is_valid_bio(tags)
        assert len(entities(tags)) == len(model.predict([TRICKY[row]])[0]["ner"])


def test_a_model_without_its_tokenizer_says_how_to_get_one(tiny_backbone):
    model = build_model(
        backbone=str(tiny_backbone), heads=[HeadSpec(name="t", kind="sentence", labels=["a", "b"])], pooling="mean",
        projection_dim=None, normalize=True, head_dropout=0.0, max_seq_length=16,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"use a model from MultiTaskModel.load\(folder\)"):
        model.predict(["text"])


def test_the_corpus_step_writes_every_head_beside_the_embedding(saved, tmp_path):
    """Same columns as `model.predict`, in shards with the usual guarantees; offsets index each row's text."""
    import pandas as pd
    import pyarrow.parquet as pq

    from mtl_model import steps
    from mtl_model.config import EmbedConfig

    corpus = [text for text in TRICKY if text]  # the corpus step refuses empty texts
    pd.DataFrame({"id": [f"d{i}" for i in range(len(corpus))], "text": corpus}).to_csv(tmp_path / "c.csv", index=False)
    config = EmbedConfig(outputs=["embedding", "topic", "ner"], include_probs=True, rows_per_shard=3, precision="fp32")
    result = steps.embed(str(saved), str(tmp_path / "c.csv"), config, device="cpu", out_dir=str(tmp_path / "out"))
    assert result.shards == 2 and result.rows == len(corpus)
    table = pq.read_table(tmp_path / "out" / "embeddings")
    assert table.column_names == ["id", "embedding", "topic", "topic_score", "topic_probs", "ner"]
    model, _ = MultiTaskModel.load(saved)
    expected = model.predict(corpus)
    texts = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)["text"].tolist()
    for text, row, direct in zip(texts, table.to_pylist(), expected):
        assert row["topic"] == direct["topic"]["label"] and abs(row["topic_score"] - direct["topic"]["score"]) < 1e-5
        assert abs(sum(row["topic_probs"]) - 1) < 1e-5
        assert [(e["start"], e["end"], e["label"]) for e in row["ner"]] == [
            (e["start"], e["end"], e["label"]) for e in direct["ner"]
        ]
        assert all(text[e["start"] : e["end"]] == e["text"] for e in row["ner"])
    again = steps.embed(str(saved), str(tmp_path / "c.csv"), config, device="cpu", out_dir=str(tmp_path / "out"))
    assert again.computed_shards == 0  # up to date: the prediction columns are part of the finished shards


def test_unknown_outputs_and_entities_from_token_ids_are_refused(saved, tmp_path):
    import pandas as pd

    from mtl_model import steps
    from mtl_model.config import EmbedConfig
    from mtl_model.errors import ConfigError

    pd.DataFrame({"id": ["a"], "text": ["x"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ConfigError, match=r"embed.outputs: \['sentiment'\] name no head of this model; choose from"):
        steps.embed(
            str(saved),
            str(tmp_path / "c.csv"),
            EmbedConfig(outputs=["sentiment"]),
            device="cpu",
            out_dir=str(tmp_path / "o"),
        )
    pd.DataFrame({"id": ["a"], "text": ["x"], "input_ids": [[2, 100, 3]]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match=r"token head\(s\) \['ner'\] give entity spans in the text"):
        steps.embed(
            str(saved),
            str(tmp_path / "t.parquet"),
            EmbedConfig(outputs=["ner"]),
            device="cpu",
            out_dir=str(tmp_path / "p"),
        )
