"""The shared encoder: any Hugging Face encoder model behind the features-dict contract."""

from __future__ import annotations

import torch
from torch import nn


class Transformer(nn.Module):
    """Wraps a transformers `PreTrainedModel`; adds `token_embeddings` (B, T, H)."""

    def __init__(self, auto_model: nn.Module) -> None:
        super().__init__()
        self.auto_model = auto_model

    @property
    def hidden_size(self) -> int:
        return int(self.auto_model.config.hidden_size)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        if input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ")
        output = self.auto_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return {**features, "token_embeddings": output.last_hidden_state}  # (B, T, H)
