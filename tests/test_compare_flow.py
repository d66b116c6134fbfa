"""The freeze-policy comparison flow end to end on the sample data with a tiny in-code BERT."""

from __future__ import annotations

import json

import pytest

from mtl_model.options import ComparisonOptions
from tests.helpers import task_run_states, write_config

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.filterwarnings("ignore:gradual unfreezing")]

POLICIES = [
    "none",
    "all",
    "backbone",
    "head:ner",
    "top:1",
    "gradual|train.unfreeze_every=2",
    "lora",
    "none|train.layerwise_lr_decay=0.5",
]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, tiny_backbone):
    from flows.compare_freeze import compare_freeze
    from tests.conftest import SAMPLE_DIR

    tmp = tmp_path_factory.mktemp("compare")
    config = write_config(tmp, tiny_backbone, SAMPLE_DIR, max_steps=6)
    state = compare_freeze(
        ComparisonOptions(config_path=config, policies=POLICIES, out=tmp / "out", device="cpu"), return_state=True
    )
    return {"out": tmp / "out", "state": state, "result": state.result()}


def test_every_policy_is_trained_on_the_same_tokenized_data(comparison):
    out, result = comparison["out"], comparison["result"]
    assert [row["policy"] for row in result.rows] == POLICIES
    states = task_run_states(comparison["state"], expected=1 + 3 + 3 + 2 * len(POLICIES) + 1)
    assert sum(name.startswith("tokenize") for name in states) == 3  # once per task, not once per policy
    assert sum(name.startswith("train") for name in states) == len(POLICIES)
    assert set(states.values()) == {"Completed"}
    for folder in [
        "none",
        "all",
        "backbone",
        "head-ner",
        "top-1",
        "gradual_unfreeze_every-2",
        "lora",
        "none_layerwise_lr_decay-0.5",
    ]:
        metrics = json.loads((out / "policies" / folder / "metrics.json").read_text())
        assert set(metrics["tasks"]) == {"topic", "sentiment", "ner"}, folder
        assert metrics["training"]["trainable_params"] <= metrics["training"]["total_params"]


def test_table_rows_hold_counts_time_memory_and_metrics(comparison):
    rows = {row["policy"]: row for row in comparison["result"].rows}
    total = rows["none"]["trainable_params"]
    assert rows["none"]["trainable_percent"] == 100.0 and rows["all"]["trainable_params"] == 0
    assert rows["all"]["train_seconds"] == 0.0
    assert rows["backbone"]["trainable_params"] < rows["top:1"]["trainable_params"] < total
    assert rows["head:ner"]["trainable_params"] == total - (32 * 9 + 9)  # the tiny BERT's NER head
    # 6 steps, one more group every 2 steps: both layers train from step 4, the embeddings would from step 6
    assert (
        rows["gradual|train.unfreeze_every=2"]["trainable_params"] == rows["backbone"]["trainable_params"] + 2 * 8544
    )
    assert rows["lora"]["trainable_params"] == rows["backbone"]["trainable_params"] + 2 * 2 * (8 * 32 + 32 * 8)
    assert rows["none|train.layerwise_lr_decay=0.5"]["trainable_params"] == total
    for row in rows.values():
        assert 0.0 <= row["topic"] <= 1.0 and 0.0 <= row["sentiment"] <= 1.0 and 0.0 <= row["ner"] <= 1.0
        assert row["peak_memory_mb"] is not None and row["peak_memory_mb"] >= 0
    assert rows["none"]["peak_memory_mb"] > rows["backbone"]["peak_memory_mb"]  # gradients + Adam state of the encoder


def test_report_files_and_artifact(comparison):
    from prefect.client.orchestration import get_client

    out = comparison["out"]
    markdown = (out / "comparison.md").read_text()
    assert "| `lora` | " in markdown and "| `gradual\\|train.unfreeze_every=2` |" in markdown
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "comparison.json").read_text())["rows"] == comparison["result"].rows
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()  # latest per key
        keys = {a.key for a in artifact}
    assert "freeze-comparison" in keys


def test_bad_entries_are_refused_before_any_work(tmp_path, tiny_backbone):
    from mtl_model.pipeline import plan_comparison
    from tests.conftest import SAMPLE_DIR

    config = str(write_config(tmp_path, tiny_backbone, SAMPLE_DIR))
    for policies, message in [
        (["none", "frozen"], "unknown freeze policy 'frozen'; valid policies"),
        (["none|model.pooling=cls"], "must be `train.<field>=<value>`"),
        (["head:pos"], r"head\(s\) \['pos'\] name no task"),
        (["none", "none"], "comparison entries repeat"),
    ]:
        with pytest.raises(ValueError, match=message):  # ConfigError, or the options' ValidationError that wraps it
            plan_comparison(ComparisonOptions(config_path=config, policies=policies, out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()
