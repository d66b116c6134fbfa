"""End to end: the Prefect flow on the sample data with a tiny in-code BERT (no downloaded weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mtl_model.options import PipelineOptions
from tests.conftest import SAMPLE_DIR
from tests.helpers import PIPELINE_TASKS, task_run_states, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory) -> Path:
    """A private copy of the sample data, so a test may edit one file."""
    target = tmp_path_factory.mktemp("data") / "sample"
    shutil.copytree(SAMPLE_DIR, target)
    return target


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_backbone, data_copy):
    from flows.pipeline import pipeline

    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp, tiny_backbone, data_copy)
    out = tmp / "out"
    state = pipeline(PipelineOptions(config_path=config, out=out, device="cpu"), return_state=True)
    return {"config": config, "out": out, "state": state, "result": state.result()}


def test_every_output_exists_with_its_schema(first_run):
    out = first_run["out"]
    for task, splits in {
        "topic": ["train", "validation", "test"],
        "sentiment": ["train", "test"],
        "ner": ["train", "validation", "test"],
    }.items():
        for split in splits:
            schema = pq.read_schema(out / "tokenized" / task / f"{split}.parquet")
            assert schema.field("input_ids").type.list_size == 64
            assert str(schema.field("input_ids").type.value_type) == "int32"
            assert str(schema.field("attention_mask").type.value_type) == "int8"
            meta = json.loads(schema.metadata[b"mtl"])
            assert meta["max_seq_length"] == 64 and meta["padded_to"] == 64 and meta["task"] == task
            assert len(meta["source"]["sha256"]) == 64 and Path(meta["source"]["path"]).is_file()
            assert "truncated" in meta["stats"]
    ner_meta = json.loads(pq.read_schema(out / "tokenized/ner/train.parquet").metadata[b"mtl"])
    assert ner_meta["labels"] == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert pq.read_schema(out / "tokenized/ner/train.parquet").field("labels").type.list_size == 64
    # Split of the single topic file: 400 rows → 280 / 40 / 80, stratified (100 per class in, 20 per class in test).
    assert [
        pq.read_metadata(out / f"tokenized/topic/{s}.parquet").num_rows for s in ("train", "validation", "test")
    ] == [280, 40, 80]
    test_labels = pq.read_table(out / "tokenized/topic/test.parquet").column("labels").to_pylist()
    assert sorted(pd.Series(test_labels).value_counts().tolist()) == [20, 20, 20, 20]
    for name in (
        "mtl_model.json",
        "heads.safetensors",
        "encoder/config.json",
        "encoder/model.safetensors",
        "encoder/tokenizer.json",
    ):
        assert (out / "model" / name).is_file(), name
    for name in ("training.json", "train_log.parquet", "training_curve.png"):
        assert (out / name).is_file(), name


def test_metrics_present_and_in_range(first_run):
    metrics = json.loads((first_run["out"] / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"topic", "sentiment", "ner"}
    for task in ("topic", "sentiment"):
        assert set(metrics["tasks"][task]) >= {"accuracy", "precision", "recall", "f1"}
    assert set(metrics["tasks"]["ner"]) >= {"precision", "recall", "f1"}
    values = [v for task in metrics["tasks"].values() for k, v in task.items() if k != "support"]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert metrics["tasks"]["topic"]["support"] == 80 and metrics["tasks"]["ner"]["support"] == 80
    assert (
        metrics["training"]["steps"] == 12
        and metrics["training"]["trainable_params"] == metrics["training"]["total_params"]
    )


def test_evaluation_shows_where_the_model_is_wrong(first_run):
    """Per-class P/R/F1 equal scikit-learn's and seqeval's reports recomputed from the predictions Parquet, which
    reproduces metrics.json; label names are shown; confusion PNGs and entity-level error counts are written."""
    from seqeval.metrics import classification_report as seqeval_report
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import classification_report as sklearn_report

    from mtl_model.evaluate import token_metrics

    out = first_run["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    topic = pq.read_table(out / "predictions" / "topic.parquet").to_pandas()
    assert list(topic.columns) == ["row_id", "text", "gold", "predicted", "score"] and len(topic) == 80
    assert set(topic["gold"]) == {"World", "Sports", "Business", "Sci/Tech"} and topic["score"].between(0, 1).all()
    assert accuracy_score(topic["gold"], topic["predicted"]) == metrics["tasks"]["topic"]["accuracy"]
    expected = sklearn_report(topic["gold"], topic["predicted"], output_dict=True, zero_division=0)
    for name, row in metrics["per_class"]["topic"].items():
        assert row == {"precision": expected[name]["precision"], "recall": expected[name]["recall"],
                       "f1": expected[name]["f1-score"], "support": expected[name]["support"]}, name  # fmt: skip
    assert set(metrics["per_class"]["sentiment"]) == {"negative", "positive"}
    ner = pq.read_table(out / "predictions" / "ner.parquet").to_pandas()
    gold, predicted = [list(tags) for tags in ner["gold"]], [list(tags) for tags in ner["predicted"]]
    assert token_metrics(gold, predicted) == metrics["tasks"]["ner"]
    expected = seqeval_report(gold, predicted, output_dict=True, zero_division=0)
    assert set(metrics["per_class"]["ner"]) == {"LOC", "MISC", "ORG", "PER"}
    for kind, row in metrics["per_class"]["ner"].items():
        assert row["f1"] == expected[kind]["f1-score"] and row["support"] == expected[kind]["support"], kind
        errors = metrics["entity_errors"]["ner"][kind]
        assert errors["correct"] + errors["wrong_type"] + errors["boundary"] + errors["missed"] == row["support"]
        assert errors["correct"] == round(row["recall"] * row["support"])
    for head in ("topic", "sentiment"):
        assert (out / "confusion" / f"{head}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_corpus_step_predicts_what_evaluation_predicted(first_run, tmp_path):
    """The test split's texts as a corpus: the corpus step's labels equal the evaluation's predictions; for NER,
    on sentences whose every word is one word of the tokenizer's own pre-tokenizer (so raw text and CoNLL's
    pre-split words tokenize alike), the entity spans equal the evaluated tags' spans."""
    from transformers import AutoTokenizer

    from mtl_model import steps
    from mtl_model.config import EmbedConfig
    from mtl_model.error_analysis import entities

    out = first_run["out"]
    config = EmbedConfig(id_column="row_id", outputs=["topic", "ner"], precision="fp32")
    for head in ("topic", "ner"):
        evaluated = pq.read_table(out / "predictions" / f"{head}.parquet").to_pandas()
        evaluated[["row_id", "text"]].to_parquet(tmp_path / f"{head}.parquet")
        steps.embed(
            str(out / "model"), str(tmp_path / f"{head}.parquet"), config, device="cpu", out_dir=str(tmp_path / head)
        )
        predicted = pq.read_table(tmp_path / head / "embeddings").to_pandas()
        assert predicted["row_id"].tolist() == evaluated["row_id"].tolist()
        if head == "topic":
            assert predicted["topic"].tolist() == evaluated["predicted"].tolist()
    tokenizer = AutoTokenizer.from_pretrained(out / "model" / "encoder")
    pre_tokenize = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    compared = 0
    for text, tags, spans in zip(evaluated["text"], evaluated["predicted"], predicted["ner"]):
        words = text.split(" ")
        if any(len(pre_tokenize(word)) != 1 for word in words) or len(tokenizer(text)["input_ids"]) > 64:
            continue  # "U.S." is one CoNLL word but several raw-text words; a cut word ends where reading stopped
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
        expected = [(starts[a], starts[b] + len(words[b]), kind) for kind, a, b in entities(list(tags))]
        assert [(s["start"], s["end"], s["label"]) for s in spans] == expected, text
        compared += 1
    assert compared >= 40


