"""Turning a token head's per-word scores into a tag sequence.

`argmax` picks each word's best tag on its own and can emit sequences BIO forbids (`O I-ORG`: an entity that
starts with I-). `bio_viterbi` picks the best sequence among the valid ones: I-X only right after B-X or I-X,
never first. It is the exact maximum of the summed log-probabilities under those hard constraints (a CRF with
fixed 0/−inf transitions), so it never emits an invalid sequence and costs O(W·C²) per sentence.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

TokenDecoding = Literal["argmax", "bio_viterbi"]


def bio_constraints(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed transitions (C, C): previous → next, allowed first tags (C,)) for a BIO label list.

    Labels that are not `B-`/`I-` (e.g. `O`) may follow anything and start a sentence."""
    count = len(labels)
    allowed = np.ones((count, count), dtype=bool)
    first = np.ones(count, dtype=bool)
    for j, label in enumerate(labels):
        if label.startswith("I-"):
            kind = label[2:]
            first[j] = False
            allowed[:, j] = [previous in (f"B-{kind}", f"I-{kind}") for previous in labels]
    return allowed, first


def viterbi(log_probs: np.ndarray, allowed: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The best tag index per word (W,) from log-probabilities (W, C) under hard transition constraints."""
    words, count = log_probs.shape
    if allowed.shape != (count, count) or first.shape != (count,):
        raise ValueError(f"log_probs {log_probs.shape} do not match constraints {allowed.shape} and {first.shape}")
    if words == 0:
        return np.zeros(0, dtype=np.int64)
    blocked = np.where(allowed, 0.0, -np.inf)  # (C, C)
    score = np.where(first, log_probs[0], -np.inf)  # (C,)
    back = np.zeros((words, count), dtype=np.int64)
    for w in range(1, words):
        candidates = score[:, None] + blocked  # (C prev, C next)
        back[w] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[w]
    path = np.empty(words, dtype=np.int64)
    path[-1] = int(score.argmax())
    for w in range(words - 1, 0, -1):
        path[w - 1] = back[w, path[w]]
    return path


def decode(log_probs: np.ndarray, labels: list[str], decoding: TokenDecoding) -> np.ndarray:
    """Tag indices (W,) for one sentence's word scores (W, C)."""
    if decoding == "argmax":
        return log_probs.argmax(axis=-1).astype(np.int64)
    allowed, first = bio_constraints(labels)
    return viterbi(log_probs, allowed, first)


def is_valid_bio(tags: list[str]) -> bool:
    """Whether a tag sequence obeys BIO: every I-X continues a B-X or I-X."""
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True
