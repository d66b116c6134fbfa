"""Step 4: metrics per task. Sentence tasks: accuracy and macro P/R/F1 (scikit-learn).
Token tasks: entity-level P/R/F1 (seqeval) over every gold word; a word the model never saw
(cut by truncation) counts as predicted `O`, so truncation lowers recall instead of hiding errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch

from mtl_model.decoding import TokenDecoding, decode
from mtl_model.model import TAGS_SUFFIX, MultiTaskModel
from mtl_model.tokenization import TokenizedSplit

HeadKind = Literal["sentence", "token"]
PRIMARY_METRIC: dict[HeadKind, str] = {"sentence": "accuracy", "token": "f1"}  # the one headline number per head kind


def primary_metric(kind: HeadKind) -> str:
    """The headline metric of a head: accuracy for sentence heads, entity-level F1 for token heads."""
    return PRIMARY_METRIC[kind]


def metrics_kind(values: Mapping[str, float]) -> HeadKind:
    """Which kind of head produced `values` (only token metrics carry `token_accuracy`)."""
    return "token" if "token_accuracy" in values else "sentence"


def primary_metrics(tasks: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each head's headline number from a `metrics.json`-style `{head: {metric: value}}` table."""
    return {task: float(values[primary_metric(metrics_kind(values))]) for task, values in tasks.items()}


def sorted_batches(split: TokenizedSplit, batch_size: int):
    """(rows, input_ids (B, T), attention_mask (B, T)) over a split, longest rows first, each batch cut to its
    own longest row. CPU tensors; the caller moves them."""
    lengths = split.attention_mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        yield (
            rows,
            torch.from_numpy(split.input_ids[rows, :width]),
            torch.from_numpy(split.attention_mask[rows, :width]),
        )


@torch.inference_mode()
def sentence_probabilities(
    model: MultiTaskModel, split: TokenizedSplit, head: str, *, batch_size: int, device: str
) -> np.ndarray:
    """Class probabilities per row (N, C), in row order; the prediction is their arg-max."""
    model.eval()
    probs = np.zeros((len(split), len(model.head_specs[head].labels)), dtype=np.float32)  # (N, C)
    for rows, input_ids, mask in sorted_batches(split, batch_size):
        logits = model(input_ids.to(device), mask.to(device), task=head)["logits"]  # (B, C)
        probs[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs


def sentence_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "support": int(len(gold)),
    }


@torch.inference_mode()
def token_log_probs(
    model: MultiTaskModel, split: TokenizedSplit, task: str, *, batch_size: int, device: str
) -> np.ndarray:
    """Log-probabilities per token (N, L, C), in row order (padding positions stay 0)."""
    model.eval()
    classes = len(model.head_specs[task].labels)
    scores = np.zeros((*split.input_ids.shape, classes), dtype=np.float32)  # (N, L, C)
    for rows, input_ids, mask in sorted_batches(split, batch_size):
        width = input_ids.shape[1]
        casing = None if split.casing_ids is None else torch.from_numpy(split.casing_ids[rows, :width]).to(device)
        logits = model(input_ids.to(device), mask.to(device), task=task, casing_ids=casing)["logits"]  # (B, T, C)
        scores[rows, : input_ids.shape[1]] = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
    return scores


def word_tags(
    split: TokenizedSplit, log_probs: np.ndarray, labels: list[str], decoding: TokenDecoding = "argmax"
) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sequences per sentence over all gold words.

    Each word is scored at its first sub-word (the alignment rule in `tokenization.py`); the sentence's word scores
    are decoded together (`decoding`), and words cut by truncation are predicted `O`."""
    gold_tags, predicted_tags = [], []
    for row, word_labels in enumerate(split.word_labels):
        predicted = ["O"] * len(word_labels)
        positions = np.flatnonzero(split.word_index[row] >= 0)  # first sub-words, in word order
        for position, tag in zip(positions, decode(log_probs[row, positions], labels, decoding)):
            predicted[split.word_index[row, position]] = labels[tag]
        gold_tags.append([labels[label] for label in word_labels])
        predicted_tags.append(predicted)
    return gold_tags, predicted_tags


def token_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "token_accuracy": float(accuracy_score(gold, predicted)),
        "support": int(len(gold)),
    }


def evaluate_task(
    model: MultiTaskModel, split: TokenizedSplit, task: str, *, batch_size: int, device: str
) -> dict[str, float]:
    """Metrics of one task on one padded split."""
    spec = model.head_specs[task]
    if spec.kind == "sentence":
        probs = sentence_probabilities(model, split, task, batch_size=batch_size, device=device)
        return sentence_metrics(split.labels, probs.argmax(axis=1))
    log_probs = token_log_probs(model, split, task, batch_size=batch_size, device=device)
    gold, predicted = word_tags(split, log_probs, spec.labels, model.config.token_decoding)
    return token_metrics(gold, predicted)


def evaluate_splits(
    model: MultiTaskModel, splits: dict[str, TokenizedSplit], *, batch_size: int, device: str
) -> dict[str, dict]:
    """Metrics per head (`head_views`)."""
    return {
        head: evaluate_task(model, view, head, batch_size=batch_size, device=device)
        for task, split in splits.items()
        for head, view in head_views(task, split)
    }


def head_views(task: str, split: TokenizedSplit) -> list[tuple[str, TokenizedSplit]]:
    """The heads a task's split is evaluated on: a joint task `x` gives its sentence head `x` (on the sentence
    labels) and its token head `x_tags`; any other task its one head."""
    if split.metadata.get("kind") == "joint":
        return [(task, split.sentence_view()), (task + TAGS_SUFFIX, split)]
    return [(task, split)]