def test_the_ui_gets_every_metric_the_loss_curve_and_the_error_analysis(first_run):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        latest = {a.key: a for a in client.read_latest_artifacts()}
    metrics = json.loads(latest["metrics"].data) if isinstance(latest["metrics"].data, str) else latest["metrics"].data
    assert all("token_accuracy" in row for row in metrics)  # every column of every task, not the first row's only
    curve = latest["loss-curve"].data
    curve = json.loads(curve) if isinstance(curve, str) else curve
    assert curve[-1]["step"] == 12 and {"loss topic", "loss sentiment", "loss ner"} <= set(curve[0])
    assert "metrics-per-class" in latest and "predictions/ner" in latest["error-analysis"].data
    assert latest["embedding-progress"].data == 100.0 and "200/200 rows" in latest["embedding-progress"].description
    assert latest["training-progress"].data == 100.0


def test_loss_curve_rows_average_each_bucket():
    from mtl_model.training_log import loss_curve_rows

    rows = [{"step": s, "kind": "train", "task": "a", "name": "loss", "value": float(s)} for s in range(1, 11)]
    rows.append({"step": 10, "kind": "eval", "task": "a", "name": "accuracy", "value": 0.5})
    assert loss_curve_rows(rows, points=2) == [
        {"step": 5, "loss a": 3.0},
        {"step": 10, "loss a": 8.0, "val a accuracy": 0.5},
    ]


