"""Readers on hand-made files: good rows, every kind of problem, and counts that reconcile."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtl_model.config import SplitSpec, TaskSpec
from mtl_model.errors import DataValidationError
from mtl_model.readers import (
    TextExample,
    bio_problems,
    clean_ag_news_text,
    iob1_to_bio,
    read_ag_news,
    read_conll,
    read_glue_tsv,
    read_table,
)
from mtl_model.task_data import load_task_data, stratified_split


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def reconciles(result) -> bool:
    return result.rows_read == result.rows_accepted + result.rows_rejected


def test_conll_2003_layout(tmp_path):
    path = write(
        tmp_path / "a.txt",
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n",
    )
    result = read_conll(path)
    assert [(e.tokens, e.tags) for e in result.examples] == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]
    assert [e.row_id for e in result.examples] == ["a.txt:3", "a.txt:6"]
    assert result.notes["docstart_lines"] == 1 and result.problems == [] and reconciles(result)


def test_conll_reports_every_problem_with_its_line(tmp_path):
    path = write(tmp_path / "bad.txt", "EU B-ORG\nrejects O extra\n\nthe O\ncall I-LOC\n\nx B-\n")
    result = read_conll(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:line 2: expected 2 columns, found 3",
        f"{path}:line 5: tag 'I-LOC' follows 'O': not valid BIO (IOB1 files need tag_scheme: iob1)",
        f"{path}:line 7: tag 'B-' is not a BIO tag (O, B-TYPE or I-TYPE)",
    ]
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (3, 0, 3)


def test_conll_iob1_is_converted_and_tag_column_is_configurable(tmp_path):
    path = write(
        tmp_path / "iob1.txt",
        "New NNP I-LOC x\nYork NNP I-LOC x\nand CC O x\nParis NNP I-LOC x\nLondon NNP B-LOC x\n\n",
    )
    result = read_conll(path, tag_column=2, tag_scheme="iob1")
    assert result.examples[0].tags == ["B-LOC", "I-LOC", "O", "B-LOC", "B-LOC"]
    assert iob1_to_bio(["I-PER", "I-PER", "B-PER", "I-ORG"]) == ["B-PER", "I-PER", "B-PER", "B-ORG"]
    assert bio_problems(["B-PER", "I-PER", "I-ORG"]) == [
        (2, "tag 'I-ORG' follows 'I-PER': not valid BIO (IOB1 files need tag_scheme: iob1)")
    ]


def test_conll_byte_order_marks_are_counted_not_silently_dropped(tmp_path):
    path = write(tmp_path / "wnut.conll", "Dubbz\ufeff\tB-person\nrocks\tO\n\n\ufeff\n")
    result = read_conll(path)
    assert result.examples[0].tokens == ["Dubbz", "rocks"]
    assert dict(result.notes) == {"bom_stripped_from_tokens": 1, "bom_only_lines_treated_as_blank": 1}
    assert reconciles(result) and result.rows_read == 1


def test_non_utf8_bytes_are_reported_with_byte_offset(tmp_path):
    path = write(
        tmp_path / "latin1.tsv", b"sentence\tlabel\nfine film\t1\ncaf\xe9 noir\t0\n"
    )  # 15 + 12 + 3 bytes precede 0xe9
    result = read_glue_tsv(path)
    assert [str(p) for p in result.problems] == [f"{path}:line 3: not valid UTF-8 (byte offset 30: 0xe9)"]
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (2, 1, 1)


def test_glue_tsv_problems_and_unlabelled_files(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\ngood . \t1\n\t0\nbad .\tnan\ntoo\tmany\tcolumns\n")
    result = read_glue_tsv(path)
    assert [e.text for e in result.examples] == ["good ."]
    assert [str(p) for p in result.problems] == [
        f"{path}:line 3: text is empty",
        f"{path}:line 4: label is missing or NaN ('nan')",
        f"{path}:line 5: expected 2 tab-separated columns, found 3",
    ]
    assert reconciles(result)
    unlabelled = read_glue_tsv(write(tmp_path / "test.tsv", "index\tsentence\n0\tuneasy mishmash .\n"))
    assert (
        unlabelled.labelled is False
        and unlabelled.examples[0].label is None
        and unlabelled.notes["unlabelled_file"] == 1
    )


def test_ag_news_escapes_and_field_count(tmp_path):
    assert (
        clean_ag_news_text("A second\\team won \\$10 million, it #39;s said  #151; &lt;b&gt;")
        == "A second team won $10 million, it's said — <b>"
    )
    path = write(
        tmp_path / "news.csv",
        '"3","Fears for T N","Unions say\\they are  #39;disappointed #39;"\n"9","only two"\n"2","",""\n',
    )
    result = read_ag_news(path)
    assert result.examples == [TextExample("news.csv:1", "Fears for T N Unions say they are 'disappointed'", "3")]
    assert [str(p) for p in result.problems] == [
        f"{path}:line 2: expected 3 fields (class, title, description), found 2",
        f"{path}:line 3: text is empty (title and description)",
    ]
    assert reconciles(result)


def test_generic_csv_jsonl_parquet_with_configurable_columns(tmp_path):
    csv_path = write(tmp_path / "t.csv", "doc,body,y\na,hello there,pos\nb,,neg\na,again,pos\nc,fine,\n")
    result = read_table(csv_path, fmt="csv", text_column="body", label_column="y", id_column="doc")
    assert [(e.text, e.label) for e in result.examples] == [("hello there", "pos")]
    assert [str(p) for p in result.problems] == [
        f"{csv_path}:line 3 (id b): text is empty",
        f"{csv_path}:line 4 (id a): duplicate id 'a' (first at line 2)",
        f"{csv_path}:line 5 (id c): label is missing or NaN ('')",
    ]
    assert reconciles(result)

    jsonl = write(
        tmp_path / "t.jsonl",
        json.dumps({"text": "ok", "label": 1})
        + "\n{broken\n"
        + json.dumps({"text": "x", "label": float("nan")})
        + "\n",
    )
    result = read_table(jsonl, fmt="jsonl")
    assert [(e.text, e.label) for e in result.examples] == [("ok", "1")]
    assert [p.location for p in result.problems] == ["line 2", "line 3"]
    assert reconciles(result)

    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a b", None], "label": [0, 1]}), parquet)
    result = read_table(parquet, fmt="parquet")
    assert [(e.text, e.label) for e in result.examples] == [("a b", "0")]
    assert [str(p) for p in result.problems] == [f"{parquet}:row 1: text is empty"]


def test_missing_file_is_a_problem_not_a_crash(tmp_path):
    result = read_conll(tmp_path / "nope.txt")
    assert "cannot read file" in str(result.problems[0]) and str(tmp_path / "nope.txt") in str(result.problems[0])


def sentence_task(labels: list[str] | None = None, **files) -> TaskSpec:
    return TaskSpec(name="s", kind="sentence", format="glue_tsv", text_column="sentence", files=files, labels=labels)


def test_unknown_label_in_test_split_names_file_and_line(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\na .\t0\nb .\t1\n")
    test = write(tmp_path / "dev.tsv", "sentence\tlabel\nc .\t2\n")
    with pytest.raises(DataValidationError) as caught:
        load_task_data(sentence_task(["0", "1"], train="x", test="y"), {"train": train, "test": test})
    assert [str(p) for p in caught.value.problems] == [
        f"{test}:line 2: label(s) ['2'] not in the label set ['0', '1']"
    ]


def test_skip_mode_drops_and_counts_bad_rows(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\na .\t0\nb .\t1\n\t1\nc .\t0\ne .\t1\n")
    test = write(tmp_path / "dev.tsv", "sentence\tlabel\nc .\t2\nd .\t1\n")
    data = load_task_data(sentence_task(train="x", test="y"), {"train": train, "test": test}, on_invalid="skip")
    assert [len(data.splits[s]) for s in ("train", "test")] == [4, 1]
    assert [(r["rows_read"], r["rows_accepted"], r["rows_rejected"]) for r in data.reports] == [(5, 4, 1), (2, 1, 1)]


def test_stratified_split_is_seeded_and_keeps_class_balance():
    examples = [TextExample(f"f:{i}", f"text {i}", str(i % 4)) for i in range(400)]
    first = stratified_split(examples, SplitSpec(validation_fraction=0.1, test_fraction=0.2, seed=3))
    again = stratified_split(examples, SplitSpec(validation_fraction=0.1, test_fraction=0.2, seed=3))
    assert {k: len(v) for k, v in first.items()} == {"train": 280, "validation": 40, "test": 80}
    assert [e.row_id for e in first["test"]] == [e.row_id for e in again["test"]]
    assert sorted([e.label for e in first["test"]].count(c) for c in "0123") == [20, 20, 20, 20]
    all_ids = [e.row_id for split in first.values() for e in split]
    assert sorted(all_ids) == sorted(e.row_id for e in examples)


def test_conll_bio_repair_is_opt_in_and_counted(tmp_path):
    path = write(tmp_path / "dev.conll", "Channel\tB-corporation\nfour\tI-person\nrocks\tO\n\n")
    assert "follows 'B-corporation'" in str(read_conll(path).problems[0])
    repaired = read_conll(path, invalid_bio="repair")
    assert repaired.examples[0].tags == ["B-corporation", "B-person", "O"]
    assert repaired.notes["bio_tags_repaired"] == 1 and repaired.problems == []


def test_token_rows_in_jsonl_check_token_and_tag_counts(tmp_path):
    rows = [
        {"id": 1, "tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]},
        {"id": 2, "tokens": ["New", "York"], "tags": ["B-LOC"]},
        {"id": 3, "tokens": ["Rome"], "tags": ["I-LOC"]},
        {"id": 4, "tokens": [], "tags": []},
    ]
    path = write(tmp_path / "ner.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = read_table(
        path, fmt="jsonl", id_column="id", tokens_column="tokens", tags_column="tags", label_column=None
    )
    assert [(e.tokens, e.tags) for e in result.examples] == [(["Paris", "is", "big"], ["B-LOC", "O", "O"])]
    assert [str(p) for p in result.problems] == [
        f"{path}:line 2 (id 2): 2 tokens but 1 tags",
        f"{path}:line 3 (id 3): word 1: tag 'I-LOC' follows 'O': not valid BIO (IOB1 files need tag_scheme: iob1)",
        f"{path}:line 4 (id 4): 'tokens' must be a non-empty list of words",
    ]
    assert reconciles(result)


def test_hf_source_names_parse():
    from mtl_model.readers import parse_hf_source

    assert parse_hf_source("hf:conll2003", "test") == ("conll2003", None, "test")
    assert parse_hf_source("hf:glue/sst2:validation", "test") == ("glue", "sst2", "validation")
    assert parse_hf_source("hf:fancyzhx/ag_news/default", "train") == ("fancyzhx/ag_news", "default", "train")


def test_hf_dataset_offline_fails_with_a_clear_message(monkeypatch):
    pytest.importorskip("datasets")
    from mtl_model.errors import ConfigError
    from mtl_model.readers import read_hf_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(
        ConfigError,
        match=r"hf:glue/sst2: cannot load Hugging Face dataset 'glue' \(config 'sst2', split 'train'\)"
        r".*Is the hub reachable\?",
    ):
        read_hf_dataset("hf:glue/sst2", split="train", text_column="sentence")


def test_hf_task_config_keeps_the_source_name():
    from mtl_model.config import PipelineConfig

    config = PipelineConfig.model_validate(
        {
            "tasks": [
                {
                    "name": "s",
                    "kind": "sentence",
                    "format": "hf",
                    "files": {"train": "hf:glue/sst2", "test": "hf:glue/sst2:validation"},
                }
            ]
        }
    )
    assert config.resolve_data_path("hf:glue/sst2", Path("/anywhere")) == "hf:glue/sst2"
    with pytest.raises(ValueError, match="format 'hf' and files named 'hf:"):
        PipelineConfig.model_validate(
            {
                "tasks": [
                    {
                        "name": "s",
                        "kind": "sentence",
                        "format": "csv",
                        "files": {"train": "hf:glue/sst2", "test": "x.csv"},
                    }
                ]
            }
        )
