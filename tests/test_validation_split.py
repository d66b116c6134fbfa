"""`validation_from_train`: a seeded, stratified validation split carved from a task's training file."""

from __future__ import annotations

from collections import Counter

import pytest

from mtl_model.config import TaskSpec, plan_run
from mtl_model.errors import ConfigError
from mtl_model.options import RunOptions
from mtl_model.task_data import load_task_data
from tests.conftest import SAMPLE_DIR

SENTIMENT = dict(name="sentiment", kind="sentence", format="glue_tsv", text_column="sentence", label_column="label")
FILES = {"train": str(SAMPLE_DIR / "sentiment/train.tsv"), "test": str(SAMPLE_DIR / "sentiment/dev.tsv")}


def test_carved_validation_is_seeded_stratified_and_disjoint():
    whole = load_task_data(TaskSpec(**SENTIMENT, files=FILES), FILES)
    carved = load_task_data(TaskSpec(**SENTIMENT, files=FILES, validation_from_train=0.1), FILES)
    train, validation = carved.splits["train"], carved.splits["validation"]
    assert len(train) + len(validation) == len(whole.splits["train"]) == 320 and len(validation) == 32
    assert not {e.row_id for e in train} & {e.row_id for e in validation}
    assert Counter(e.label for e in validation) == {"0": 16, "1": 16}  # stratified: the training file is balanced
    again = load_task_data(TaskSpec(**SENTIMENT, files=FILES, validation_from_train=0.1), FILES)
    assert [e.row_id for e in again.splits["validation"]] == [e.row_id for e in validation]
    assert carved.splits["test"] == whole.splits["test"]  # the test split is never touched


def test_a_task_with_a_validation_split_cannot_carve_another():
    with pytest.raises(ValueError, match="validation_from_train carves a validation split from `train`"):
        TaskSpec(**SENTIMENT, files={**FILES, "validation": FILES["test"]}, validation_from_train=0.1)


def test_eval_every_accepts_a_carved_validation_split(tmp_path):
    import yaml

    from tests.conftest import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())
    config["data_dir"] = str(SAMPLE_DIR)
    config["tasks"] = [task for task in config["tasks"] if task["name"] == "sentiment"]
    config["train"]["eval_every"] = 5
    path = tmp_path / "sentiment.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="train.eval_every: no task has a validation split"):
        plan_run(RunOptions(config_path=path))
    config["tasks"][0]["validation_from_train"] = 0.1
    path.write_text(yaml.safe_dump(config))
    assert plan_run(RunOptions(config_path=path)).config.tasks[0].validation_from_train == 0.1


def _sentence_rows(first_word: str, label: str) -> list:
    """A six-word sentence and its five prefixes as rows, the way SST-2 cuts phrases from sentences."""
    from mtl_model.readers import TextExample

    words = f"{first_word} film was good and long".split()
    return [TextExample(f"f:{first_word}:{n}", " ".join(words[:n]), label) for n in range(6, 0, -1)]


def _spans(text: str) -> set[str]:
    words = text.split()
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def test_whole_text_validation_shares_no_phrase_with_training():
    from mtl_model.readers import TextExample
    from mtl_model.task_data import carve_whole_texts

    examples = [row for n in range(20) for row in _sentence_rows(f"w{n}", str(n % 2))]
    examples.append(TextExample("f:shared", "film was good", "1"))  # a phrase of every sentence, as its own row
    train, validation = carve_whole_texts(examples, fraction=0.1, seed=0)
    # 121 rows, budget 12: the first held-out sentence takes its 6 rows and the shared one, the second its 6
    assert len(validation) == 2 and len(train) == 121 - 13
    assert all(len(e.text.split()) == 6 for e in validation)  # whole sentences only, never a prefix
    held_spans = set().union(*(_spans(e.text) for e in validation))
    assert not [e.text for e in train if e.text in held_spans]
    assert [e.row_id for e in carve_whole_texts(examples, fraction=0.1, seed=0)[1]] == [e.row_id for e in validation]
    assert [e.row_id for e in carve_whole_texts(examples, fraction=0.1, seed=1)[1]] != [e.row_id for e in validation]


def test_whole_texts_needs_a_carved_split():
    with pytest.raises(ValueError, match="validation_whole_texts shapes the split that validation_from_train carves"):
        TaskSpec(**SENTIMENT, files=FILES, validation_whole_texts=True)
    spec = TaskSpec(**SENTIMENT, files=FILES, validation_from_train=0.1, validation_whole_texts=True)
    carved = load_task_data(spec, FILES)
    assert len(carved.splits["validation"]) > 0
    assert len(carved.splits["train"]) + len(carved.splits["validation"]) <= 320
