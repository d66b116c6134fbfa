"""Embedding throughput against `SentenceTransformer.encode`, and peak memory at 1× and 10× the corpus.

    python benchmarks/embed_throughput.py [--data-dir ../shared/data] [--sentences 4000] [--device auto]

Same model on both sides: the bundled all-MiniLM-L6-v2 (mean pooling, L2 normalisation, max_seq_length
256 as its sentence-transformers config says), on the same real sentences (SST-2 train and AG News, half
each; on a GPU pass `--sentences 0` for all of SST-2 train). Ours is the whole embed step on a Parquet
corpus: stream, tokenize, sort by length within windows, embed (precision `auto`: bf16 where the device
has it and the cosine check passes), write shards + manifest. The peer is `encode` with its defaults
(batch 32, fp32) on the same texts in memory, in the same process. Prints sentences/s of each, their
ratio, the smallest cosine between the two embeddings of each sentence, and the peak RSS of a child
process embedding the corpus and the corpus repeated 10×.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BACKBONE = "bundled:all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's sentence_bert_config.json


def real_sentences(data_dir: Path, count: int) -> list[str]:
    """SST-2 train sentences and AG News texts, interleaved; `count` 0 = all of SST-2 train."""
    from mtl_model.readers import read_ag_news, read_glue_tsv

    sst = [
        e.text
        for e in read_glue_tsv(data_dir / "sst2" / "train.tsv", text_column="sentence", label_column="label").examples
    ]
    if count == 0:
        return sst
    news = [e.text for e in read_ag_news(data_dir / "ag_news" / "test.csv").examples]
    half = count // 2
    return [t for pair in zip(sst[:half], news[: count - half]) for t in pair]


def write_corpus(path: Path, texts: list[str], repeat: int = 1) -> None:
    ids = np.arange(len(texts) * repeat, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "text": texts * repeat}), path)


def build_model_dir(target: Path) -> Path:
    """The bundled MiniLM as one of our saved models, so the embed step loads it like any trained model."""
    import torch

    from mtl_model.backbone import load_tokenizer
    from mtl_model.model import HeadSpec, build_model

    torch.manual_seed(0)
    model = build_model(
        backbone=BACKBONE,
        heads=[HeadSpec(name="none", kind="sentence", labels=["x"])],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=MAX_SEQ_LENGTH,
    )
    model.save(target, load_tokenizer(BACKBONE))
    return target


def child_peak_rss(model_dir: Path, corpus: Path, out: Path, device: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of `python -m mtl_model embed` in a fresh process."""
    code = (
        "import resource, sys, time; from mtl_model.cli import main; t = time.perf_counter(); "
        f"rc = main(['embed', '--model', {str(model_dir)!r}, '--corpus', {str(corpus)!r}, "
        f"'--out', {str(out)!r}, '--device', {device!r}]); "
        "print('RESULT', time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(stderr_line for stderr_line in done.stderr.splitlines() if stderr_line.startswith("RESULT"))
    _, seconds, rss = line.split()
    return float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", type=Path)
    parser.add_argument("--sentences", type=int, default=4000, help="sentences to embed (0: all of SST-2 train)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 1× / 10× peak-memory runs")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from mtl_model.backbone import resolve_backbone
    from mtl_model.config import EmbedConfig
    from mtl_model.device import resolve_device
    from mtl_model.embed import min_cosine
    from mtl_model.runtime import quiet_third_party
    from mtl_model.steps import embed

    quiet_third_party()
    device = resolve_device(args.device)
    texts = real_sentences(args.data_dir, args.sentences)
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    model_dir = build_model_dir(work / "model")
    write_corpus(work / "corpus.parquet", texts)

    peer = SentenceTransformer(resolve_backbone(BACKBONE), device=device)
    peer.encode(texts[:64])  # warm-up (kernels, allocator) for both sides
    embed(
        str(model_dir),
        str(work / "corpus.parquet"),
        EmbedConfig(rows_per_shard=64),
        device=device,
        out_dir=str(work / "warm"),
    )

    results = {}
    for precision in ("auto", "fp32"):
        started = time.perf_counter()
        summary = embed(
            str(model_dir),
            str(work / "corpus.parquet"),
            EmbedConfig(precision=precision, batch_size=64),
            device=device,
            out_dir=str(work / f"ours-{precision}"),
        )
        seconds = time.perf_counter() - started
        ours = np.stack(
            pq.read_table(work / f"ours-{precision}" / "embeddings").column("embedding").to_numpy(zero_copy_only=False)
        )
        results[precision] = {
            "seconds": seconds,
            "sentences_per_s": len(texts) / seconds,
            "precision": summary.precision,
            "vectors": ours,
        }
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    reference = peer.encode(texts)
    peer_seconds = time.perf_counter() - started
    peer_rate = len(texts) / peer_seconds

    print(
        f"device: {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}); "
        f"{len(texts)} real sentences; torch {torch.__version__}"
    )
    print(f"SentenceTransformer.encode (defaults: batch 32, fp32): {peer_rate:8.1f} sentences/s ({peer_seconds:.1f}s)")
    report = {"device": device, "sentences": len(texts), "encode_sentences_per_s": round(peer_rate, 1)}
    for name, result in results.items():
        cosine = min_cosine(result["vectors"], reference)
        print(
            f"embed step, precision {name} → {result['precision']:4s}:       "
            f"{result['sentences_per_s']:8.1f} sentences/s "
            f"({result['seconds']:.1f}s)  ratio {result['sentences_per_s'] / peer_rate:.2f}×  "
            f"min cosine vs encode {cosine:.6f}"
        )
        report[f"ours_{name}"] = {
            "precision": result["precision"],
            "sentences_per_s": round(result["sentences_per_s"], 1),
            "ratio": round(result["sentences_per_s"] / peer_rate, 2),
            "min_cosine_vs_encode": round(cosine, 6),
        }

    if not args.skip_rss:
        write_corpus(work / "corpus10.parquet", texts, repeat=10)
        one = child_peak_rss(model_dir, work / "corpus.parquet", work / "rss1", device)
        ten = child_peak_rss(model_dir, work / "corpus10.parquet", work / "rss10", device)
        print(
            f"peak RSS, embed step in a fresh process: 1× ({len(texts)} rows) {one[1]:.0f} MiB in {one[0]:.0f}s; "
            f"10× ({10 * len(texts)} rows) {ten[1]:.0f} MiB in {ten[0]:.0f}s; ratio {ten[1] / one[1]:.3f}"
        )
        report["peak_rss_mib"] = {"1x": round(one[1]), "10x": round(ten[1]), "ratio": round(ten[1] / one[1], 3)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
