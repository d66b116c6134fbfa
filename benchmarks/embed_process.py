"""Whole-process embedding (issue 17): the CLI against an `encode` script, start-up included, and peak RSS at scale.

    python benchmarks/embed_process.py [--data-dir ../shared/data] [--sentences 20000] [--rounds 2] [--scale 10]

What a user runs, each in a fresh process timed from `exec` to exit, on the same Parquet corpus (the real-sentence
mix of `embed_peers.py`: SST-2 train, AG News test, CoNLL-2003 train; data/sample when ../shared is absent):

- ours: `python -m mtl_model embed --model <the bundled MiniLM saved as our model> --corpus C --out O`, the whole
  step: validate and plan, precision check, tokenize, embed, write shards, manifest and `_SUCCESS`;
- the peer: a script a user would write with sentence-transformers (read the Parquet, `encode` with its defaults
  and `normalize_embeddings=True`, write id + embedding to Parquet).

The two run interleaved for `--rounds` rounds (medians reported), then ours alone on the corpus repeated `--scale`
times, for the peak-RSS ratio (memory must not grow with the corpus). Both outputs are read back and compared row
by row (min cosine): the speed is only worth reading if the vectors agree. Prints the CPU, a table, JSON last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: the sibling benchmarks import as a package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.embed_peers import cpu_info, interleave, source_sentences  # noqa: E402
from benchmarks.process_stats import run_measured  # noqa: E402

ENCODE_SCRIPT = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sentence_transformers import SentenceTransformer

model_path, corpus, out = sys.argv[1:4]
table = pq.read_table(corpus, columns=["id", "text"])
model = SentenceTransformer(model_path, device="cpu")
vectors = model.encode(table.column("text").to_pylist(), normalize_embeddings=True).astype(np.float32)  # (N, D)
embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
pq.write_table(pa.table({"id": table.column("id"), "embedding": embedding}), out + ".tmp")
import os; os.replace(out + ".tmp", out)
"""
PROCESS_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_process(command: list[str]) -> tuple[float, float]:
    """(wall seconds from start to exit, peak RSS MiB) of one fresh process; raises with its stderr on failure."""
    with tempfile.TemporaryFile("w+") as stderr:
        stats = run_measured(command, stderr=stderr, env={**os.environ, **PROCESS_ENV})
        stderr.seek(0)
        if stats.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} … exited {stats.returncode}:\n{stderr.read()[-3000:]}")
    return stats.seconds, stats.peak_rss_bytes / 2**20


def write_corpus(path: Path, texts: list[str], repeat: int = 1) -> None:
    """`id` (0..N·repeat−1) and `text`: the corpus repeated `repeat` times, written once per size."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(len(texts) * repeat, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "text": texts * repeat}), path)


def ours_command(model_dir: Path, corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mtl_model", "embed", "--model", str(model_dir), "--corpus", str(corpus),
            "--out", str(out), "--device", "cpu"]  # fmt: skip


def encode_command(backbone_dir: Path, corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", ENCODE_SCRIPT, str(backbone_dir), str(corpus), str(out)]


def read_vectors(path: Path) -> tuple[Any, Any]:
    """(ids (N,), vectors (N, D) float32) from our embeddings folder or the peer's file, sorted by id."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["id", "embedding"])
    ids = table.column("id").to_numpy()
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    order = np.argsort(ids)
    return ids[order], vectors[order]


def agreement(ours: Path, peer: Path) -> dict[str, float]:
    """Min cosine between the two outputs, row by row, and the largest |norm − 1| of our stored rows."""
    import numpy as np

    our_ids, our_vectors = read_vectors(ours)
    peer_ids, peer_vectors = read_vectors(peer)
    if not np.array_equal(our_ids, peer_ids):
        raise ValueError(f"the outputs hold different ids: {len(our_ids)} rows vs {len(peer_ids)}")
    norms = np.linalg.norm(our_vectors.astype(np.float64), axis=1)  # (N,)
    peer_unit = peer_vectors / np.linalg.norm(peer_vectors, axis=1, keepdims=True)  # (N, D)
    cosines = (our_vectors.astype(np.float64) * peer_unit).sum(axis=1) / norms  # (N,)
    return {"min_cosine": float(cosines.min()), "max_norm_error": float(np.abs(norms - 1).max())}


