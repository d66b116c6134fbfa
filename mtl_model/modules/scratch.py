"""A transformer encoder trained from scratch, behind the same features-dict contract as `Transformer`.

Built from PyTorch's own `nn.TransformerEncoderLayer`, so the only code here is the embedding, the
position table, the padding mask and (de)serialisation. Saved as `config.json` + `model.safetensors`
with `model_type: mtl_scratch`, so a loader can tell it apart from a Hugging Face encoder folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mtl_model.base import StrictModel

MODEL_TYPE = "mtl_scratch"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SCRATCH_LORA_TARGETS = ("linear1", "linear2")  # nn.TransformerEncoderLayer's feed-forward Linear layers


class ScratchArchitecture(StrictModel):
    """Shape of a from-scratch encoder as a user configures it (`model.scratch`)."""

    d_model: int = Field(128, ge=1)
    """Width of every token state (the encoder's hidden size)."""
    num_heads: int = Field(8, ge=1)
    """Attention heads per layer; must divide `d_model`."""
    num_layers: int = Field(4, ge=1)
    """Number of stacked encoder layers."""
    ff_dim: int = Field(512, ge=1)
    """Inner width of each layer's feed-forward block."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout on the embeddings, the attention weights and the residual branches."""
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    """`sinusoidal`: the fixed table of Vaswani et al. 2017 (no parameters). `learned`: an embedding per position."""
    norm: Literal["pre", "post"] = "post"
    """`post`: LayerNorm after each residual (the original Transformer). `pre`: LayerNorm before each
    block plus a final LayerNorm after the stack (steadier at depth or with high learning rates)."""
    max_positions: int = Field(512, ge=1)
    """Size of the position table: the longest sequence the encoder accepts."""
    activation: Literal["gelu", "relu"] = "gelu"
    """Activation of the feed-forward block."""

    @model_validator(mode="after")
    def _shapes_fit(self) -> ScratchArchitecture:
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(
                f"positions 'sinusoidal' needs an even d_model (sin/cos pairs), got d_model {self.d_model}"
            )
        return self


class ScratchEncoderConfig(ScratchArchitecture):
    """The architecture plus what the tokenizer decides: `vocab_size` and `pad_token_id` (saved with the weights)."""

    vocab_size: int = Field(ge=1)
    """Rows of the token embedding: the tokenizer's vocabulary size (`len(tokenizer)`)."""
    pad_token_id: int = Field(0, ge=0)
    """Id of the padding token; its embedding row is zero and receives no gradient."""

    @model_validator(mode="after")
    def _pad_in_vocabulary(self) -> ScratchEncoderConfig:
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})")
        return self


