"""The embed step's contract: streamed input, fixed shards, atomic writes, manifest and _SUCCESS last,
ids unchanged and in order, no-op re-runs, resume after SIGKILL, damaged and foreign files named,
sorted batches equal one-at-a-time, reduced precision only within cosine 0.9999 of fp32."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mtl_model.embed.inference as embed_inference
import mtl_model.embed.tiers as embed_tiers
from mtl_model import steps
from mtl_model.config import EmbedConfig
from mtl_model.embed import (
    MANIFEST,
    SUCCESS_MARKER,
    EmbeddingResult,
    EmbedPlan,
    check_tier,
    decide_precision,
    embed_texts,
    min_cosine,
    neighbour_overlap,
    rows_in_range,
    run_embedding,
)
from mtl_model.errors import DataValidationError
from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from tests.conftest import REPO_ROOT, SAMPLE_DIR

WORDS = "the quick brown fox jumps over a lazy dog while markets rally and the home team wins again".split()


def make_corpus(path: Path, rows: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Texts of 1–40 words (some longer than max_seq_length), integer ids, written by suffix."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 41)))) for _ in range(rows)]
    frame = pd.DataFrame({"doc_id": np.arange(start, start + rows, dtype=np.int64) * 7, "body": texts})
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=37)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return frame


CONFIG = EmbedConfig(
    id_column="doc_id", text_column="body", rows_per_shard=50, sort_window=16, batch_size=8, precision="fp32"
)


def run(model_dir: Path, corpus: Path | str, out: Path, config: EmbedConfig = CONFIG) -> EmbeddingResult:
    return steps.embed(str(model_dir), str(corpus), config, device="cpu", out_dir=str(out))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir())}


def test_output_contract_ids_in_order_manifest_and_success_last(model_dir, tmp_path):
    frame = make_corpus(tmp_path / "corpus.parquet", 173)
    summary = run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    out = tmp_path / "out" / "embeddings"
    assert (summary.rows, summary.shards, summary.computed_shards) == (173, 4, 4)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, SUCCESS_MARKER]) + [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    table = pq.read_table(out)
    assert table.column("doc_id").to_pylist() == frame["doc_id"].tolist()  # same ids, same order, no duplicates
    assert table.schema.field("doc_id").type == pa.int64()  # the input's type, unchanged
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[16]"
    manifest = json.loads((out / MANIFEST).read_text())
    assert [s["rows"] for s in manifest["shards"]] == [50, 50, 50, 23] and manifest["rows"] == 173
    assert manifest["inputs"][0]["rows"] == 173 and len(manifest["model_fingerprint"]) == 16
    meta = json.loads(pq.read_schema(out / "part-00003.parquet").metadata[b"mtl.embedding"])
    assert {k: meta[k] for k in ("dimension", "pooling", "normalized", "max_seq_length")} == {
        "dimension": 16,
        "pooling": "mean",
        "normalized": True,
        "max_seq_length": 24,
    }
    assert manifest["truncated"] == sum(s["truncated"] for s in manifest["shards"]) > 0
    assert (out / SUCCESS_MARKER).stat().st_mtime_ns >= max(
        (out / s["file"]).stat().st_mtime_ns for s in manifest["shards"]
    )


def test_sorted_mixed_length_batches_equal_one_text_at_a_time(model_dir):
    model, tokenizer = MultiTaskModel.load(model_dir)
    rng = np.random.default_rng(5)
    texts = [
        " ".join(rng.choice(WORDS, size=int(rng.integers(1, 41)))) for _ in range(23)
    ]  # 1–40 words, some cut at 24 tokens
    batched, _ = embed_texts(model, tokenizer, texts, batch_size=8, device="cpu")
    single = np.concatenate([embed_texts(model, tokenizer, [t], batch_size=1, device="cpu")[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_length_batches_cap_rows_and_padded_tokens_and_cover_every_row_once():
    from mtl_model.embed.inference import length_batches

    lengths = np.array([5, 300, 40, 40, 12, 7, 100, 3, 40])
    batches = length_batches(lengths, batch_size=4, batch_tokens=100)
    # longest first: 300 alone (over the cap, still one row), 100 alone, rows of 40 two at a time (3 × 40 > 100),
    # then the short rest up to the 4-row limit
    assert [b.tolist() for b in batches] == [[1], [6], [2, 3], [8, 4], [5, 0, 7]]
    assert all(len(b) * lengths[b].max() <= 100 or len(b) == 1 for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert [len(b) for b in length_batches(lengths, batch_size=4)] == [4, 4, 1]  # no token cap: rows only


def test_token_capped_batches_give_the_same_embeddings(model_dir):
    model, tokenizer = MultiTaskModel.load(model_dir)
    rng = np.random.default_rng(6)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(40)]
    uncapped, _ = embed_texts(model, tokenizer, texts, batch_size=16, device="cpu")
    capped, _ = embed_texts(model, tokenizer, texts, batch_size=16, batch_tokens=48, device="cpu")
    np.testing.assert_allclose(capped, uncapped, atol=1e-5, rtol=0)


def test_plan_caps_batch_tokens_on_cpu_unless_configured(model_dir, tmp_path):
    from mtl_model.embed.inference import CPU_BATCH_TOKENS, default_batch_tokens

    corpus = str(tmp_path / "c.parquet")
    make_corpus(Path(corpus), 10)
    for config, expected in [(CONFIG, CPU_BATCH_TOKENS), (CONFIG.model_copy(update={"batch_tokens": 512}), 512)]:
        plan = steps.plan_embedding(str(model_dir), corpus, config, device="cpu", out_dir=str(tmp_path / "o"))
        assert plan.batch_tokens == expected
    assert default_batch_tokens("cuda:0") is None


def test_every_format_and_a_folder_give_the_same_embeddings(model_dir, tmp_path):
    parquet = make_corpus(tmp_path / "c.parquet", 60)
    make_corpus(tmp_path / "c.csv", 60)
    make_corpus(tmp_path / "c.jsonl", 60)
    run(model_dir, tmp_path / "c.parquet", tmp_path / "o-parquet")
    reference = pq.read_table(tmp_path / "o-parquet" / "embeddings")
    for name, id_type in (("csv", pa.string()), ("jsonl", pa.int64())):  # CSV ids are read as written: text
        run(model_dir, tmp_path / f"c.{name}", tmp_path / f"o-{name}")
        table = pq.read_table(tmp_path / f"o-{name}" / "embeddings")
        assert table.schema.field("doc_id").type == id_type, name
        assert table.column("doc_id").cast(pa.int64()).equals(reference.column("doc_id")), name
        assert table.column("embedding").equals(reference.column("embedding")), name
    folder = tmp_path / "folder"
    folder.mkdir()
    make_corpus(folder / "a.parquet", 30, seed=1)
    make_corpus(folder / "b.parquet", 70, seed=2, start=30)
    summary = run(model_dir, folder, tmp_path / "o-folder")
    manifest = json.loads((tmp_path / "o-folder" / "embeddings" / MANIFEST).read_text())
    assert [s["rows"] for s in manifest["shards"]] == [30, 50, 20] and summary.rows == 100  # shards never span files
    assert pq.read_table(tmp_path / "o-folder" / "embeddings").column("doc_id").to_pylist() == [
        i * 7 for i in range(100)
    ]
    assert len(parquet) == 60


def test_rows_in_range_slices_exactly(tmp_path):
    frame = make_corpus(tmp_path / "c.parquet", 200)
    make_corpus(tmp_path / "c.csv", 200)
    for name in ("c.parquet", "c.csv"):
        for offset, count in [(0, 50), (37, 74), (150, 50), (199, 1)]:
            got = pa.Table.from_batches(
                list(rows_in_range(str(tmp_path / name), ["doc_id"], offset, count, batch_rows=16))
            )
            assert [int(i) for i in got.column("doc_id").to_pylist()] == frame["doc_id"].tolist()[
                offset : offset + count
            ], (name, offset)


def test_csv_ids_keep_their_written_form(model_dir, tmp_path):
    (tmp_path / "c.csv").write_text("doc_id,body\n00042,first text\n2024-01-02,second text\n7,1999\n")
    run(model_dir, tmp_path / "c.csv", tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "embeddings").column("doc_id").to_pylist() == ["00042", "2024-01-02", "7"]


def test_rerun_with_unchanged_inputs_changes_no_file(model_dir, tmp_path):
    make_corpus(tmp_path / "corpus.csv", 120)
    run(model_dir, tmp_path / "corpus.csv", tmp_path / "out")
    before = snapshot(tmp_path / "out" / "embeddings")
    summary = run(model_dir, tmp_path / "corpus.csv", tmp_path / "out")
    assert summary.computed_shards == 0 and snapshot(tmp_path / "out" / "embeddings") == before


def test_damaged_shard_is_named_and_recomputed_foreign_file_is_an_error(model_dir, tmp_path, caplog):
    make_corpus(tmp_path / "corpus.parquet", 120)
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    out = tmp_path / "out" / "embeddings"
    reference = pq.read_table(out)
    shard = out / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated, e.g. by a full disk
    with caplog.at_level(logging.WARNING, logger="mtl_model.embed"):
        summary = run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    assert "part-00001.parquet is truncated or damaged" in caplog.text
    assert summary.computed_shards == 1 and pq.read_table(out).equals(reference)

    (out / "notes.txt").write_text("mine")
    pq.write_table(pa.table({"x": [1]}), out / "part-00099.parquet")  # looks like a shard, is not ours
    before = snapshot(out)
    with pytest.raises(DataValidationError) as error:
        run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    assert "notes.txt: not written by the embed step" in str(error.value) and "part-00099.parquet" in str(error.value)
    assert snapshot(out) == before  # nothing deleted or changed, `_SUCCESS` included

    other = tmp_path / "other" / "embeddings"  # another tool's output under our planned names: never deleted
    other.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), other / "part-00000.parquet")
    (other / "part-00001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataValidationError) as error:
        run(model_dir, tmp_path / "corpus.parquet", tmp_path / "other")
    assert "part-00000.parquet" in str(error.value) and "part-00001.parquet" in str(error.value)
    assert sorted(p.name for p in other.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]


def test_killed_run_resumes_computing_only_missing_shards(model_dir, tmp_path):
    make_corpus(tmp_path / "corpus.parquet", 3000)
    config = [
        "--set",
        "id_column=doc_id",
        "--set",
        "text_column=body",
        "--set",
        "rows_per_shard=60",
        "--set",
        "sort_window=30",
        "--set",
        "batch_size=4",
        "--set",
        "precision=fp32",
    ]
    command = [
        sys.executable,
        "-m",
        "mtl_model",
        "embed",
        "--model",
        str(model_dir),
        "--corpus",
        str(tmp_path / "corpus.parquet"),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        *config,
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "out" / "embeddings"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("part-*.parquet"))) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.name for p in out.glob("part-*.parquet"))
    assert 3 <= len(finished) < 50 and not (out / SUCCESS_MARKER).exists(), finished
    kept = {name: (out / name).stat().st_mtime_ns for name in finished}

    settings = EmbedConfig(
        id_column="doc_id", text_column="body", rows_per_shard=60, sort_window=30, batch_size=4, precision="fp32"
    )
    summary = run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out", settings)
    assert summary.computed_shards == 50 - len(finished)  # only the missing ones
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the killed write's temp file is gone
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "fresh", settings)
    resumed, fresh = pq.read_table(out), pq.read_table(tmp_path / "fresh" / "embeddings")
    assert resumed.column("doc_id").equals(fresh.column("doc_id"))
    vectors = [np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (resumed, fresh)]
    np.testing.assert_allclose(*vectors, atol=1e-6, rtol=0)  # the same up to float summation order across processes


def test_bad_rows_are_all_reported_and_nothing_is_written(model_dir, tmp_path):
    corpus = tmp_path / "bad.csv"
    corpus.write_text("doc_id,body\n1,fine text\n2,\n,orphan text\n4,   \n")
    with pytest.raises(DataValidationError) as error:
        run(model_dir, corpus, tmp_path / "out")
    message = str(error.value)
    assert "bad.csv:row 1 (doc_id '2'): body is empty" in message and "bad.csv:row 2: doc_id is empty" in message
    assert "bad.csv:row 3 (doc_id '4'): body is empty" in message and message.startswith("3 problem(s)")
    assert not (tmp_path / "out").exists()


def test_pretokenized_input_ids_are_used_as_they_are(model_dir, tmp_path):
    _, tokenizer = MultiTaskModel.load(model_dir)
    frame = make_corpus(tmp_path / "c.parquet", 40)
    encoded = tokenizer(frame.body.tolist(), truncation=True, max_length=24)["input_ids"]
    pq.write_table(
        pa.table({"doc_id": frame.doc_id, "body": frame.body, "input_ids": encoded}), tmp_path / "ids.parquet"
    )
    run(model_dir, tmp_path / "c.parquet", tmp_path / "a")
    run(model_dir, tmp_path / "ids.parquet", tmp_path / "b")
    a, b = (
        np.stack(pq.read_table(tmp_path / x / "embeddings").column("embedding").to_numpy(zero_copy_only=False))
        for x in "ab"
    )
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_reduced_precision_only_within_the_cosine_floor(model_dir, monkeypatch):
    model, tokenizer = MultiTaskModel.load(model_dir)
    texts = [" ".join(WORDS[: n % 17 + 1]) for n in range(40)]
    monkeypatch.setattr(embed_inference, "cpu_has_bf16", lambda: True)
    precision, check = decide_precision(model, tokenizer, texts, device="cpu", requested="auto", batch_size=8)
    assert check is not None and check.rows == 40 and check.neighbours == 10
    assert (precision == "bf16") == (check.min_cosine >= 0.9999 and check.neighbour_overlap >= 0.99) == check.passed
    monkeypatch.setattr(embed_tiers, "MIN_COSINE", 1.000001)  # unreachable: must fall back to fp32
    assert decide_precision(model, tokenizer, texts, device="cpu", requested="auto", batch_size=8)[0] == "fp32"
    assert decide_precision(model, tokenizer, texts, device="cpu", requested="fp32", batch_size=8) == ("fp32", None)


def test_neighbour_gate_catches_what_a_cosine_floor_misses():
    """Rows that each stay within cosine 0.9999 of fp32 can still swap their nearest neighbours: the tier fails."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 64))
    reference = base + 1e-3 * rng.normal(size=(40, 64))  # (N, D): 40 near-duplicates, neighbours decided by noise
    moved = reference + 1e-3 * rng.normal(size=(40, 64))
    assert min_cosine(reference, moved) > 0.9999
    check = check_tier("bf16", reference, moved)
    assert check.neighbour_overlap < 0.99 and not check.passed
    assert check_tier("bf16", reference, reference.copy()).model_dump(include={"neighbour_overlap", "passed"}) == {
        "neighbour_overlap": 1.0, "passed": True,
    }  # fmt: skip
    assert neighbour_overlap(reference[:10], moved[:10]) is None  # 10 rows have no top-10 of others
    with pytest.raises(ValueError, match=r"reference \(40, 64\) and candidate \(39, 64\)"):
        neighbour_overlap(reference, moved[:-1])


