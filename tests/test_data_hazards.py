"""Silent data hazards made loud: duplicate corpus ids, a corpus without rows, and label typos that would
become classes of their own. Each is an error naming the file and the line or row, and nothing is written."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mtl_model.embed.corpus as corpus_module
from mtl_model import steps
from mtl_model.config import EmbedConfig, TaskSpec, TokenizeConfig
from mtl_model.embed.corpus import DuplicateIdFinder, id_keys, scan_corpus
from mtl_model.errors import DataValidationError
from mtl_model.task_data import load_task_data

CONFIG = EmbedConfig(id_column="doc_id", text_column="body", rows_per_shard=50, batch_size=8, precision="fp32")
NO_ROWS = "no rows: the file has no data rows (empty, or a header only)"
LABELS_HINT = "if the data really has other labels, declare them with `labels:` in the task config"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def embed_fails(model_dir: Path, corpus: Path, out: Path, config: EmbedConfig = CONFIG) -> list[str]:
    """The problems of an embed run that must fail before writing anything."""
    with pytest.raises(DataValidationError) as caught:
        steps.embed(str(model_dir), str(corpus), config, device="cpu", out_dir=str(out))
    assert not out.exists()
    return [str(problem) for problem in caught.value.problems]


# ---------------------------------------------------------------------------------------- duplicate ids


def test_duplicate_ids_name_every_repeat_and_its_first_row(model_dir, tmp_path):
    corpus = write(tmp_path / "c.csv", "doc_id,body\na,one\nb,two\na,three\nc,four\nb,five\na,six\n,seven\n")
    assert embed_fails(model_dir, corpus, tmp_path / "out") == [
        f"{corpus}:row 6: doc_id is empty",  # empty ids are reported as empty, not as duplicates of each other
        f"{corpus}:row 2: duplicate doc_id 'a' (first at row 0)",
        f"{corpus}:row 5: duplicate doc_id 'a' (first at row 0)",
        f"{corpus}:row 4: duplicate doc_id 'b' (first at row 1)",
    ]


def test_duplicate_integer_ids_across_the_files_of_a_folder(model_dir, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(pa.table({"doc_id": [1, 2, 3], "body": ["x", "y", "z"]}), folder / "a.parquet")
    pq.write_table(pa.table({"doc_id": [4, 2], "body": ["u", "v"]}), folder / "b.parquet")
    assert embed_fails(model_dir, folder, tmp_path / "out") == [
        f"{folder / 'b.parquet'}:row 1: duplicate doc_id 2 (first at {folder / 'a.parquet'}:row 1)"
    ]


def test_an_id_repeated_many_times_is_listed_a_few_times_and_counted(tmp_path):
    corpus = write(tmp_path / "c.jsonl", "".join(json.dumps({"doc_id": 7, "body": "t"}) + "\n" for _ in range(25)))
    with pytest.raises(DataValidationError) as caught:
        scan_corpus(corpus, id_column="doc_id", text_column="body")
    problems = [str(p) for p in caught.value.problems]
    assert problems[:2] == [
        f"{corpus}:row 1: duplicate doc_id 7 (first at row 0)",
        f"{corpus}:row 2: duplicate doc_id 7 (first at row 0)",
    ]
    assert (
        len(problems) == 10 and problems[-1] == f"{corpus}:row 0: doc_id 7 occurs 25 times (the first 10 are listed)"
    )


def test_allow_duplicate_ids_embeds_every_row(model_dir, tmp_path):
    corpus = write(tmp_path / "c.csv", "doc_id,body\na,one\nb,two\na,three\n")
    config = CONFIG.model_copy(update={"allow_duplicate_ids": True})
    result = steps.embed(str(model_dir), str(corpus), config, device="cpu", out_dir=str(tmp_path / "out"))
    assert result.rows == 3
    assert pq.read_table(tmp_path / "out" / "embeddings").column("doc_id").to_pylist() == ["a", "b", "a"]


def test_a_hash_collision_is_never_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus_module, "_hash", lambda value, **how: hashlib.blake2b(b"same", **how))  # one key
    corpus = write(tmp_path / "c.csv", "doc_id,body\na,one\nb,two\nc,three\n")
    assert [f.rows for f in scan_corpus(corpus, id_column="doc_id", text_column="body")] == [3]
    write(corpus, "doc_id,body\na,one\nb,two\nc,three\nb,four\n")
    with pytest.raises(DataValidationError) as caught:
        scan_corpus(corpus, id_column="doc_id", text_column="body")
    assert [str(p) for p in caught.value.problems] == [f"{corpus}:row 3: duplicate doc_id 'b' (first at row 1)"]


def test_spilled_runs_find_exactly_the_repeated_keys():
    """Keys in runs of 1,000 merged from a temporary file: the same answer as an in-memory sort."""
    finder = DuplicateIdFinder(run_keys=1000)
    ids = list(range(50_000)) + [49_999, 3, 12_345, 3]
    for start in range(0, len(ids), 777):
        finder.add(id_keys(pa.array(ids[start : start + 777]))[1])
    assert len(finder._runs) == 50
    assert sorted(finder.finish().tolist()) == sorted(id_keys(pa.array([3, 12_345, 49_999]))[1].tolist())


def test_200k_rows_with_one_duplicate_in_bounded_memory(model_dir, tmp_path, monkeypatch):
    """Runs of 8,192 keys force the temporary-file path. The scan's Python memory peak stays a fraction of what a
    set of the 200,000 ids would take (it is one batch and one run, whatever the rows), and it stays linear in time."""
    corpus = tmp_path / "big.parquet"
    ids = [f"document-{i:07d}" for i in range(200_000)]
    ids[150_001] = ids[12_345]
    pq.write_table(pa.table({"doc_id": ids, "body": ["some text"] * len(ids)}), corpus)
    del ids
    monkeypatch.setattr(corpus_module, "RUN_KEYS", 8192)
    spilled = []
    spill = DuplicateIdFinder._spill_run
    monkeypatch.setattr(
        DuplicateIdFinder, "_spill_run", lambda self, keys: spilled.append(len(keys)) or spill(self, keys)
    )

    started = time.perf_counter()
    tracemalloc.start()
    try:
        problems = embed_fails(model_dir, corpus, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    assert problems == [f"{corpus}:row 150001: duplicate doc_id 'document-0012345' (first at row 12345)"]
    assert len(spilled) == 25 and sum(spilled) == 200_000  # sorted runs of distinct keys, 8 bytes each, on disk

    tracemalloc.start()
    all_ids = {f"document-{i:07d}" for i in range(200_000)}  # what the check does not hold
    set_size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(all_ids) == 200_000 and peak < set_size / 4, (peak, set_size)
    # A guard against a quadratic scan (hours), not a speed target: 41 s seen with a training run beside it.
    assert seconds < 120, seconds


# ------------------------------------------------------------------------------------- corpus without rows


def test_header_only_corpus_is_an_error_not_an_empty_success(model_dir, tmp_path):
    corpus = write(tmp_path / "c.csv", "doc_id,body\n")
    assert embed_fails(model_dir, corpus, tmp_path / "out") == [f"{corpus}: {NO_ROWS}"]


def test_every_file_without_rows_is_named(model_dir, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder / "a.csv", "doc_id,body\n1,fine\n")
    write(folder / "b.csv", "doc_id,body\n")
    write(folder / "c.jsonl", "")
    pq.write_table(
        pa.table({"doc_id": pa.array([], pa.int64()), "body": pa.array([], pa.string())}), folder / "d.parquet"
    )
    assert embed_fails(model_dir, folder, tmp_path / "out") == [
        f"{folder / name}: {NO_ROWS}" for name in ("b.csv", "c.jsonl", "d.parquet")
    ]


# ------------------------------------------------------------------------------------ labels that are typos


def tokenize_fails(task: TaskSpec, files: dict[str, Path], backbone: Path, out: Path) -> list[str]:
    """The problems of a tokenize step that must fail before writing anything."""
    with pytest.raises(DataValidationError) as caught:
        steps.tokenize(
            task=task,
            files={split: str(path) for split, path in files.items()},
            config=TokenizeConfig(max_seq_length=16),
            backbone=str(backbone),
            out_dir=str(out),
        )
    assert not out.exists()
    return [str(problem) for problem in caught.value.problems]


def problems_of(task: TaskSpec, files: dict[str, Path]) -> list[str]:
    with pytest.raises(DataValidationError) as caught:
        load_task_data(task, files)
    return [str(problem) for problem in caught.value.problems]


def test_glue_tsv_label_outside_sst2_is_named_in_every_split(tiny_backbone, tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\ngood .\t1\nbad .\t0\nfine .\tpositive\nok .\t1\nno .\t0\n")
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\nnice .\t1\nmeh .\t2\n")
    task = TaskSpec(
        name="s", kind="sentence", format="glue_tsv", text_column="sentence", files={"train": "t", "test": "d"}
    )
    assert tokenize_fails(task, {"train": train, "test": dev}, tiny_backbone, tmp_path / "out") == [
        f"{train}:line 4: label 'positive' is not 0 or 1 (SST-2's labels); {LABELS_HINT}",
        f"{dev}:line 3: label '2' is not 0 or 1 (SST-2's labels); {LABELS_HINT}",
    ]
    declared = task.model_copy(update={"labels": ["0", "1", "2", "positive"]})
    data = load_task_data(declared, {"train": train, "test": dev})
    assert data.labels == ["0", "1", "2", "positive"] and len(data.splits["train"]) == 5
    write(train, "sentence\tlabel\ngood .\t1\nbad .\t0\nok .\t1\n")  # SST-2's labels are never typos, however rare
    assert load_task_data(task, {"train": train, "test": train}).labels == ["0", "1"]


def test_ag_news_class_outside_its_label_space(tiny_backbone, tmp_path):
    rows = [f'"{c}","Title {i}","Text {i}."\n' for i, c in enumerate("1234123451234")]
    news = write(tmp_path / "news.csv", "".join(rows))
    task = TaskSpec(name="topic", kind="sentence", format="ag_news", files={"all": "news.csv"})
    assert tokenize_fails(task, {"all": news}, tiny_backbone, tmp_path / "out") == [
        f"{news}:line 9: label '5' is not a class index 1–4 (AG News's 4 classes); {LABELS_HINT}"
    ]
    write(tmp_path / "classes.txt", "World\nSports\nBusiness\n")  # a classes.txt beside the file decides
    three = "is not a class index 1–3 (the 3 classes in classes.txt beside the file)"
    assert problems_of(task, {"all": news}) == [
        f"{news}:line {line}: label '{label}' {three}; {LABELS_HINT}"
        for line, label in ((4, "4"), (8, "4"), (9, "5"), (13, "4"))
    ]
    write(tmp_path / "classes.txt", "World\nSports\nBusiness\nSci/Tech\nWeather\n")
    assert load_task_data(task, {"all": news}).labels == ["1", "2", "3", "4", "5"]  # listed classes are never typos


def test_rare_label_in_training_is_a_typo_until_declared(tiny_backbone, tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,pos\nd,neg\ne,pso\nf,neg\n")
    test = write(tmp_path / "test.csv", "text,label\ng,pos\nh,pso\n")
    task = TaskSpec(name="s", kind="sentence", format="csv", files={"train": "a", "test": "b"})
    assert tokenize_fails(task, {"train": train, "test": test}, tiny_backbone, tmp_path / "out") == [
        f"{train}:line 6: label 'pso' is in only 1 training example(s), fewer than min_label_count 2: a typo? "
        "If it is a real class, declare the task's labels with `labels:` in the config",
        f"{test}:line 3: label(s) ['pso'] not in the label set ['neg', 'pos']",
    ]
    for accepted in ({"labels": ["neg", "pos", "pso"]}, {"min_label_count": 1}):
        data = load_task_data(task.model_copy(update=accepted), {"train": train, "test": test})
        assert data.labels == ["neg", "pos", "pso"], accepted
    data = load_task_data(task, {"train": train, "test": test}, on_invalid="skip")
    assert data.labels == ["neg", "pos"] and [len(data.splits[s]) for s in ("train", "test")] == [5, 1]


def test_rare_entity_type_in_conll_is_named_at_its_first_word(tiny_backbone, tmp_path):
    train = write(
        tmp_path / "train.txt",
        "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n\nthe O\nUN B-ORG\n\n"
        "Anna B-PER\nsaw O\nNew B-FOO\nYork I-FOO\n\nBob B-PER\nran I-LOC\n\n",
    )
    test = write(tmp_path / "test.txt", "Rome B-FOO\n\nMary B-PER\n\n")
    task = TaskSpec(name="ner", kind="token", format="conll", files={"train": "a", "test": "b"})
    assert tokenize_fails(task, {"train": train, "test": test}, tiny_backbone, tmp_path / "out") == [
        f"{train}:line 16: tag 'I-LOC' follows 'B-PER': not valid BIO (IOB1 files need tag_scheme: iob1)",
        f"{train}:line 12: tag 'B-FOO': entity type 'FOO' is in only 1 training sentence(s), fewer than "
        "min_label_count 2: a typo? If it is a real type, declare the task's tags with `labels:` in the config",
        f"{test}:line 1: label(s) ['B-FOO'] not in the label set ['O', 'B-ORG', 'I-ORG', 'B-PER', 'I-PER']",
    ]


def test_rare_tag_of_a_joint_task_names_its_row_and_word(tmp_path):
    rows = [
        {"tokens": ["Paris", "wins"], "tags": ["B-LOC", "O"], "label": "sport"},
        {"tokens": ["Rome", "loses"], "tags": ["B-LOC", "O"], "label": "sport"},
        {"tokens": ["Acme", "rises"], "tags": ["B-ORG", "O"], "label": "money"},
        {"tokens": ["Shares", "of", "Acme"], "tags": ["O", "O", "B-OGR"], "label": "money"},
    ]
    train = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    test = write(tmp_path / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:2]))
    task = TaskSpec(name="j", kind="joint", format="jsonl", files={"train": "a", "test": "b"})
    rare = "in only 1 training sentence(s), fewer than min_label_count 2: a typo? If it is a real type, declare the "
    rare += "task's tags with `tag_labels:` in the config"
    assert problems_of(task, {"train": train, "test": test}) == [
        f"{train}:line 3: word 1: tag 'B-ORG': entity type 'ORG' is {rare}",
        f"{train}:line 4: word 3: tag 'B-OGR': entity type 'OGR' is {rare}",
    ]
    declared = task.model_copy(update={"tag_labels": ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OGR", "I-OGR"]})
    assert load_task_data(declared, {"train": train, "test": test}).labels == ["money", "sport"]
