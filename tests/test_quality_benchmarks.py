"""The pure parts of the quality benchmarks: the HF peer's label and prediction rule, equal-compute single-task
runs, and the seed table."""

from __future__ import annotations

import json

import numpy as np
from transformers import AutoTokenizer

from benchmarks.quality_runs import single_task_steps, table
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