@pytest.mark.slow
def test_bf16_on_this_cpu_keeps_cosine_with_fp32_for_minilm():
    """The bundled MiniLM on real sample sentences: bf16 is chosen on a bf16 CPU only if cosine ≥ 0.9999."""
    from mtl_model.device import cpu_has_bf16

    model = build_model(
        backbone="bundled:all-MiniLM-L6-v2",
        heads=[HeadSpec(name="t", kind="sentence", labels=["a"])],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=128,
    ).eval()
    from mtl_model.backbone import load_tokenizer

    tokenizer = load_tokenizer("bundled:all-MiniLM-L6-v2")
    texts = pd.read_csv(SAMPLE_DIR / "corpus.csv")["text"].tolist()
    fp32, _ = embed_texts(model, tokenizer, texts, batch_size=32, device="cpu", precision="fp32")
    bf16, _ = embed_texts(model, tokenizer, texts, batch_size=32, device="cpu", precision="bf16")
    cosine = min_cosine(fp32, bf16)
    precision, check = decide_precision(model, tokenizer, texts, device="cpu", requested="auto", batch_size=32)
    if cpu_has_bf16():
        assert check.min_cosine == pytest.approx(cosine, abs=1e-6)
        assert precision == ("bf16" if check.passed else "fp32")
    else:
        assert precision == "fp32"
    assert cosine > 0.999  # bf16 never drifts far on this model


