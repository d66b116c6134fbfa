"""L2 normalisation, so cosine similarity is a dot product for consumers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """Replaces `sentence_embedding` (B, D) with its unit-length version."""

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**features, "sentence_embedding": F.normalize(features["sentence_embedding"], p=2, dim=-1)}
