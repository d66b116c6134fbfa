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

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups bottom → top: everything outside the layer stack (embeddings), then each layer.

        The layer stack is the encoder's largest `nn.ModuleList` (BERT's `encoder.layer`, DistilBERT's
        `transformer.layer`, …), found by size so any Hugging Face encoder works.
        """
        stacks = [m for m in self.auto_model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
        if not stacks:
            raise ValueError(
                f"{type(self.auto_model).__name__} has no layer stack (nn.ModuleList) to address by layer"
            )
        stack = max(stacks, key=lambda m: sum(p.numel() for p in m.parameters()))
        in_stack = {id(p) for p in stack.parameters()}
        rest = [p for p in self.auto_model.parameters() if id(p) not in in_stack]
        return [rest, *[list(layer.parameters()) for layer in stack]]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        if input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ"
            )
        output = self.auto_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return {**features, "token_embeddings": output.last_hidden_state}  # (B, T, H)
