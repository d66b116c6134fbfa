"""The from-scratch encoder inside the pipeline: vocab-build from training splits (cached by their content),
the Prefect flow end to end on the sample data, save → load, and configuration-time checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from mtl_model.errors import ConfigError
from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from mtl_model.modules.scratch import ScratchArchitecture, ScratchEncoder, scratch_parameter_count
from mtl_model.options import PipelineOptions, RunOptions
from tests.conftest import REPO_ROOT, SAMPLE_DIR
from tests.helpers import task_run_states

TINY = {"d_model": 32, "num_heads": 4, "num_layers": 2, "ff_dim": 64, "dropout": 0.0, "max_positions": 64}


def scratch_config(tmp_path: Path, data_dir: Path, **vocab) -> Path:
    config = yaml.safe_load((REPO_ROOT / "data/configs/scratch.yaml").read_text())
    config["name"] = "tiny-scratch"
    config["data_dir"] = str(data_dir)
    config["model"]["scratch"].update(TINY)
    config["model"]["projection_dim"] = 16
    config["tokenize"]["vocab"].update({"vocab_size": 600, **vocab})
    config["train"].update({"max_steps": 10, "batch_size": 8})
    config["embed"]["precision"] = "fp32"  # exact comparison with the reloaded model below
    path = tmp_path / "scratch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("scratch-data") / "sample"
    shutil.copytree(SAMPLE_DIR, target)
    return target


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory, data_copy, prefect_harness):
    from flows.pipeline import pipeline

    tmp = tmp_path_factory.mktemp("scratch-run")
    config = scratch_config(tmp, data_copy)
    state = pipeline(PipelineOptions(config_path=config, out=tmp / "out", device="cpu"), return_state=True)
    return {"config": config, "out": tmp / "out", "state": state, "result": state.result()}


def test_flow_builds_a_vocabulary_and_trains_the_scratch_encoder(scratch_run):
    out = scratch_run["out"]
    vocab = json.loads((out / "vocab" / "tokenizer.json").read_text())
    assert vocab["model"]["type"] == "WordPiece" and len(vocab["model"]["vocab"]) <= 600
    metadata = json.loads(pq.read_schema(out / "tokenized" / "topic" / "train.parquet").metadata[b"mtl"])
    assert metadata["tokenizer"] == str(out / "vocab")
    encoder_config = json.loads((out / "model" / "encoder" / "config.json").read_text())
    assert encoder_config["model_type"] == "mtl_scratch" and encoder_config["d_model"] == 32
    assert (out / "model" / "encoder" / "tokenizer.json").is_file()
    model, tokenizer = MultiTaskModel.load(out / "model")
    assert isinstance(model.encoder, ScratchEncoder) and len(tokenizer) == encoder_config["vocab_size"]
    training = scratch_run["result"].training
    heads = 16 * 4 + 4 + 16 * 2 + 2 + 32 * 9 + 9
    expected = scratch_parameter_count(model.encoder.config) + (32 * 16 + 16) + heads
    assert training.trainable_params == training.total_params == expected
    metrics = scratch_run["result"].metrics
    assert set(metrics) == {"topic", "sentiment", "ner"} and all(0.0 <= m["f1"] <= 1.0 for m in metrics.values())
    assert pq.read_metadata(out / "embeddings" / "part-00000.parquet").num_rows == 200


def test_parquet_embeddings_equal_the_reloaded_model(scratch_run):
    out = scratch_run["out"]
    model, tokenizer = MultiTaskModel.load(out / "model")
    table = pq.read_table(out / "embeddings").slice(0, 5)
    import pandas as pd

    texts = pd.read_csv(SAMPLE_DIR / "corpus.csv").set_index("id").loc[table.column("id").to_pylist(), "text"].tolist()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = model(batch["input_ids"], batch["attention_mask"])["sentence_embedding"].numpy()
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), expected, atol=1e-5)


def test_rerun_is_cached_and_a_test_file_change_keeps_the_vocabulary(scratch_run, data_copy):
    from flows.pipeline import pipeline

    again = pipeline(
        PipelineOptions(config_path=scratch_run["config"], out=scratch_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(again, expected=12)  # the pipeline's tasks plus vocab-build; up to date: no shard runs
    assert len(states) == 12 and {n for n, v in states.items() if v != "Cached"} == {
        n for n in states if n.startswith("embed-check")
    }
    dev = data_copy / "sentiment" / "dev.tsv"
    dev.write_text(dev.read_text() + "a zyzzyva of a film . \t1\n")
    changed = pipeline(
        PipelineOptions(config_path=scratch_run["config"], out=scratch_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(changed, expected=12)
    assert states["vocab-build"] == "Cached"  # built from training splits only: a test file does not touch it
    assert (
        states["tokenize-sentiment"] == "Completed"
        and states["train-out"] == "Cached"
        and states["evaluate-out"] == "Completed"
    )


def test_vocabulary_comes_from_training_splits_only(tmp_path):
    from mtl_model.config import plan_run
    from mtl_model.steps import build_vocab

    data = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, data)
    (data / "sentiment" / "dev.tsv").write_text(
        (data / "sentiment" / "dev.tsv").read_text() + "zyzzyva zyzzyva .\t1\n"
    )
    (data / "sentiment" / "train.tsv").write_text(
        (data / "sentiment" / "train.tsv").read_text() + "quokka quokka .\t1\n"
    )
    config = scratch_config(tmp_path, data, kind="word_level", min_frequency=1, vocab_size=5000)
    plan = plan_run(RunOptions(config_path=config, out=tmp_path / "out"))
    result = build_vocab(plan.config.tasks, plan.files, plan.config.tokenize, str(tmp_path / "out"))
    vocabulary = json.loads((tmp_path / "out" / "vocab" / "tokenizer.json").read_text())["model"]["vocab"]
    assert "quokka" in vocabulary and "zyzzyva" not in vocabulary
    assert result.vocab_size == len(vocabulary) and result.kind == "word_level"
    # 400 AG News rows → 280 train after the 10 % / 20 % split, 320 SST-2 train + 1 added, and every NER train sentence
    assert result.texts == 280 + 321 + sum(
        1
        for block in (SAMPLE_DIR / "ner" / "train.txt").read_text().split("\n\n")
        if block.strip() and not block.startswith("-DOCSTART-")
    )


def test_sequence_longer_than_the_position_table_is_a_config_error(tmp_path):
    from mtl_model.config import plan_run

    config = scratch_config(tmp_path, SAMPLE_DIR)
    with pytest.raises(ConfigError, match=r"tokenize.max_seq_length 128 exceeds model.scratch.max_positions 64"):
        plan_run(RunOptions(config_path=config, overrides=["tokenize.max_seq_length=128"]))
    with pytest.raises(ConfigError, match=r"num_heads \(3\) must divide d_model \(32\)"):
        plan_run(RunOptions(config_path=config, overrides=["model.scratch.num_heads=3"]))


def test_scratch_model_save_load_gives_identical_embeddings(tmp_path):
    from mtl_model.vocab import VocabConfig, build_tokenizer

    tokenizer = build_tokenizer(
        ["a small corpus for a small vocabulary", "another line of text"],
        VocabConfig(min_frequency=1),
        model_max_length=64,
    )
    torch.manual_seed(0)
    heads = [
        HeadSpec(name="topic", kind="sentence", labels=["a", "b"]),
        HeadSpec(name="ner", kind="token", labels=["O", "B-X", "I-X"]),
    ]
    model = build_model(
        backbone="scratch",
        heads=heads,
        pooling="max",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=64,
        scratch=ScratchArchitecture(**TINY, positions="learned"),
        tokenizer=tokenizer,
    ).eval()
    model.save(tmp_path / "model", tokenizer)
    loaded, loaded_tokenizer = MultiTaskModel.load(tmp_path / "model")
    batch = loaded_tokenizer(["a small line", "another corpus of text here"], padding=True, return_tensors="pt")
    a = model(batch["input_ids"], batch["attention_mask"], task="ner")
    b = loaded(batch["input_ids"], batch["attention_mask"], task="ner")
    assert torch.equal(a["sentence_embedding"], b["sentence_embedding"]) and torch.equal(a["logits"], b["logits"])
    assert loaded.config.backbone == "scratch" and loaded.encoder.config.positions == "learned"


def test_lora_on_the_scratch_encoder_adapts_its_feed_forward_layers(tmp_path):
    from mtl_model.config import TrainConfig, plan_run
    from mtl_model.train import train_multitask
    from mtl_model.vocab import VocabConfig, build_tokenizer
    from tests.helpers import one_batch_split

    with pytest.raises(
        ConfigError,
        match=r"train.lora.target_modules \['query'\]: the scratch encoder's adaptable layers are "
        r"\['linear1', 'linear2'\]",
    ):
        plan_run(
            RunOptions(
                config_path=scratch_config(tmp_path, SAMPLE_DIR), overrides=["train.lora.target_modules=[query]"]
            ),
            freeze_policy="lora",
        )
    tokenizer = build_tokenizer(
        [" ".join(str(i) for i in range(300))], VocabConfig(kind="word_level", min_frequency=1), model_max_length=64
    )
    torch.manual_seed(0)
    model = build_model(
        backbone="scratch",
        heads=[HeadSpec(name="topic", kind="sentence", labels=list("abcd"))],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=64,
        scratch=ScratchArchitecture(**TINY),
        tokenizer=tokenizer,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_multitask(
        model,
        {"topic": one_batch_split(seed=1)},
        TrainConfig(max_steps=3, batch_size=8, freeze_policy="lora"),
        device="cpu",
    )
    lora = 2 * 2 * 8 * (32 + 64)  # 2 layers × {linear1 32→64, linear2 64→32} × rank 8 × (in + out)
    assert result.trainable_params == lora + 32 * 4 + 4
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert {k for k in changed if k.startswith("encoder.")} == {
        f"encoder.layers.{i}.linear{j}.weight" for i in (0, 1) for j in (1, 2)
    }
