"""Precision tiers and their gates: reduced precision is used only where consumers could not tell.

Consumers search and cluster with embeddings, so a tier is judged by what they would see, measured on a sample
of the corpus against fp32 (the exact tier) and written into the manifest:

    fp32   exact: the reference; no gate
    bf16   (fp16 on GPUs without bf16) every sampled row's cosine with its fp32 vector ≥ 0.9999, and each row's
           top-10 nearest neighbours within the sample overlap its fp32 neighbours ≥ 0.99 on average

A single cosine floor is not enough on its own: two vectors can each move by 1e-4 in directions that swap close
neighbours, which is what a retrieval user notices. `precision: auto` takes the fastest tier whose gates pass.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from mtl_model.base import StrictModel

MIN_COSINE = 0.9999  # every sampled row's cosine with fp32
MIN_NEIGHBOUR_OVERLAP = 0.99  # mean share of each row's top-k neighbours (within the sample) that fp32 also finds
NEIGHBOURS = 10


class TierCheck(StrictModel):
    """One reduced-precision tier measured against fp32 on the sample."""

    precision: str
    """The tier (`bf16`, `fp16`)."""
    rows: int
    """Sample rows embedded in both precisions."""
    min_cosine: float
    """Smallest row-wise cosine with fp32."""
    neighbour_overlap: float | None
    """Mean overlap of each row's top-`neighbours` nearest neighbours with fp32's (None: sample too small)."""
    neighbours: int = NEIGHBOURS
    """k of the neighbour gate."""
    gates: dict[str, float] = Field(
        default_factory=lambda: {"min_cosine": MIN_COSINE, "neighbour_overlap": MIN_NEIGHBOUR_OVERLAP}
    )
    """The thresholds it was judged by."""
    passed: bool
    """Whether every gate passed (then `auto` may use this tier)."""


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine similarity of two (N, D) arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)  # (N, D)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)  # (N,)
    return float(np.min(np.sum(a64 * b64, axis=1) / np.maximum(norms, 1e-12)))


def nearest_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows."""
    unit = embeddings.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)  # (N, D)
    similarity = unit @ unit.T  # (N, N)
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # (N, k)


def neighbour_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS) -> float | None:
    """Mean |top-k(reference) ∩ top-k(candidate)| / k over rows; None when the sample has k rows or fewer."""
    if reference.shape != candidate.shape:
        raise ValueError(f"reference {reference.shape} and candidate {candidate.shape} differ in shape")
    if reference.shape[0] <= k:
        return None
    ours, theirs = nearest_neighbours(reference, k), nearest_neighbours(candidate, k)  # (N, k) each
    shared = [len(set(a) & set(b)) for a, b in zip(ours.tolist(), theirs.tolist())]
    return float(np.mean(shared) / k)


def check_tier(precision: str, reference: np.ndarray, candidate: np.ndarray) -> TierCheck:
    """Judge `candidate` (embeddings of the sample in `precision`) against fp32's `reference`, both (N, D)."""
    cosine = min_cosine(reference, candidate)
    overlap = neighbour_overlap(reference, candidate)
    passed = cosine >= MIN_COSINE and (overlap is None or overlap >= MIN_NEIGHBOUR_OVERLAP)
    return TierCheck(
        precision=precision,
        rows=int(reference.shape[0]),
        min_cosine=cosine,
        neighbour_overlap=overlap,
        passed=passed,
    )