def sinusoidal_table(num_positions: int, d_model: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)) (Vaswani et al. 2017, §3.5)."""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    inverse_frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )  # (d/2,)
    angles = position * inverse_frequency  # (P, d/2)
    table = torch.zeros(num_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.to(torch.float32)  # (P, d)


def scratch_parameter_count(config: ScratchEncoderConfig) -> int:
    """Closed-form parameter count (lets a caller size a model before building it)."""
    d, f = config.d_model, config.ff_dim
    embeddings = config.vocab_size * d + (config.max_positions * d if config.positions == "learned" else 0)
    attention = (3 * d * d + 3 * d) + (d * d + d)  # in_proj (Q, K, V) + out_proj
    feed_forward = (d * f + f) + (f * d + d)  # linear1 + linear2
    layer = attention + feed_forward + 2 * (2 * d)  # + norm1, norm2
    final_norm = 2 * d if config.norm == "pre" else 0
    return embeddings + config.num_layers * layer + final_norm


class ScratchEncoder(nn.Module):
    """Token ids → contextual token states; adds `token_embeddings` (B, T, d_model) to the features."""

    def __init__(self, config: ScratchEncoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.token_embedding = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.position_embedding: nn.Embedding | None = None
        if config.positions == "learned":
            self.position_embedding = nn.Embedding(config.max_positions, d)
        else:
            # A buffer, not a parameter (fixed); non-persistent, so it is rebuilt, never saved.
            self.register_buffer("position_table", sinusoidal_table(config.max_positions, d), persistent=False)
        self.embed_scale = math.sqrt(d)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d,
                config.num_heads,
                config.ff_dim,
                config.dropout,
                config.activation,
                batch_first=True,
                norm_first=config.norm == "pre",
            )
            for _ in range(config.num_layers)
        )
        # Pre-norm leaves the residual stream unnormalised; the final LayerNorm puts it on one scale.
        self.final_norm = nn.LayerNorm(d) if config.norm == "pre" else None
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        # Token std d^-0.5, so that after the sqrt(d) scale they have unit std like the sinusoids (as in
        # fairseq); learned positions start small, BERT-style. The layers keep PyTorch's own init.
        nn.init.normal_(self.token_embedding.weight, mean=0.0, std=self.config.d_model**-0.5)
        with torch.no_grad():
            self.token_embedding.weight[self.config.pad_token_id].zero_()
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)

    @property
    def hidden_size(self) -> int:
        return self.config.d_model

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        if input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ"
            )
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, T), got {tuple(input_ids.shape)}")
        _, T = input_ids.shape
        if T > self.config.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_positions {self.config.max_positions}")
        x = self.token_embedding(input_ids) * self.embed_scale  # (B, T, d)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(T, device=input_ids.device))  # (T, d) broadcast
        else:
            x = x + self.position_table[:T]  # (T, d) broadcast
        x = self.dropout(x)
        real = attention_mask != 0  # (B, T)
        # True = ignore this key. A row with no real token would give softmax over nothing (NaN, which then
        # poisons the whole batch's gradient); let such a row attend everywhere instead, its output is unused.
        padding = ~real & real.any(dim=1, keepdim=True)  # (B, T)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)  # (B, T, d)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return {**features, "token_embeddings": x}  # (B, T, d)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom→top: embeddings, then one group per layer (the final LayerNorm joins the top one).

        The unit of the freeze policies (`top:<k>`, gradual unfreezing) and of layer-wise learning rates.
        """
        embeddings = list(self.token_embedding.parameters())
        if self.position_embedding is not None:
            embeddings += list(self.position_embedding.parameters())
        groups = [embeddings] + [list(layer.parameters()) for layer in self.layers]
        if self.final_norm is not None:
            groups[-1] += list(self.final_norm.parameters())
        return groups

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `config.json` and `model.safetensors` into `directory` (created if needed).

        Not atomic by itself: callers write it inside `mtl_model.io.atomic_dir`, as the model's save does.
        """
        from safetensors.torch import save_file

        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        config = {**self.config.model_dump(mode="json"), "model_type": MODEL_TYPE}
        (target / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in self.state_dict().items()}
        save_file(tensors, str(target / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ScratchEncoder:
        """Load a folder written by `save_pretrained` (strict: every weight must match). Returned in eval mode."""
        from safetensors.torch import load_file

        root = Path(directory)
        config_path, weights_path = root / CONFIG_FILE, root / WEIGHTS_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"scratch encoder config not found: {config_path}")
        raw = json.loads(config_path.read_text())
        model_type = raw.pop("model_type", None)
        if model_type != MODEL_TYPE:
            raise ValueError(f"{config_path}: model_type is {model_type!r}, expected {MODEL_TYPE!r}")
        if not weights_path.is_file():
            raise FileNotFoundError(f"scratch encoder weights not found: {weights_path}")
        encoder = cls(ScratchEncoderConfig(**raw))
        encoder.load_state_dict(load_file(str(weights_path)), strict=True)
        return encoder.eval()


def is_scratch_encoder_dir(path: str | Path) -> bool:
    """Whether `path` holds a `ScratchEncoder` (a `config.json` with `model_type: mtl_scratch`)."""
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("model_type") == MODEL_TYPE