def test_validation_curve_is_one_row_per_evaluation_with_each_tasks_headline():
    from mtl_model.training_log import validation_curve

    def row(step: int, kind: str, task: str, name: str, value: float) -> dict:
        return {"step": step, "kind": kind, "task": task, "name": name, "value": value}

    rows = [row(5, "train", "topic", "loss", 0.7)]
    for step, (accuracy, f1) in {5: (0.5, 0.25), 10: (0.75, 0.5)}.items():
        rows += [row(step, "eval", "topic", "accuracy", accuracy), row(step, "eval", "topic", "f1", 0.1)]
        rows += [row(step, "eval", "ner", "f1", f1), row(step, "eval", "ner", "token_accuracy", 0.9)]
        rows.append(row(step, "eval", "", "mean", (accuracy + f1) / 2))
    assert validation_curve(rows) == [
        {"step": 5, "topic": 0.5, "ner": 0.25, "selection": 0.375},  # accuracy; entity F1 for the token head
        {"step": 10, "topic": 0.75, "ner": 0.5, "selection": 0.625},
    ]
    assert validation_curve(rows[:1]) == []  # no evaluation, no curve


def test_policy_all_on_the_trained_model_reproduces_its_metrics(first_run, tmp_path):
    """`freeze_policy: all` with a trained model as backbone: zero-shot use of that model, no training."""
    from flows.pipeline import pipeline

    result = pipeline(
        PipelineOptions(
            config_path=first_run["config"],
            out=tmp_path / "zero-shot",
            device="cpu",
            freeze_policy="all",
            overrides=[f"model.backbone={first_run['out'] / 'model'}"],
        )
    )
    assert result.training.trainable_params == 0 and result.training.steps == 0
    assert result.metrics == first_run["result"].metrics


def test_embeddings_one_row_per_corpus_row_in_order(first_run):
    out = first_run["out"] / "embeddings"
    corpus = pd.read_csv(SAMPLE_DIR / "corpus.csv")
    table = pq.read_table(out)
    assert table.column_names == ["id", "embedding", "topic", "topic_score", "sentiment", "sentiment_score", "ner"]
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[16]"
    assert table.column("id").to_pylist() == corpus["id"].tolist()
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    meta = json.loads(table.schema.metadata[b"mtl.embedding"])
    assert meta["dimension"] == 16 and meta["pooling"] == "mean" and meta["normalized"] is True
    assert (out / "_SUCCESS").is_file() and json.loads((out / "_manifest.json").read_text())["rows"] == 200
    # Readable as is by pandas and DuckDB.
    assert len(pd.read_parquet(out)) == 200
    count = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{out}/part-*.parquet')").fetchall()[0]
    assert count == (200, 200)