def test_plan_travels_as_plain_data(model_dir, tmp_path):
    make_corpus(tmp_path / "c.parquet", 75)
    planned = steps.plan_embedding(
        str(model_dir),
        str(tmp_path / "c.parquet"),
        CONFIG,
        device="cpu",
        out_dir=str(tmp_path / "o"),
    )
    raw = planned.model_dump(mode="json")  # the plan as plain JSON data, as it travels to workers
    assert json.loads(json.dumps(raw)) == raw
    plan = EmbedPlan.model_validate(raw)
    assert plan == planned
    assert [s.rows for s in plan.shards] == [50, 25] and plan.precision == "fp32"
    assert run_embedding(plan, device="cpu").rows == 75


def test_very_short_texts_are_embedded_in_fp32_even_under_bf16(model_dir):
    from mtl_model.embed import FP32_MAX_TOKENS

    model, tokenizer = MultiTaskModel.load(model_dir)
    short = ["fox", "the dog", "the home team"]  # ≤ 8 tokens with [CLS] and [SEP]
    assert max(len(ids) for ids in tokenizer(short)["input_ids"]) <= FP32_MAX_TOKENS
    fp32, _ = embed_texts(model, tokenizer, short, batch_size=8, device="cpu", precision="fp32")
    bf16, _ = embed_texts(model, tokenizer, short, batch_size=8, device="cpu", precision="bf16")
    np.testing.assert_array_equal(fp32, bf16)


