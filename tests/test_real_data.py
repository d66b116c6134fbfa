"""The readers on the real datasets in ../shared/data reproduce the published counts."""

from __future__ import annotations

from collections import Counter

import pytest

from mtl_model.readers import read_ag_news, read_conll, read_glue_tsv
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    ("path", "sentences"),
    [
        ("conll2003/train.txt", 14041),
        ("conll2003/dev.txt", 3250),
        ("conll2003/test.txt", 3453),
        ("wnut17/wnut17train.conll", 3394),
        ("wnut17/emerging.dev.conll", 1009),
        ("wnut17/emerging.test.annotated", 1287),
    ],
)
def test_conll_sentence_counts(shared_data, path, sentences):
    result = read_conll(shared_data / path)
    assert result.rows_read == sentences
    assert result.rows_read == result.rows_accepted + result.rows_rejected


def test_conll2003_entity_counts(shared_data):
    result = read_conll(shared_data / "conll2003/train.txt")
    starts = Counter(tag[2:] for e in result.examples for tag in e.tags if tag.startswith("B-"))
    assert starts == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    assert result.problems == []


@pytest.mark.parametrize(("path", "documents"), [("train.txt", 946), ("dev.txt", 216), ("test.txt", 231)])
def test_conll2003_documents_match_the_published_counts(shared_data, path, documents):
    """The document numbers `document_context_words` relies on: every sentence in one, as many as -DOCSTART- lines."""
    examples = read_conll(shared_data / "conll2003" / path).examples
    assert {example.document for example in examples} == set(range(1, documents + 1))
    assert all(a.document <= b.document for a, b in zip(examples, examples[1:]))  # in file order


def test_wnut17_dev_quirks_are_counted(shared_data):
    strict = read_conll(shared_data / "wnut17/emerging.dev.conll")
    assert dict(strict.notes) == {"bom_stripped_from_tokens": 1, "bom_only_lines_treated_as_blank": 1}
    assert [str(p).split(":", 1)[1] for p in strict.problems] == [
        "line 1674: tag 'I-creative-work' follows 'I-person': not valid BIO (IOB1 files need tag_scheme: iob1)"
    ]
    repaired = read_conll(shared_data / "wnut17/emerging.dev.conll", invalid_bio="repair")
    assert repaired.rows_accepted == 1009 and repaired.notes["bio_tags_repaired"] == 1


@pytest.mark.parametrize("name", ["three_task", "wnut17", "wnut17_conll"])
def test_real_data_configs_validate_every_file(shared_data, name):
    from mtl_model.config import plan_run
    from mtl_model.options import RunOptions
    from mtl_model.steps import validate

    plan = plan_run(RunOptions(config_path=REPO_ROOT / f"data/configs/{name}.yaml", data_dir=shared_data))
    reports = validate(plan.config.tasks, plan.files, plan.config.tokenize)
    assert all(r.rows_rejected == 0 and r.rows_read == r.rows_accepted for rs in reports.tasks.values() for r in rs)


@pytest.mark.parametrize(
    ("path", "rows", "labelled"),
    [("sst2/train.tsv", 67349, True), ("sst2/dev.tsv", 872, True), ("sst2/test.tsv", 1821, False)],
)
def test_sst2_counts(shared_data, path, rows, labelled):
    result = read_glue_tsv(shared_data / path)
    assert (result.rows_read, result.rows_accepted, result.labelled) == (rows, rows, labelled)


def test_ag_news_test_split_counts(shared_data):
    result = read_ag_news(shared_data / "ag_news/test.csv")
    assert result.rows_accepted == 7600 and result.problems == []
    assert Counter(e.label for e in result.examples) == {"1": 1900, "2": 1900, "3": 1900, "4": 1900}