def test_sentence_transformers_export_reproduces_the_parquet_embeddings(first_run):
    from sentence_transformers import SentenceTransformer

    export = first_run["out"] / "model" / "sentence-transformer"
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((export / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Dense", "Normalize"]
    table = pq.read_table(first_run["out"] / "embeddings")
    texts = pd.read_csv(SAMPLE_DIR / "corpus.csv").set_index("id").loc[table.column("id").to_pylist(), "text"].tolist()
    encoded = SentenceTransformer(str(export), device="cpu").encode(texts, batch_size=16)
    np.testing.assert_allclose(
        encoded, np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-5, rtol=0
    )


def test_second_run_is_served_from_cache(first_run):
    from flows.pipeline import pipeline

    model_file = first_run["out"] / "model" / "heads.safetensors"
    before = model_file.stat().st_mtime_ns
    state = pipeline(
        PipelineOptions(config_path=first_run["config"], out=first_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(state, expected=PIPELINE_TASKS - 2)  # up to date: no shard runs, no finish
    assert len(states) == PIPELINE_TASKS - 2
    # every step is served from cache; the embeddings' folder check always runs (it finds nothing to do)
    assert {name: value for name, value in states.items() if value != "Cached"} == {
        name: "Completed" for name in states if name.startswith("embed-check-output")
    }, states
    assert state.result().metrics == first_run["result"].metrics
    assert model_file.stat().st_mtime_ns == before


def test_changing_one_file_reruns_only_what_depends_on_it(first_run, data_copy):
    from flows.pipeline import pipeline

    dev = data_copy / "sentiment" / "dev.tsv"
    dev.write_text(dev.read_text() + "an unexpectedly moving film . \t1\n")
    state = pipeline(
        PipelineOptions(config_path=first_run["config"], out=first_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(state, expected=PIPELINE_TASKS - 2)
    rerun = sorted(name for name, value in states.items() if value != "Cached")
    # sentiment's test split changed: its tokenize/pad re-run, training (train splits only) is reused,
    # evaluation re-runs; the other tasks and the embeddings are reused.
    assert rerun == ["embed-check-output", "evaluate-out", "pad-sentiment", "tokenize-sentiment", "validate"]
    assert state.result().metrics["sentiment"]["support"] == 101


def test_deleted_output_is_recomputed_not_returned_stale(first_run):
    from flows.pipeline import pipeline

    shutil.rmtree(first_run["out"] / "embeddings")
    state = pipeline(
        PipelineOptions(config_path=first_run["config"], out=first_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(state)
    assert sorted(name for name, value in states.items() if value != "Cached") == [
        "embed-check-output",
        "embed-finish",
        "embed-shard-00000",
    ]
    assert (first_run["out"] / "embeddings" / "_SUCCESS").is_file()


@pytest.mark.parametrize("fault", ["deleted", "truncated", "bit flip"])
def test_a_damaged_model_folder_is_retrained_not_trusted(first_run, fault):
    """The train step's cache covers every file of the saved model (its `_files.json`), so a deleted or cut
    weight file means training again, not a traceback in evaluate on every later run."""
    from flows.pipeline import pipeline
    from mtl_model.io import files_manifest_problems

    model = first_run["out"] / "model"
    before = (model / "_files.json").read_text()
    metrics = json.loads((first_run["out"] / "metrics.json").read_text())["tasks"]
    heads = model / "heads.safetensors"
    if fault == "deleted":
        heads.unlink()
    elif fault == "truncated":
        heads.write_bytes(heads.read_bytes()[:-64])
    else:  # same size, still loadable: one weight changed
        data = bytearray(heads.read_bytes())
        data[-7] ^= 0x01
        heads.write_bytes(bytes(data))
    assert files_manifest_problems(model)
    state = pipeline(
        PipelineOptions(config_path=first_run["config"], out=first_run["out"], device="cpu"), return_state=True
    )
    states = task_run_states(state, expected=PIPELINE_TASKS - 2)
    assert states["train-out"] == "Completed" and states["evaluate-out"] == "Completed", states
    assert files_manifest_problems(model) == [] and (model / "_files.json").read_text() == before  # same bytes again
    assert state.result().metrics == metrics


def test_outputs_follow_the_umask_weights_included(first_run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in [
        first_run["out"] / "model" / "heads.safetensors",
        first_run["out"] / "model/encoder/model.safetensors",
    ]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert (first_run["out"] / "model").stat().st_mode & 0o777 == 0o777 & ~umask


def test_bad_input_fails_with_file_and_line_and_leaves_no_output(tmp_path, tiny_backbone):
    from flows.pipeline import pipeline
    from mtl_model.errors import DataValidationError

    data = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, data)
    conll = data / "ner" / "train.txt"
    lines = conll.read_text().splitlines()
    assert lines[3] == "company NN I-NP O" and lines[6] == "in IN B-PP O"
    lines[3] = "company NN I-NP O extra"  # line 4: a fifth column
    lines[6] = "in IN B-PP I-LOC"  # line 7: I-LOC right after O
    conll.write_text("\n".join(lines) + "\n")
    (data / "sentiment" / "train.tsv").write_text(
        "sentence\tlabel\ngood film . \t1\n \t0\nbad film . \tnan\ndull film . \t0\n"
    )
    config = write_config(tmp_path, tiny_backbone, data)
    out = tmp_path / "out"
    with pytest.raises(DataValidationError) as caught:
        pipeline(PipelineOptions(config_path=config, out=out, device="cpu"))
    message = str(caught.value)
    assert f"{conll}:line 4: expected 4 columns, found 5" in message
    assert f"{conll}:line 7: tag 'I-LOC' follows 'O': not valid BIO" in message
    assert f"{data / 'sentiment' / 'train.tsv'}:line 3: text is empty" in message
    assert f"{data / 'sentiment' / 'train.tsv'}:line 4: label is missing or NaN ('nan')" in message
    assert not out.exists()


def test_cli_help_and_bad_input_exit_code(tmp_path, tiny_backbone, capsys):
    from flows.pipeline import main

    with pytest.raises(SystemExit) as help_exit:
        main(["--help"])
    assert help_exit.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config", "--out", "--freeze-policy", "--device", "--data-dir"):
        assert option in text
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
