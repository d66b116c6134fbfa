"""Evaluation one can act on: per-class and per-entity-type P/R/F1, confusion matrices, and every prediction.

The aggregate numbers stay in `evaluate.py` (and `metrics.json: tasks`); this adds, per head, what a user needs
to see *where* the model is wrong:

- sentence heads: scikit-learn's `classification_report` per class, the confusion matrix (PNG), and each row's
  gold label, predicted label and its probability;
- token heads: seqeval's `classification_report` per entity type (default mode), an entity-level confusion that
  separates type errors (right span, wrong type) from boundary errors (overlapping span) and misses, and each
  sentence's gold and predicted tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtl_model.evaluate import (
    head_views,
    sentence_metrics,
    sentence_probabilities,
    token_log_probs,
    token_metrics,
    word_tags,
)
from mtl_model.model import HeadSpec, MultiTaskModel
from mtl_model.tokenization import TokenizedSplit

REPORT_KEYS = ("precision", "recall", "f1", "support")


@dataclass
class HeadReport:
    """Everything evaluating one head found."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    predictions: pa.Table  # one row per evaluated row: gold, predicted, score
    confusion: np.ndarray | None = None  # (C gold, C predicted) for sentence heads
    class_names: list[str] = field(default_factory=list)
    entity_errors: dict[str, dict[str, int]] | None = None  # token heads: per gold type, outcome → count


def _report_rows(report: dict, names: list[str]) -> dict[str, dict[str, float]]:
    return {
        name: {key: float(report[name]["f1-score" if key == "f1" else key]) for key in REPORT_KEYS}
        for name in names
        if name in report
    }


def sentence_report(model: MultiTaskModel, split: TokenizedSplit, spec: HeadSpec, **run) -> HeadReport:
    from sklearn.metrics import classification_report, confusion_matrix

    probs = sentence_probabilities(model, split, spec.name, **run)  # (N, C)
    predicted = probs.argmax(axis=1)
    names = spec.names()
    classes = list(range(len(names)))
    report = classification_report(
        split.labels, predicted, labels=classes, target_names=names, output_dict=True, zero_division=0
    )
    table = pa.table({
        "gold": pa.array([names[i] for i in split.labels], pa.string()),
        "predicted": pa.array([names[i] for i in predicted], pa.string()),
        "score": pa.array(probs[np.arange(len(predicted)), predicted], pa.float32()),
    })  # fmt: skip
    return HeadReport(
        metrics=sentence_metrics(split.labels, predicted),
        per_class=_report_rows(report, names),
        predictions=table,
        confusion=confusion_matrix(split.labels, predicted, labels=classes),
        class_names=names,
    )


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of each entity in a BIO sequence (an I- without a B- opens one too)."""
    found, current = [], None
    for index, tag in enumerate([*tags, "O"]):
        inside = tag.startswith("I-") and current is not None and current[0] == tag[2:]
        if current is not None and not inside:
            found.append((current[0], current[1], index - 1))
            current = None
        if tag.startswith("B-") or (tag.startswith("I-") and current is None):
            current = (tag[2:], index)
    return found


def entity_errors(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, dict[str, int]]:
    """Per gold entity type: `correct` (same span and type), `wrong_type` (same span, other type), `boundary`
    (overlapping span, not the same), `missed` (nothing overlaps); plus per predicted type `spurious`."""
    outcomes: dict[str, dict[str, int]] = {}

    def count(kind: str, outcome: str) -> None:
        row = outcomes.setdefault(kind, {"correct": 0, "wrong_type": 0, "boundary": 0, "missed": 0, "spurious": 0})
        row[outcome] += 1

    for gold_tags, predicted_tags in zip(gold, predicted):
        golds, preds = entities(gold_tags), entities(predicted_tags)
        for kind, start, end in golds:
            same_span = [p for p in preds if (p[1], p[2]) == (start, end)]
            overlapping = [p for p in preds if p[1] <= end and p[2] >= start]
            if any(p[0] == kind for p in same_span):
                count(kind, "correct")
            elif same_span:
                count(kind, "wrong_type")
            elif overlapping:
                count(kind, "boundary")
            else:
                count(kind, "missed")
        for kind, start, end in preds:
            if not any(g[1] <= end and g[2] >= start for g in golds):
                count(kind, "spurious")
    return dict(sorted(outcomes.items()))


def token_report(model: MultiTaskModel, split: TokenizedSplit, spec: HeadSpec, **run) -> HeadReport:
    from seqeval.metrics import classification_report

    log_probs = token_log_probs(model, split, spec.name, **run)  # (N, L, C)
    gold, predicted = word_tags(split, log_probs, spec.labels, model.config.token_decoding)
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    types = sorted(name for name in report if not name.endswith(" avg"))
    confidence = [
        float(np.exp(log_probs[row, split.word_index[row] >= 0].max(axis=-1)).mean())
        if (split.word_index[row] >= 0).any()
        else 1.0
        for row in range(len(split))
    ]
    table = pa.table({
        "gold": pa.array(gold, pa.list_(pa.string())),
        "predicted": pa.array(predicted, pa.list_(pa.string())),
        "score": pa.array(confidence, pa.float32()),
    })  # fmt: skip
    return HeadReport(
        metrics=token_metrics(gold, predicted),
        per_class=_report_rows(report, types),
        predictions=table,
        class_names=types,
        entity_errors=entity_errors(gold, predicted),
    )


def report_splits(
    model: MultiTaskModel, splits: dict[str, TokenizedSplit], *, batch_size: int, device: str
) -> dict[str, HeadReport]:
    """A `HeadReport` per head (a joint task `x`: `x` and `x_tags`), with the same metrics `evaluate_splits` gives."""
    reports = {}
    for task, split in splits.items():
        for head, view in head_views(task, split):
            spec = model.head_specs[head]
            build = sentence_report if spec.kind == "sentence" else token_report
            reports[head] = build(model, view, spec, batch_size=batch_size, device=device)
    return reports


def plot_confusion(matrix: np.ndarray, names: list[str], title: str, path: Path) -> None:
    """A confusion matrix as PNG (rows: gold, columns: predicted), counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtl_model.io import atomic_path

    size = max(4.0, 0.6 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="gold", title=title)
    axis.set_xticklabels(names, rotation=45, ha="right")
    axis.set_yticklabels(names)
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)
