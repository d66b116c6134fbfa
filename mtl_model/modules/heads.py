"""Task heads: a linear classifier on the sentence vector, or on every token state."""

from __future__ import annotations

import torch
from torch import nn

from mtl_model.casing import NUM_SHAPES


class SentenceHead(nn.Module):
    """(B, D) sentence features → (B, C) logits."""

    def __init__(self, in_features: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, num_labels)

    def forward(self, sentence_features: torch.Tensor) -> torch.Tensor:
        if sentence_features.dim() != 2:
            raise ValueError(f"SentenceHead expects (B, D), got {tuple(sentence_features.shape)}")
        return self.classifier(self.dropout(sentence_features))  # (B, C)


class TokenHead(nn.Module):
    """(B, T, H) token states → (B, T, C) logits; with `casing_dim`, each token's word shape (`mtl_model.casing`)
    is embedded (B, T, K) and joined to its state first."""

    def __init__(self, in_features: int, num_labels: int, dropout: float = 0.1, casing_dim: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.casing = nn.Embedding(NUM_SHAPES, casing_dim) if casing_dim else None
        self.classifier = nn.Linear(in_features + casing_dim, num_labels)

    def forward(self, token_states: torch.Tensor, casing_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_states.dim() != 3:
            raise ValueError(f"TokenHead expects (B, T, H), got {tuple(token_states.shape)}")
        if self.casing is not None:
            if casing_ids is None:
                raise ValueError("this token head reads word casing: pass casing_ids (B, T), see mtl_model.casing")
            if casing_ids.shape != token_states.shape[:2]:
                raise ValueError(
                    f"casing_ids {tuple(casing_ids.shape)} do not match token states {tuple(token_states.shape)}"
                )
            casing = self.casing(casing_ids).to(token_states.dtype)  # (B, T, K)
            token_states = torch.cat([token_states, casing], dim=-1)  # (B, T, H + K)
        return self.classifier(self.dropout(token_states))  # (B, T, C)
