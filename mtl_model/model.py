"""The multi-task sentence transformer: shared encoder → pooling → projection → normalisation, plus heads.

Saved layout (everything needed to reload travels with the weights; loading never reads the data):

    model/
      mtl_model.json       architecture, max_seq_length, tasks with their label lists
      encoder/             Hugging Face folder: config.json, model.safetensors, tokenizer files
      heads.safetensors    projection and task heads
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from torch import nn

from mtl_model.io import atomic_dir
from mtl_model.modules import Dense, Normalize, Pooling, SentenceHead, TokenHead, Transformer

FORMAT_VERSION = 1
CONFIG_NAME = "mtl_model.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"


class HeadSpec(BaseModel):
    """One task head: its kind and its label list (index = class id)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """Task name."""
    kind: Literal["sentence", "token"]
    """Sentence heads read the sentence vector; token heads read every token state."""
    labels: list[str]
    """Label names in class-id order."""


class MultiTaskModelConfig(BaseModel):
    """What is saved next to the weights to rebuild the model exactly."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    format_version: int = FORMAT_VERSION
    """Version of this saved layout."""
    backbone: str
    """The backbone the encoder started from (for provenance)."""
    pooling: Literal["mean", "cls", "max"] = "mean"
    """Pooling mode."""
    projection_dim: int | None = 256
    """Size of the Linear+Tanh projection, or None for none."""
    normalize: bool = True
    """Whether sentence embeddings are L2-normalised."""
    head_dropout: float = 0.1
    """Dropout before heads during training."""
    max_seq_length: int = 128
    """Token limit the model was trained with; inputs are truncated to it."""
    heads: list[HeadSpec]
    """Task heads in a fixed order."""


class MultiTaskModel(nn.Module):
    """Shared encoder with one head per task; `forward` returns a dict of tensors."""

    def __init__(self, config: MultiTaskModelConfig, auto_model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = Transformer(auto_model)
        hidden = self.encoder.hidden_size
        max_positions = getattr(auto_model.config, "max_position_embeddings", None)
        if max_positions is not None and config.max_seq_length > max_positions:
            raise ValueError(f"max_seq_length {config.max_seq_length} exceeds the encoder's {max_positions} positions")
        self.pooling = Pooling(config.pooling)
        self.dense = Dense(hidden, config.projection_dim) if config.projection_dim else None
        self.normalize = Normalize() if config.normalize else None
        self.embedding_dim = config.projection_dim or hidden
        heads: dict[str, nn.Module] = {}
        for head in config.heads:
            if head.kind == "sentence":
                heads[head.name] = SentenceHead(self.embedding_dim, len(head.labels), config.head_dropout)
            else:
                heads[head.name] = TokenHead(hidden, len(head.labels), config.head_dropout)
        self.heads = nn.ModuleDict(heads)
        self.head_specs = {head.name: head for head in config.heads}

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task: str | None = None
    ) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask: (B, T). Adds `logits` ((B, C) or (B, T, C)) when `task` is given."""
        features = self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})  # token_embeddings (B, T, H)
        features = self.pooling(features)  # sentence_embedding (B, H)
        if self.dense is not None:
            features = self.dense(features)  # (B, D)
        sentence_features = features["sentence_embedding"]  # heads read the un-normalised vector
        if self.normalize is not None:
            features = self.normalize(features)
        out = {**features, "sentence_features": sentence_features}
        if task is not None:
            out["logits"] = self.head_logits(out, task)
        return out

    def head_logits(self, features: dict[str, torch.Tensor], head: str) -> torch.Tensor:
        """One head's logits from `forward`'s features: (B, C) for sentence heads, (B, T, C) for token heads."""
        spec = self.head_specs.get(head)
        if spec is None:
            raise KeyError(f"no head named {head!r}; heads: {sorted(self.head_specs)}")
        source = features["sentence_features"] if spec.kind == "sentence" else features["token_embeddings"]
        return self.heads[head](source)

    # ------------------------------------------------------------------------------- persistence

    def save(self, directory: str | Path, tokenizer) -> None:
        """Write config, encoder (+ tokenizer) and heads atomically to `directory`."""
        with atomic_dir(directory) as temp:
            encoder_dir = temp / ENCODER_DIR
            self.encoder.auto_model.save_pretrained(encoder_dir, safe_serialization=True)
            tokenizer.save_pretrained(encoder_dir)
            head_state = {
                name: tensor.detach().to("cpu", torch.float32).contiguous()
                for name, tensor in self.state_dict().items()
                if not name.startswith("encoder.")
            }
            save_file(head_state, str(temp / HEADS_NAME))
            (temp / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> tuple[MultiTaskModel, object]:
        """Rebuild a saved model and its tokenizer; reads only `directory`."""
        from transformers import AutoTokenizer

        from mtl_model.backbone import load_auto_model

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved multi-task model (no {CONFIG_NAME})")
        config = MultiTaskModelConfig.model_validate(json.loads(config_path.read_text()))
        if config.format_version != FORMAT_VERSION:
            raise ValueError(f"{config_path}: format_version {config.format_version}, this code reads {FORMAT_VERSION}")
        auto_model = load_auto_model(directory / ENCODER_DIR)
        model = cls(config, auto_model)
        head_state = load_file(str(directory / HEADS_NAME), device=map_location)
        missing, unexpected = model.load_state_dict(head_state, strict=False)
        missing = [name for name in missing if not name.startswith("encoder.")]
        if missing or unexpected:
            raise ValueError(f"{directory / HEADS_NAME}: missing {missing}, unexpected {unexpected}")
        tokenizer = AutoTokenizer.from_pretrained(directory / ENCODER_DIR)
        return model.to(map_location).eval(), tokenizer


def build_model(
    *,
    backbone: str,
    heads: list[HeadSpec],
    pooling: str,
    projection_dim: int | None,
    normalize: bool,
    head_dropout: float,
    max_seq_length: int,
) -> MultiTaskModel:
    """A new model from a pretrained backbone, with freshly initialised projection and heads."""
    from mtl_model.backbone import load_encoder

    config = MultiTaskModelConfig(
        backbone=backbone,
        pooling=pooling,
        projection_dim=projection_dim,
        normalize=normalize,
        head_dropout=head_dropout,
        max_seq_length=max_seq_length,
        heads=heads,
    )
    return MultiTaskModel(config, load_encoder(backbone))
