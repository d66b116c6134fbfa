"""The whole-process embedding benchmark: its arithmetic and read-back on made-up numbers and files, and one tiny
end-to-end run (both processes, the bundled MiniLM, 32 sample sentences)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import embed_process
from benchmarks.embed_process import agreement, format_table, run_process, summarize


def test_summary_takes_medians_the_largest_rss_and_the_ratios() -> None:
    ours = [(10.0, 900.0), (12.0, 950.0), (11.0, 920.0)]
    peer = [(30.0, 1500.0), (20.0, 1400.0), (22.0, 1450.0)]
    report = summarize(ours, peer, scaled=(100.0, 1000.0), rows=2000, scale=10)
    assert report["ours"] == {"seconds": 11.0, "rows_per_s": 181.8, "peak_rss_mib": 950}
    assert report["encode_script"] == {"seconds": 22.0, "rows_per_s": 90.9, "peak_rss_mib": 1500}
    assert report["wall_ratio"] == 0.5
    assert report["scaled"] == {"rows": 20000, "seconds": 100.0, "peak_rss_mib": 1000, "rss_ratio": 1.053}
    table = format_table(report)
    assert "ours / encode wall: 0.5 (target ≤ 0.5)" in table
    assert "ours at 20,000 rows: 100.0 s, peak RSS 1000 MiB, 1.053× the 1× peak (target ≤ 1.1)" in table
    assert "scaled" not in summarize(ours, peer, scaled=None, rows=2000, scale=10)


def write_vectors(path: Path, ids: list[int], vectors: np.ndarray) -> None:
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), vectors.shape[1])
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "embedding": embedding}), path)


def test_agreement_matches_rows_by_id_and_measures_our_norms(tmp_path: Path) -> None:
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # (3, 2), unit rows
    write_vectors(tmp_path / "ours.parquet", [0, 1, 2], vectors)
    tilted = np.array([[0.0, 2.0], [1.0, 0.0], [3.0, 4.0]])  # the peer's rows in another order, not normalised
    write_vectors(tmp_path / "peer.parquet", [2, 0, 1], tilted)
    result = agreement(tmp_path / "ours.parquet", tmp_path / "peer.parquet")
    assert result["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert result["max_norm_error"] == pytest.approx(0.0, abs=1e-6)
    write_vectors(tmp_path / "peer.parquet", [0, 1, 2], np.array([[0.0, 1.0], [0.6, 0.8], [0.0, 1.0]]))
    swapped = agreement(tmp_path / "ours.parquet", tmp_path / "peer.parquet")
    assert swapped["min_cosine"] == pytest.approx(0.0, abs=1e-6)  # row 0: (1, 0) against (0, 1)
    write_vectors(tmp_path / "peer.parquet", [0, 1, 5], vectors)
    with pytest.raises(ValueError, match="different ids"):
        agreement(tmp_path / "ours.parquet", tmp_path / "peer.parquet")


def test_a_failing_process_raises_with_its_stderr() -> None:
    seconds, rss = run_process([sys.executable, "-c", "x = bytearray(64 * 2**20)"])
    assert seconds > 0 and rss >= 64  # the child's own peak, in MiB
    with pytest.raises(RuntimeError, match="exited 3:\nboom"):
        run_process([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])


@pytest.mark.slow
def test_a_tiny_run_goes_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "no-shared-data"  # falls back to data/sample
    embed_process.main(["--data-dir", str(data_dir), "--sentences", "32", "--rounds", "1", "--scale", "2",
                        "--work", str(tmp_path / "work")])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows"] == 32 and report["scaled"]["rows"] == 64
    assert report["agreement"]["min_cosine"] > 0.9999  # fp32 on this CPU, or a gated bf16 tier
    assert report["agreement"]["max_norm_error"] <= 1e-6
    assert report["ours"]["peak_rss_mib"] > 100 and report["encode_script"]["peak_rss_mib"] > 100
