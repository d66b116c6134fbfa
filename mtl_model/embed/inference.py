"""The model's side of embedding: tokenize texts, embed token ids in length-sorted batches, choose the precision
once per run, and keep one loaded model per process.

Speed without changing results: rows are sorted by token count so each batch pads only to its own longest row
(then put back in order), inference mode, and reduced precision only where it keeps every embedding within
the gates of `mtl_model.embed.tiers` (cosine and nearest neighbours against fp32).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch

from mtl_model.device import autocast_dtype, cpu_has_bf16
from mtl_model.embed.tiers import TierCheck, check_tier
from mtl_model.model import MultiTaskModel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Precision = Literal["fp32", "bf16", "fp16"]
RequestedPrecision = Literal["auto", "fp32", "bf16", "fp16"]

# Batches of texts this short run in fp32: few tokens average out no rounding, and they cost nothing.
FP32_MAX_TOKENS = 8
# Padded tokens per CPU forward pass when the config leaves it open: the longest batch's activations then stay
# ~20 MiB whatever the texts' lengths (64 rows of 244 tokens held 264 MiB), at the same speed (docs/RESULTS.md §11).
CPU_BATCH_TOKENS = 2048


def default_batch_tokens(device: str, configured: int | None = None) -> int | None:
    """The padded-token cap per forward pass: `embed.batch_tokens` when set, else the device's default. A CPU's
    memory is the process's RSS, so cap it; a GPU holds `batch_size` rows of the longest texts, so rows alone bound
    it."""
    if configured is not None:
        return configured
    return None if device.startswith("cuda") else CPU_BATCH_TOKENS


def length_batches(lengths: np.ndarray, batch_size: int, batch_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices grouped into forward passes, longest rows first: each batch pads only to its own longest row,
    holds at most `batch_size` rows and (unless `batch_tokens` is None) at most `batch_tokens` padded tokens,
    but always at least one row (a text longer than the cap runs alone)."""
    order = np.argsort(-lengths, kind="stable")  # (N,)
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        rows = batch_size
        if batch_tokens is not None:
            rows = max(1, min(batch_size, batch_tokens // max(int(lengths[order[start]]), 1)))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
) -> tuple[list[list[int]], int]:
    """Token ids per text (special tokens included, cut to `max_length`) and how many texts were cut."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length + 1, return_attention_mask=False)["input_ids"]
    long_rows = [i for i, ids in enumerate(encoded) if len(ids) > max_length]
    if long_rows:  # re-encode the long ones properly so they still end with the special tokens
        cut = tokenizer(
            [texts[i] for i in long_rows],
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
        )["input_ids"]
        for row, ids in zip(long_rows, cut):
            encoded[row] = ids
    return encoded, len(long_rows)


def embed_token_ids(
    model: MultiTaskModel,
    encoded: list[list[int]],
    *,
    batch_size: int,
    device: str,
    precision: str = "fp32",
    pad_id: int = 0,
    batch_tokens: int | None = None,
) -> np.ndarray:
    """(N, D) float32 embeddings in input order. Rows are sorted by length so each batch pads only to its
    own longest row, then put back in order."""
    embeddings, _ = run_token_ids(
        model,
        encoded,
        heads=(),
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        device=device,
        precision=precision,
        pad_id=pad_id,
    )
    return embeddings


def stored_embedding(model: MultiTaskModel, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The embedding as written (B, D) float32: a normalising model's vectors are normalised again in fp32, so every
    stored row is a unit vector (|norm - 1| ≤ 1e-6) whatever precision computed it, and cosine = dot product."""
    if model.normalize is None:
        return features["sentence_embedding"].float()
    return torch.nn.functional.normalize(features["sentence_features"].float(), dim=-1)


@torch.inference_mode()
def run_token_ids(
    model: MultiTaskModel,
    encoded: list[list[int]],
    *,
    heads: tuple[str, ...],
    batch_size: int,
    device: str,
    precision: str = "fp32",
    pad_id: int = 0,
    casing: list[list[int]] | None = None,
    batch_tokens: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The embeddings (N, D) and, from the same forward pass, each head's scores in input order: a sentence head's
    class probabilities (N, C), a token head's per-row log-probabilities [(T_i, C)]. `casing`: each row's casing
    ids (`mtl_model.casing`), needed by token heads of a model with `casing_dim`. Batches: `length_batches`."""
    model.eval()
    lengths = np.array([len(ids) for ids in encoded])  # (N,)
    out = np.zeros((len(encoded), model.embedding_dim), dtype=np.float32)  # (N, D)
    scores: dict[str, Any] = {}
    for name in heads:
        classes = len(model.head_specs[name].labels)
        sentence = model.head_specs[name].kind == "sentence"
        scores[name] = np.zeros((len(encoded), classes), dtype=np.float32) if sentence else [None] * len(encoded)
    dtype = autocast_dtype(precision)
    device_type = device.split(":")[0]
    for rows in length_batches(lengths, batch_size, batch_tokens):  # (B,) row indices each
        width = int(lengths[rows].max())
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, T)
        casing_ids = None if casing is None else np.zeros((len(rows), width), dtype=np.int64)  # (B, T)
        for index, row in enumerate(rows):
            input_ids[index, : lengths[row]] = encoded[row]
            mask[index, : lengths[row]] = 1
            if casing_ids is not None:
                casing_ids[index, : lengths[row]] = casing[row]
        casing_tensor = None if casing_ids is None else torch.from_numpy(casing_ids).to(device)
        reduced = dtype is not None and width > FP32_MAX_TOKENS  # short texts stay fp32, see FP32_MAX_TOKENS
        with torch.autocast(device_type=device_type, dtype=dtype) if reduced else contextlib.nullcontext():
            features = model(
                torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device), casing_ids=casing_tensor
            )
            # Heads read the features in the precision that computed them: inside the same autocast region.
            head_logits = {name: model.head_logits(features, name).float() for name in heads}  # (B, C) or (B, T, C)
        out[rows] = stored_embedding(model, features).cpu().numpy()  # (B, D)
        for name, logits in head_logits.items():
            if isinstance(scores[name], np.ndarray):
                scores[name][rows] = torch.softmax(logits, dim=-1).cpu().numpy()
            else:
                log_probs = torch.log_softmax(logits, dim=-1).cpu().numpy()  # (B, T, C)
                for index, row in enumerate(rows):
                    scores[name][row] = log_probs[index, : lengths[row]]  # (T_i, C)
    return out, scores


def embed_texts(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    batch_size: int,
    device: str,
    precision: str = "fp32",
    batch_tokens: int | None = None,
) -> tuple[np.ndarray, int]:
    """(N, D) embeddings of in-memory texts, in order, and how many were truncated."""
    encoded, truncated = encode_texts(tokenizer, list(texts), model.config.max_seq_length)
    pad_id = tokenizer.pad_token_id or 0
    embeddings = embed_token_ids(
        model,
        encoded,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        device=device,
        precision=precision,
        pad_id=pad_id,
    )
    return embeddings, truncated  # (N, D), count


def decide_precision(
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    sample_texts: list[str],
    *,
    device: str,
    requested: RequestedPrecision | str,
    batch_size: int,
    batch_tokens: int | None = None,
) -> tuple[Precision, TierCheck | None]:
    """Decide the embedding precision once. `auto`: bf16 where the device computes it natively (fp16 on GPUs without
    bf16) if, on `sample_texts`, it passes the tier's gates against fp32 (`mtl_model.embed.tiers`); else fp32.
    Returns the precision and the check (None when nothing was compared)."""
    if requested != "auto":
        return cast(Precision, requested), None
    candidate: Precision
    if device.startswith("cuda"):
        candidate = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif cpu_has_bf16():
        candidate = "bf16"
    else:
        return "fp32", None
    if not sample_texts:
        return "fp32", None
    batching = {"batch_size": batch_size, "batch_tokens": batch_tokens, "device": device}
    reference, _ = embed_texts(model, tokenizer, sample_texts, precision="fp32", **batching)
    reduced, _ = embed_texts(model, tokenizer, sample_texts, precision=candidate, **batching)
    check = check_tier(candidate, reference, reduced)
    return (candidate if check.passed else "fp32"), check


# Per-process state, on purpose: a worker that runs many shards loads the model once (keyed by folder and
# content fingerprint, so a retrained model is reloaded), and its shard threads take turns on it.
_MODELS: dict[tuple[str, str, str], tuple[MultiTaskModel, PreTrainedTokenizerBase]] = {}
_MODELS_LOCK = threading.Lock()


def load_model_once(model_dir: str, fingerprint: str, device: str) -> tuple[MultiTaskModel, PreTrainedTokenizerBase]:
    """One loaded model per process (and fingerprint), shared by the planning step and the shards a worker runs."""
    key = (model_dir, fingerprint, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS.clear()
            model, tokenizer = MultiTaskModel.load(model_dir, map_location=device)
            _MODELS[key] = (model, cast("PreTrainedTokenizerBase", tokenizer))
        return _MODELS[key]
