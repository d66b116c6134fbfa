"""Optional projection of the pooled embedding (Linear + Tanh), e.g. 384 → 256."""

from __future__ import annotations

import torch
from torch import nn


class Dense(nn.Module):
    """Replaces `sentence_embedding` (B, H) with tanh(W x + b) (B, D)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.activation = nn.Tanh()

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embedding = features["sentence_embedding"]  # (B, H)
        if embedding.shape[-1] != self.linear.in_features:
            raise ValueError(
                f"sentence_embedding {tuple(embedding.shape)} does not fit Dense input ({self.linear.in_features})"
            )
        return {**features, "sentence_embedding": self.activation(self.linear(embedding))}  # (B, D)