def summarize(
    ours: list[tuple[float, float]],
    peer: list[tuple[float, float]],
    scaled: tuple[float, float] | None,
    rows: int,
    scale: int,
) -> dict[str, Any]:
    """Medians over the rounds, the ratios the issue's targets are stated in, and the RSS growth at `scale`×."""

    def side(results: list[tuple[float, float]]) -> dict[str, float]:
        seconds = statistics.median(s for s, _ in results)
        return {"seconds": round(seconds, 1), "rows_per_s": round(rows / seconds, 1),
                "peak_rss_mib": round(max(r for _, r in results))}  # fmt: skip

    report: dict[str, Any] = {"rows": rows, "ours": side(ours), "encode_script": side(peer)}
    report["wall_ratio"] = round(report["ours"]["seconds"] / report["encode_script"]["seconds"], 3)  # target ≤ 0.5
    report["rounds"] = {"ours": [round(s, 1) for s, _ in ours], "encode_script": [round(s, 1) for s, _ in peer]}
    if scaled is not None:
        growth = round(scaled[1] / max(r for _, r in ours), 3)  # target ≤ 1.1
        report["scaled"] = {"rows": rows * scale, "seconds": round(scaled[0], 1), "peak_rss_mib": round(scaled[1]),
                            "rss_ratio": growth}  # fmt: skip
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"| {report['rows']:,} rows, fresh process | wall s (median) | rows/s | peak RSS MiB |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {report[key]['seconds']} | {report[key]['rows_per_s']} | {report[key]['peak_rss_mib']} |"
            for label, key in (("`python -m mtl_model embed`", "ours"), ("`encode` script", "encode_script"))
        ),
        f"ours / encode wall: {report['wall_ratio']} (target ≤ 0.5)",
    ]
    if "scaled" in report:
        scaled = report["scaled"]
        lines.append(
            f"ours at {scaled['rows']:,} rows: {scaled['seconds']} s, peak RSS {scaled['peak_rss_mib']} MiB, "
            f"{scaled['rss_ratio']}× the 1× peak (target ≤ 1.1)"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=REPO_ROOT.parent / "shared" / "data", type=Path)
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10, help="ours alone on the corpus × this, for RSS (0: skip)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    return parser.parse_args(argv)


def prepare(work: Path, data_dir: Path, sentences: int, scale: int) -> tuple[Path, Path, int]:
    """The bundled MiniLM saved as our model, the backbone folder the peer loads, and the corpus file(s)."""
    from benchmarks.embed_throughput import build_model_dir
    from mtl_model.backbone import resolve_backbone

    model_dir = work / "model"
    if not (model_dir / "mtl_model.json").is_file():
        build_model_dir(model_dir)
    texts = interleave(source_sentences(data_dir)[0], sentences)
    write_corpus(work / "corpus.parquet", texts)
    if scale > 1:
        write_corpus(work / "corpus-scaled.parquet", texts, repeat=scale)
    return model_dir, Path(resolve_backbone("bundled:all-MiniLM-L6-v2")), len(texts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="embed-process-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir, backbone_dir, rows = prepare(work, args.data_dir, args.sentences, args.scale)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cores']} logical cores, flags {cpu['flags']}", flush=True)
    ours, peer = [], []
    for round_index in range(args.rounds):
        ours_out = work / f"ours-{round_index}"
        shutil.rmtree(ours_out, ignore_errors=True)  # a finished output of the same plan would be kept, not redone
        corpus = work / "corpus.parquet"
        ours.append(run_process(ours_command(model_dir, corpus, ours_out)))
        peer.append(run_process(encode_command(backbone_dir, corpus, work / f"peer-{round_index}.pq")))
        for side, (seconds, rss) in (("ours", ours[-1]), ("encode", peer[-1])):
            print(f"round {round_index + 1} {side}: {seconds:.1f} s, {rss:.0f} MiB", flush=True)
    scaled = None
    if args.scale > 1:  # memory must stay flat as the corpus grows
        shutil.rmtree(work / "ours-scaled", ignore_errors=True)
        scaled = run_process(ours_command(model_dir, work / "corpus-scaled.parquet", work / "ours-scaled"))
    report = summarize(ours, peer, scaled, rows, args.scale)
    report["agreement"] = agreement(work / "ours-0" / "embeddings", work / "peer-0.pq")
    report["cpu"] = cpu
    print(format_table(report))
    print(f"min cosine ours vs encode {report['agreement']['min_cosine']:.6f}, "
          f"max |norm − 1| of stored rows {report['agreement']['max_norm_error']:.2e}")  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
