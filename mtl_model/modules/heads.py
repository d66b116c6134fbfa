"""Task heads: a linear classifier on the sentence vector, or on every token state."""

from __future__ import annotations

import torch
from torch import nn


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
    """(B, T, H) token states → (B, T, C) logits."""

    def __init__(self, in_features: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, num_labels)

    def forward(self, token_states: torch.Tensor) -> torch.Tensor:
        if token_states.dim() != 3:
            raise ValueError(f"TokenHead expects (B, T, H), got {tuple(token_states.shape)}")
        return self.classifier(self.dropout(token_states))  # (B, T, C)
