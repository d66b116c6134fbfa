"""Prediction throughput: every head and the embedding in one pass, against the Hugging Face pipelines a user
would otherwise run (one `text-classification` pipeline per sentence head plus one `token-classification`
pipeline with `aggregation_strategy="first"`), on the same backbone size and the same real sentences.

    python benchmarks/predict_throughput.py [--data-dir ../shared/data] [--sentences 4000] [--batch-size 32]

Both sides use the bundled all-MiniLM-L6-v2 (6 layers, 384 wide) with freshly initialised heads (topic: 4
classes, sentiment: 2, NER: 9 BIO tags): speed does not depend on what the heads learnt. Ours is the corpus step
(`steps.embed` with `outputs: [embedding, topic, sentiment, ner]`: read, tokenize, sort by length, one forward
pass, decode, write Parquet); the peers run on the texts in memory with `batch_size` as given. Prints the CPU,
sentences/s of each side and the ratio, then the same as JSON last.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.embed_throughput import real_sentences, write_corpus

BACKBONE = "bundled:all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 128
HEADS = {"topic": ["World", "Sports", "Business", "Sci/Tech"], "sentiment": ["negative", "positive"]}
NER = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def cpu_name() -> str:
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))  # noqa: E741
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def ours(texts: list[str], work: Path, batch_size: int) -> float:
    """Sentences/s of the corpus step writing the embedding and every head's predictions."""
    from mtl_model import steps
    from mtl_model.backbone import load_tokenizer
    from mtl_model.config import EmbedConfig
    from mtl_model.model import HeadSpec, build_model

    torch.manual_seed(0)
    heads = [HeadSpec(name=n, kind="sentence", labels=[str(i) for i in range(len(v))], label_names=dict(
        (str(i), name) for i, name in enumerate(v))) for n, v in HEADS.items()]  # fmt: skip
    heads.append(HeadSpec(name="ner", kind="token", labels=NER))
    model = build_model(
        backbone=BACKBONE, heads=heads, pooling="mean", projection_dim=None, normalize=True, head_dropout=0.0,
        max_seq_length=MAX_SEQ_LENGTH, token_decoding="bio_viterbi",
    )  # fmt: skip
    model.save(work / "model", load_tokenizer(BACKBONE))
    write_corpus(work / "corpus.parquet", texts)
    config = EmbedConfig(outputs=["embedding", *HEADS, "ner"], batch_size=batch_size, precision="auto")
    steps.embed(str(work / "model"), str(work / "corpus.parquet"), config, device="cpu", out_dir=str(work / "warm"))
    started = time.perf_counter()
    steps.embed(str(work / "model"), str(work / "corpus.parquet"), config, device="cpu", out_dir=str(work / "run"))
    return len(texts) / (time.perf_counter() - started)


def peers(texts: list[str], batch_size: int) -> float:
    """Sentences/s of the Hugging Face pipelines, one after another over the same texts (all heads)."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        pipeline,
    )

    from mtl_model.backbone import resolve_backbone

    folder = resolve_backbone(BACKBONE)
    tokenizer = AutoTokenizer.from_pretrained(folder, model_max_length=MAX_SEQ_LENGTH)
    runs = []
    for labels in HEADS.values():
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels))
        runs.append(pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1))
    ner = AutoModelForTokenClassification.from_pretrained(folder, num_labels=len(NER))
    runs.append(
        pipeline("token-classification", model=ner, tokenizer=tokenizer, aggregation_strategy="first", device=-1)
    )
    for run in runs:  # warm-up
        run(texts[:batch_size], batch_size=batch_size)
    started = time.perf_counter()
    for run in runs:
        run(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    texts = real_sentences(args.data_dir, args.sentences)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; {len(texts)} sentences, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as work:
        ours_rate = ours(texts, Path(work), args.batch_size)
    peer_rate = peers(texts, args.batch_size)
    ratio = ours_rate / peer_rate
    print(f"ours (embedding + topic + sentiment + NER, one pass, Parquet out): {ours_rate:8.1f} sentences/s")
    print(f"HF pipelines (2 × text-classification + token-classification):     {peer_rate:8.1f} sentences/s")
    print(f"ratio: {ratio:.2f}× (target ≥ 3×)")
    summary = {"cpu": cpu_name(), "sentences": len(texts), "batch_size": args.batch_size}
    summary.update(ours_per_s=round(ours_rate, 1), peers_per_s=round(peer_rate, 1), ratio=round(ratio, 2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