@pytest.mark.parametrize("fault", ["bit flip", "overwrite", "truncation", "deleted"])
def test_a_damaged_shard_under_success_is_found_by_its_hash_and_recomputed(model_dir, tmp_path, fault, caplog):
    """`_SUCCESS` is not trusted on its own: each shard is checked against the manifest's sha256 before the
    step answers "up to date", and the output after the repair is byte-equal to an untouched run's."""
    make_corpus(tmp_path / "corpus.parquet", 120)
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "untouched")
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    out = tmp_path / "out" / "embeddings"
    shard = out / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    if fault == "bit flip":  # same size, still readable: one value in the embedding column changes
        data[len(data) // 3] ^= 0x01
        shard.write_bytes(bytes(data))
    elif fault == "overwrite":
        data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
        shard.write_bytes(bytes(data))
    elif fault == "truncation":
        shard.write_bytes(bytes(data[:-100]))
    else:
        shard.unlink()
    with caplog.at_level(logging.WARNING, logger="mtl_model.embed"):
        summary = run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    assert summary.computed_shards == 1
    if fault != "deleted":
        assert "part-00001.parquet does not match the manifest" in caplog.text
    untouched = tmp_path / "untouched" / "embeddings"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in untouched.iterdir())
    for name in [p.name for p in untouched.glob("part-*.parquet")]:
        assert (out / name).read_bytes() == (untouched / name).read_bytes(), name
    manifest, reference = json.loads((out / MANIFEST).read_text()), json.loads((untouched / MANIFEST).read_text())
    assert manifest["shards"] == reference["shards"]


