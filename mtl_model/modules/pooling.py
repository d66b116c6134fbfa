"""Token states → one vector per sentence, ignoring padding."""

from __future__ import annotations

import torch
from torch import nn

POOLING_MODES = ("mean", "cls", "max")


class Pooling(nn.Module):
    """Adds `sentence_embedding` (B, H) from `token_embeddings` (B, T, H) and `attention_mask` (B, T)."""

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling mode must be one of {POOLING_MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = features["token_embeddings"]  # (B, T, H)
        mask = features["attention_mask"]  # (B, T)
        if tokens.shape[:2] != mask.shape:
            raise ValueError(
                f"token_embeddings {tuple(tokens.shape)} and attention_mask {tuple(mask.shape)} differ in (B, T)"
            )
        keep = mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
        if self.mode == "cls":
            pooled = tokens[:, 0]
        elif self.mode == "max":
            pooled = tokens.masked_fill(keep == 0, torch.finfo(tokens.dtype).min).amax(dim=1)
        else:
            pooled = (tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)  # (B, H)
        return {**features, "sentence_embedding": pooled}
