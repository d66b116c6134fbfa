"""Frozen-embedding baselines: the pretrained encoder, untouched, plus scikit-learn logistic regression.

Sentence tasks: the pretrained sentence embedding (mean pooling + L2 norm, exactly all-MiniLM-L6-v2's)
of each text → LogisticRegression. Token tasks: the pretrained token state of each word's first
sub-word → LogisticRegression per word, scored with seqeval like the fine-tuned model.

    python benchmarks/frozen_baseline.py --tokenized runs/quality/multi/tokenized > baselines.json

Reads the padded Parquet the pipeline wrote, so both see exactly the same tokens and splits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from mtl_model.device import autocast_dtype, resolve_precision
from mtl_model.evaluate import sentence_metrics, sorted_batches, token_metrics, word_tags
from mtl_model.model import HeadSpec, build_model
from mtl_model.runtime import quiet_third_party
from mtl_model.tokenization import load_tokenized


@torch.inference_mode()
def features(model, split, kind: str, batch_size: int, precision: str) -> np.ndarray:
    """(N, H) sentence embeddings, or (words, H) first-sub-word token states in row-major word order."""
    dtype = autocast_dtype(precision)
    sentence = np.zeros((len(split), model.embedding_dim), dtype=np.float32)
    token_rows: dict[int, np.ndarray] = {}
    for rows, input_ids, mask in sorted_batches(split, batch_size):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            out = model(input_ids, mask)
        if kind == "sentence":
            sentence[rows] = out["sentence_embedding"].float().numpy()
        else:
            states = out["token_embeddings"].float().numpy()  # (B, T, H)
            for index, row in enumerate(rows):
                positions = np.flatnonzero(split.word_index[row, : input_ids.shape[1]] >= 0)
                token_rows[row] = states[index, positions]
    if kind == "sentence":
        return sentence
    return np.concatenate([token_rows[row] for row in range(len(split))])


def first_subword_labels(split) -> np.ndarray:
    return np.concatenate([split.labels[row][split.word_index[row] >= 0] for row in range(len(split))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenized", required=True, help="the pipeline's <out>/tokenized folder")
    parser.add_argument("--backbone", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=500)
    args = parser.parse_args(argv)
    quiet_third_party()
    torch.manual_seed(0)
    precision = resolve_precision("cpu", "auto")
    model = build_model(
        backbone=args.backbone,
        heads=[HeadSpec(name="unused", kind="sentence", labels=["a", "b"])],
        pooling="mean",
        projection_dim=None,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=512,
    ).eval()
    results = {"backbone": args.backbone, "precision": precision, "tasks": {}}
    for task_dir in sorted(Path(args.tokenized).iterdir()):
        started = time.perf_counter()
        train, test = load_tokenized(task_dir / "train.parquet"), load_tokenized(task_dir / "test.parquet")
        kind, labels = train.metadata["kind"], train.metadata["labels"]
        x_train = features(model, train, kind, args.batch_size, precision)
        x_test = features(model, test, kind, args.batch_size, precision)
        y_train = train.labels if kind == "sentence" else first_subword_labels(train)
        classifier = LogisticRegression(max_iter=args.max_iter).fit(x_train, y_train)
        predicted = classifier.predict(x_test)
        if kind == "sentence":
            metrics = sentence_metrics(test.labels, predicted)
        else:
            per_token = np.zeros(test.input_ids.shape, dtype=np.int64)
            mask = test.word_index >= 0
            per_token[mask] = predicted  # row-major order matches features()
            metrics = token_metrics(*word_tags(test, np.eye(len(labels))[per_token], labels))  # one-hot scores
        metrics["seconds"] = round(time.perf_counter() - started, 1)
        metrics["train_examples"] = int(len(y_train))
        results["tasks"][task_dir.name] = metrics
        print(f"{task_dir.name}: {metrics}", file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
