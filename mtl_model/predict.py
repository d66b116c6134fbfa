"""Predictions for raw text, in the spirit of `transformers.pipeline`: every head from one forward pass.

    model, tokenizer = MultiTaskModel.load("runs/default/model")
    predict_texts(model, tokenizer, ["Apple opened a store in Paris."])
    # [{"topic": {"label": "Sci/Tech", "score": 0.91}, "sentiment": {...},
    #   "ner": [{"start": 0, "end": 5, "label": "ORG", "text": "Apple", "score": 0.88}, {...Paris...}],
    #   "embedding": [...]}]

Sentence heads give the label's *name* (`label_names`) and its probability. Token heads give entities with
character offsets into the original text (`text[start:end] == entity["text"]`), decoded with the model's own
`token_decoding` (BIO-valid under `bio_viterbi`). Words are split by the backbone tokenizer's own pre-tokenizer
(whitespace and punctuation for BERT-style tokenizers), not by CoNLL's gold tokenisation; a word is scored at its
first sub-word, as in training. Text beyond `max_seq_length` tokens is cut: its words get no entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtl_model.casing import encoding_casing_ids, word_spans
from mtl_model.decoding import decode
from mtl_model.error_analysis import entities
from mtl_model.model import MultiTaskModel


def first_sub_words(word_ids: list[int | None]) -> list[tuple[int, int]]:
    """(word id, position of its first sub-word) in word order."""
    seen, starts = set(), []
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            starts.append((word, position))
    return starts


def entity_spans(
    text: str, log_probs: np.ndarray, word_ids: list[int | None], offsets: list[tuple[int, int]], labels: list[str],
    decoding: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Entities of one text from its token log-probabilities (T, C)."""
    starts = first_sub_words(word_ids)
    if not starts:
        return []
    word_scores = log_probs[[position for _, position in starts]]  # (W, C)
    tags = decode(word_scores, labels, decoding)  # (W,)
    spans = word_spans(word_ids, offsets)
    found = []
    for kind, first, last in entities([labels[t] for t in tags]):
        start, end = spans[starts[first][0]][0], spans[starts[last][0]][1]
        score = float(np.exp(word_scores[np.arange(first, last + 1), tags[first : last + 1]]).mean())
        found.append({"start": start, "end": end, "label": kind, "text": text[start:end], "score": score})
    return found


@torch.inference_mode()
def predict_batch(model: MultiTaskModel, tokenizer, texts: Sequence[str], *, device: str = "cpu") -> list[dict]:
    """Every head's prediction and the embedding for a batch of texts (one encoder pass)."""
    model.eval()
    encoding = tokenizer(
        list(texts), truncation=True, max_length=model.config.max_seq_length, padding=True,
        return_offsets_mapping=True, return_tensors="pt",
    )  # fmt: skip
    casing = torch.tensor(encoding_casing_ids(texts, encoding)).to(device) if model.reads_casing else None  # (B, T)
    features = model(encoding["input_ids"].to(device), encoding["attention_mask"].to(device), casing_ids=casing)
    results: list[dict[str, Any]] = [{} for _ in texts]
    for name, spec in model.head_specs.items():
        logits = model.head_logits(features, name).float()  # (B, C) or (B, T, C)
        if spec.kind == "sentence":
            probs = torch.softmax(logits, dim=-1).cpu().numpy()  # (B, C)
            names = spec.names()
            for row, result in enumerate(results):
                best = int(probs[row].argmax())
                result[name] = {"label": names[best], "score": float(probs[row, best])}
            continue
        log_probs = torch.log_softmax(logits, dim=-1).cpu().numpy()  # (B, T, C)
        for row, (text, result) in enumerate(zip(texts, results)):
            offsets = [tuple(pair) for pair in encoding["offset_mapping"][row].tolist()]
            result[name] = entity_spans(
                text, log_probs[row], encoding.word_ids(row), offsets, spec.labels, model.config.token_decoding
            )
    embeddings = features["sentence_embedding"].float().cpu().numpy()  # (B, D)
    for result, embedding in zip(results, embeddings):
        result["embedding"] = embedding.tolist()
    return results


def predict_texts(
    model: MultiTaskModel, tokenizer, texts: Sequence[str], *, batch_size: int = 32, device: str = "cpu"
) -> list[dict]:
    """`predict_batch` over any number of texts, in input order."""
    results: list[dict] = []
    for start in range(0, len(texts), batch_size):
        results.extend(predict_batch(model, tokenizer, texts[start : start + batch_size], device=device))
    return results