def test_temp_files_carry_their_writer_and_a_live_writers_are_never_deleted(model_dir, tmp_path):
    make_corpus(tmp_path / "corpus.parquet", 120)
    out = tmp_path / "out" / "embeddings"
    out.mkdir(parents=True)
    live = out / ".part-00000.parquet.tmp-1-0123abcd"  # pid 1 is always running
    dead = out / ".part-00001.parquet.tmp-999999-0123abcd"
    legacy = out / ".part-00002.parquet.tmp-0123abcd"  # written before temp names carried a pid
    for path in (live, dead, legacy):
        path.write_bytes(b"partial")
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out")
    assert live.exists() and not dead.exists() and not legacy.exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stored_embeddings_are_unit_vectors_in_every_precision(model_dir, tmp_path, precision):
    """Normalised in fp32 after the forward pass: a consumer's dot product is the cosine, even under bf16."""
    make_corpus(tmp_path / "corpus.parquet", 120)
    run(model_dir, tmp_path / "corpus.parquet", tmp_path / "out", CONFIG.model_copy(update={"precision": precision}))
    vectors = np.stack(
        pq.read_table(tmp_path / "out" / "embeddings").column("embedding").to_numpy(zero_copy_only=False)
    )
    assert np.abs(np.linalg.norm(vectors.astype(np.float64), axis=1) - 1.0).max() <= 1e-6


def test_heads_score_in_the_precision_that_computed_the_features(tiny_backbone):
    """bf16 features go through the heads inside the same autocast region (a bf16 CPU once failed here with
    'mat1 and mat2 must have the same dtype'), and the scores stay close to fp32's."""
    from mtl_model.embed.inference import run_token_ids
    from tests.helpers import tiny_model

    model = tiny_model(tiny_backbone).eval()
    encoded = [[2, 15, 16, 17, 18, 19, 20, 21, 22, 3], [2, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 3]]
    casing = [[0] * len(ids) for ids in encoded]
    scores = {}
    for precision in ("fp32", "bf16"):
        _, scores[precision] = run_token_ids(
            model, encoded, heads=("topic", "ner"), batch_size=2, device="cpu", precision=precision, casing=casing
        )
    assert scores["bf16"]["topic"].shape == (2, 4) and scores["bf16"]["topic"].dtype == np.float32
    np.testing.assert_allclose(scores["bf16"]["topic"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores["bf16"]["topic"], scores["fp32"]["topic"], atol=0.05)
    assert [rows.shape for rows in scores["bf16"]["ner"]] == [(10, 9), (12, 9)]
