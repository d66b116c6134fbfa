"""The pure parts of the quality benchmarks: the HF peer's label and prediction rule, equal-compute single-task
runs, and the seed table."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
from transformers import AutoTokenizer

from benchmarks.process_stats import run_measured
from benchmarks.quality_runs import recipe_key, run, single_task_steps, table
from benchmarks.trainer_peer import CONLL_TAGS, encode_ner, first_sub_word_tags
from mtl_model.readers import TokenExample


def test_peer_labels_and_predicts_at_the_first_sub_word_only(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    example = TokenExample(row_id="r", tokens=["Zwoelfte", "Paris"], tags=["B-ORG", "B-LOC"])
    (row,) = encode_ner(tokenizer, [example])
    word_ids = row["word_ids"]
    assert word_ids.count(0) > 1  # the tiny vocabulary splits the made-up word
    labelled = [(word, label) for word, label in zip(word_ids, row["labels"]) if label != -100]
    assert labelled == [(0, CONLL_TAGS.index("B-ORG")), (1, CONLL_TAGS.index("B-LOC"))]
    best = np.array([CONLL_TAGS.index("B-PER") if word == 0 else 0 for word in word_ids])  # (T,)
    best[word_ids.index(0) + 1] = CONLL_TAGS.index("I-MISC")  # a later sub-word's guess is ignored
    assert first_sub_word_tags(word_ids, best, 3) == ["B-PER", "O", "O"]  # the third word was cut: O


def test_single_task_runs_match_the_multi_task_runs_examples():
    multi = {"training": {"examples_per_task": {"ner": 3200, "sentiment": 3210}}}
    assert single_task_steps(multi, "ner", 32) == 100
    assert single_task_steps(multi, "sentiment", 32) == 101  # a last partial batch rounds up


def test_seed_table_is_mean_and_sample_std(tmp_path):
    for seed, (multi, single) in {1: (0.90, 0.91), 2: (0.92, 0.90)}.items():
        (tmp_path / f"multi-seed{seed}.json").write_text(json.dumps({"metrics": {"sst": {"accuracy": multi}}}))
        (tmp_path / f"single-sst-seed{seed}.json").write_text(json.dumps({"metrics": {"sst": {"accuracy": single}}}))
    rows = table(tmp_path, ["sst"], [1, 2, 3])
    assert rows["sst"]["multi"]["n"] == 2 and rows["sst"]["multi"]["mean"] == 91.0
    assert rows["sst"]["multi"]["std"] == 1.41  # sample std of 90 and 92
    assert rows["sst"]["single"]["mean"] == 90.5


def test_a_kept_result_of_another_recipe_is_refused(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("train: {epochs: 1}\n")
    args = argparse.Namespace(out=str(tmp_path / "out"), results=str(tmp_path / "results"), config=str(config))
    (tmp_path / "results").mkdir()
    kept = {"metrics": {}, "recipe_sha256": recipe_key(str(config), ["--set", "train.seed=1"])}
    (tmp_path / "results" / "multi-seed1.json").write_text(json.dumps(kept))
    assert run("multi-seed1", args, ["--set", "train.seed=1"]) == kept  # the same recipe: kept, nothing runs
    with pytest.raises(SystemExit, match="another recipe"):
        run("multi-seed1", args, ["--set", "train.seed=2"])  # other settings
    config.write_text("train: {epochs: 2}\n")
    with pytest.raises(SystemExit, match="another recipe"):
        run("multi-seed1", args, ["--set", "train.seed=1"])  # the config file changed


def test_a_run_reports_its_own_peak_rss_not_the_parents(tmp_path):
    import torch  # noqa: F401  # this test process is big; the child's peak must not include it

    with open(tmp_path / "log", "w") as log:
        code = "import sys; x = bytearray(80 * 2**20); print('out'); sys.stderr.write('err'); sys.exit(4)"
        stats = run_measured([sys.executable, "-c", code], stderr=log, capture_stdout=True)
    assert (stats.stdout, stats.returncode) == ("out\n", 4)
    assert 80 * 2**20 < stats.peak_rss_bytes < 150 * 2**20
    assert stats.seconds > 0
    assert (tmp_path / "log").read_text() == "err"


def test_single_tasks_picks_which_single_task_runs_follow(tmp_path, monkeypatch, capsys):
    import benchmarks.quality_runs as quality_runs

    config = tmp_path / "c.yaml"
    config.write_text("tasks: [{name: topic}, {name: sentiment}, {name: ner}]\ntrain: {batch_size: 32}\n")
    multi = {"training": {"examples_per_task": {"topic": 640, "sentiment": 3200, "ner": 960}}}
    ran: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(quality_runs, "run", lambda name, args, extra: ran.append((name, extra)) or multi)
    common = ["--config", str(config), "--results", str(tmp_path), "--seeds", "2"]
    assert quality_runs.main([*common, "--single-tasks", "sentiment,ner"]) == 0
    assert [name for name, _ in ran] == ["multi-seed2", "single-ner-seed2", "single-sentiment-seed2"]  # shortest first
    assert ran[2][1][-5:-2] == ["sentiment", "--set", "train.max_steps=100"]
    with pytest.raises(SystemExit):
        quality_runs.main([*common, "--single-tasks", "sentimnt"])
    assert "['sentimnt'] not among the config's tasks ['topic', 'sentiment', 'ner']" in capsys.readouterr().err


def test_a_kept_result_gains_its_validation_curve_and_curves_prints_it(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.quality_runs import main

    config = tmp_path / "c.yaml"
    config.write_text("tasks: [{name: topic}]\n")
    extra = ["--set", "train.seed=1"]
    kept = {"metrics": {"topic": {"accuracy": 0.9}}, "training": {"best_step": 10}}
    kept["recipe_sha256"] = recipe_key(str(config), extra)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "multi-seed1.json").write_text(json.dumps(kept))  # written by a runner without curves
    log = [{"step": s, "kind": "eval", "task": t, "name": "accuracy" if t else "mean", "value": v}
           for s, v in ((5, 0.5), (10, 0.75)) for t in ("topic", "")]  # fmt: skip
    (tmp_path / "out" / "multi-seed1").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(log), tmp_path / "out" / "multi-seed1" / "train_log.parquet")
    args = argparse.Namespace(out=str(tmp_path / "out"), results=str(tmp_path / "results"), config=str(config))
    curve = [{"step": 5, "topic": 0.5, "selection": 0.5}, {"step": 10, "topic": 0.75, "selection": 0.75}]
    assert run("multi-seed1", args, extra)["validation_curve"] == curve
    assert json.loads((tmp_path / "results" / "multi-seed1.json").read_text())["validation_curve"] == curve  # kept
    common = ["--config", str(config), "--results", str(tmp_path / "results"), "--seeds", "1", "--table-only"]
    assert main([*common, "--curves"]) == 0
    assert "multi-seed1 (kept step 10)\n| step | topic | selection |\n|---:|---:|---:|\n| 5 | 50.00 | 50.00 |\n" in (
        capsys.readouterr().out
    )
