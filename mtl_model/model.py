"""The multi-task sentence transformer: shared encoder → pooling → projection → normalisation, plus heads.

Saved layout (everything needed to reload travels with the weights; loading never reads the data):

    model/
      mtl_model.json       architecture, max_seq_length, tasks with their label lists
      encoder/             config.json + model.safetensors + tokenizer files: a Hugging Face folder, or our
                           from-scratch encoder's (`model_type: mtl_scratch`)
      heads.safetensors    projection and task heads
      sentence-transformer/  (optional) the embedding model in the sentence-transformers format:
                           `SentenceTransformer(".../model/sentence-transformer").encode(texts)`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from torch import nn

from mtl_model.decoding import TokenDecoding
from mtl_model.errors import ConfigError
from mtl_model.io import FILES_MANIFEST, atomic_dir, files_manifest_problems, write_files_manifest
from mtl_model.modules import Dense, Normalize, Pooling, SentenceHead, TokenHead, Transformer
from mtl_model.modules.scratch import ScratchArchitecture, ScratchEncoder, ScratchEncoderConfig, is_scratch_encoder_dir

FORMAT_VERSION = 1
CONFIG_NAME = "mtl_model.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"
SENTENCE_TRANSFORMER_DIR = "sentence-transformer"
TAGS_SUFFIX = "_tags"  # a joint task `x` has a sentence head `x` and a token head `x_tags`


class ModelFolderError(ConfigError):
    """A model folder that differs from what was saved there (a file deleted, truncated or changed)."""


def saved_model_problems(directory: str | Path) -> list[str]:
    """Why `directory` is not a complete saved model (empty: it is exactly what `save` wrote)."""
    if not (Path(directory) / CONFIG_NAME).is_file():
        return [f"{Path(directory) / CONFIG_NAME}: missing"]
    return files_manifest_problems(directory)


class HeadSpec(BaseModel):
    """One task head: its kind and its label list (index = class id)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """Task name."""
    kind: Literal["sentence", "token"]
    """Sentence heads read the sentence vector; token heads read every token state."""
    labels: list[str]
    """Labels as they appear in the data, in class-id order."""
    label_names: dict[str, str] | None = None
    """Human-readable names of some or all labels (`TaskSpec.label_names`)."""

    def names(self) -> list[str]:
        """What to show for each class id: its human-readable name, else the label itself."""
        return [(self.label_names or {}).get(label, label) for label in self.labels]


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
    token_decoding: TokenDecoding = "argmax"
    """How token heads' word scores become tags (`mtl_model.decoding`); folders saved before this field decode
    with `argmax`, as they were evaluated."""
    casing_dim: int = 0
    """Size of the word-shape embedding each token head joins to the token states (`mtl_model.casing`); 0: none."""


class MultiTaskModel(nn.Module):
    """Shared encoder with one head per task; `forward` returns a dict of tensors.

    `encoder` is any module with the features-dict contract, `hidden_size` and `layer_groups()`: a
    `Transformer` around a Hugging Face model, or a `ScratchEncoder`.
    """

    def __init__(self, config: MultiTaskModelConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        hidden = self.encoder.hidden_size
        max_positions = encoder_positions(encoder)
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
                heads[head.name] = TokenHead(hidden, len(head.labels), config.head_dropout, config.casing_dim)
        self.heads = nn.ModuleDict(heads)
        self.head_specs = {head.name: head for head in config.heads}

    @property
    def reads_casing(self) -> bool:
        """Whether token heads need `casing_ids` (`mtl_model.casing`) beside the token ids."""
        return self.config.casing_dim > 0 and any(spec.kind == "token" for spec in self.config.heads)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        task: str | None = None,
        casing_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, casing_ids (token heads with `casing_dim` only): (B, T). Adds `logits`
        ((B, C) or (B, T, C)) when `task` is given."""
        features = self.encoder(
            {"input_ids": input_ids, "attention_mask": attention_mask}
        )  # token_embeddings (B, T, H)
        features = self.pooling(features)  # sentence_embedding (B, H)
        if self.dense is not None:
            features = self.dense(features)  # (B, D)
        sentence_features = features["sentence_embedding"]  # heads read the un-normalised vector
        if self.normalize is not None:
            features = self.normalize(features)
        out = {**features, "sentence_features": sentence_features}
        if casing_ids is not None:
            out["casing_ids"] = casing_ids
        if task is not None:
            out["logits"] = self.head_logits(out, task)
        return out

    def head_logits(self, features: dict[str, torch.Tensor], head: str) -> torch.Tensor:
        """One head's logits from `forward`'s features: (B, C) for sentence heads, (B, T, C) for token heads."""
        spec = self.head_specs.get(head)
        if spec is None:
            raise KeyError(f"no head named {head!r}; heads: {sorted(self.head_specs)}")
        if spec.kind == "sentence":
            return self.heads[head](features["sentence_features"])
        return self.heads[head](features["token_embeddings"], features.get("casing_ids"))

    # ------------------------------------------------------------------------------- persistence

    def save(self, directory: str | Path, tokenizer, *, sentence_transformer: bool = False) -> None:
        """Write config, encoder (+ tokenizer) and heads atomically to `directory`; with `sentence_transformer`,
        also the embedding part in the sentence-transformers format (Hugging Face encoders only)."""
        with atomic_dir(directory) as temp:
            encoder_dir = temp / ENCODER_DIR
            if isinstance(self.encoder, ScratchEncoder):
                self.encoder.save_pretrained(encoder_dir)
            else:
                self.encoder.auto_model.save_pretrained(encoder_dir, safe_serialization=True)
            tokenizer.save_pretrained(encoder_dir)
            head_state = {
                name: tensor.detach().to("cpu", torch.float32).contiguous()
                for name, tensor in self.state_dict().items()
                if not name.startswith("encoder.")
            }
            save_file(head_state, str(temp / HEADS_NAME))
            (temp / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2) + "\n")
            if sentence_transformer and not isinstance(self.encoder, ScratchEncoder):
                self.export_sentence_transformer(encoder_dir, temp / SENTENCE_TRANSFORMER_DIR)
            write_files_manifest(temp)  # last: what a complete model folder holds (`saved_model_problems`)

    def export_sentence_transformer(self, encoder_dir: Path, target: Path) -> None:
        """Transformer → Pooling → Dense (Linear + Tanh) → Normalize as sentence-transformers modules, built with
        that library's own classes so its `encode` gives the embeddings this model gives."""
        from sentence_transformers import SentenceTransformer, models

        modules: list[nn.Module] = [
            models.Transformer(str(encoder_dir), max_seq_length=self.config.max_seq_length),
            models.Pooling(self.encoder.hidden_size, pooling_mode=self.config.pooling),
        ]
        if self.dense is not None:
            linear = self.dense.linear
            modules.append(
                models.Dense(
                    linear.in_features,
                    linear.out_features,
                    activation_function=nn.Tanh(),
                    init_weight=linear.weight.detach().cpu().float().clone(),
                    init_bias=linear.bias.detach().cpu().float().clone(),
                )
            )
        if self.normalize is not None:
            modules.append(models.Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(target))

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> tuple[MultiTaskModel, object]:
        """Rebuild a saved model and its tokenizer; reads only `directory`."""
        from transformers import AutoTokenizer

        from mtl_model.backbone import load_auto_model

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved multi-task model (no {CONFIG_NAME})")
        if (directory / FILES_MANIFEST).is_file() and (problems := files_manifest_problems(directory)):
            raise ModelFolderError(f"{directory} is not the model that was saved there: " + "; ".join(problems))
        try:
            config = MultiTaskModelConfig.model_validate(json.loads(config_path.read_text()))
        except ValueError as exc:
            raise ModelFolderError(f"{config_path}: not a model config this code can read: {exc}") from exc
        if config.format_version != FORMAT_VERSION:
            raise ModelFolderError(
                f"{config_path}: format_version {config.format_version}, this code reads {FORMAT_VERSION}"
            )
        encoder_dir = directory / ENCODER_DIR
        if is_scratch_encoder_dir(encoder_dir):
            encoder: nn.Module = ScratchEncoder.from_pretrained(encoder_dir)
        else:
            encoder = Transformer(load_auto_model(encoder_dir))
        model = cls(config, encoder)
        try:
            head_state = load_file(str(directory / HEADS_NAME), device=map_location)
            missing, unexpected = model.load_state_dict(head_state, strict=False)
        except (OSError, RuntimeError, ValueError) as exc:  # missing, truncated, or shapes that differ from the config
            raise ModelFolderError(f"{directory / HEADS_NAME}: cannot be loaded into this model: {exc}") from exc
        missing = [name for name in missing if not name.startswith("encoder.")]
        if missing or unexpected:
            raise ModelFolderError(
                f"{directory / HEADS_NAME}: does not match {CONFIG_NAME}: missing {missing}, unexpected {unexpected}"
            )
        tokenizer = AutoTokenizer.from_pretrained(directory / ENCODER_DIR)
        model.tokenizer = tokenizer  # travels with the weights: `model.predict(texts)` needs nothing else
        return model.to(map_location).eval(), tokenizer

    def predict(self, texts: list[str], *, batch_size: int = 32) -> list[dict]:
        """Per text: each sentence head's label name and probability, each token head's entities (character
        offsets, label, text, score), and the embedding (`mtl_model.predict`). Needs a model from `load`."""
        from mtl_model.predict import predict_texts

        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("predict needs the tokenizer: use a model from MultiTaskModel.load(folder)")
        device = next(self.parameters()).device.type
        return predict_texts(self, tokenizer, texts, batch_size=batch_size, device=device)


def encoder_positions(encoder: nn.Module) -> int | None:
    """The longest sequence the encoder's position table covers (None if it does not say)."""
    if isinstance(encoder, ScratchEncoder):
        return encoder.config.max_positions
    return getattr(encoder.auto_model.config, "max_position_embeddings", None)


def build_model(
    *,
    backbone: str,
    heads: list[HeadSpec],
    pooling: str,
    projection_dim: int | None,
    normalize: bool,
    head_dropout: float,
    max_seq_length: int,
    scratch: ScratchArchitecture | None = None,
    tokenizer=None,
    token_decoding: TokenDecoding = "argmax",
    casing_dim: int = 0,
) -> MultiTaskModel:
    """A new model with freshly initialised projection and heads: on a pretrained backbone, or with
    `backbone="scratch"` a `ScratchEncoder` shaped by `scratch` and sized by `tokenizer`'s vocabulary.

    When `backbone` is a model this pipeline saved, its encoder is reused and so are its projection and
    every head whose name, kind and labels match (so `freeze_policy: all` evaluates that trained model
    as it is, and other policies continue its training); other heads start fresh.
    """
    from mtl_model.backbone import SCRATCH_BACKBONE, is_saved_multitask_model, load_encoder

    config = MultiTaskModelConfig(
        backbone=backbone,
        pooling=pooling,
        projection_dim=projection_dim,
        normalize=normalize,
        head_dropout=head_dropout,
        max_seq_length=max_seq_length,
        heads=heads,
        token_decoding=token_decoding,
        casing_dim=casing_dim,
    )
    if backbone == SCRATCH_BACKBONE:
        if scratch is None or tokenizer is None:
            raise ValueError("a scratch encoder needs its architecture (`scratch`) and the built tokenizer")
        encoder_config = ScratchEncoderConfig(
            **scratch.model_dump(),
            vocab_size=len(tokenizer),
            pad_token_id=int(tokenizer.pad_token_id or 0),
        )
        return MultiTaskModel(config, ScratchEncoder(encoder_config))
    if is_saved_multitask_model(backbone):
        saved, _ = MultiTaskModel.load(backbone)
        model = MultiTaskModel(config, saved.encoder)
        reuse_trained_weights(saved, model)
        return model
    return MultiTaskModel(config, Transformer(load_encoder(backbone)))


def reuse_trained_weights(saved: MultiTaskModel, model: MultiTaskModel) -> list[str]:
    """Copy the saved projection and matching heads into `model`; returns the reused module names."""
    reused = []
    if (
        saved.dense is not None
        and model.dense is not None
        and saved.config.projection_dim == model.config.projection_dim
    ):
        model.dense.load_state_dict(saved.dense.state_dict())
        reused.append("dense")
    for name, spec in model.head_specs.items():
        if saved.head_specs.get(name) != spec:
            continue
        source, target = saved.heads[name].state_dict(), model.heads[name].state_dict()
        if all(k in source and source[k].shape == target[k].shape for k in target):  # same width and casing too
            model.heads[name].load_state_dict(source)
            reused.append(f"heads.{name}")
    return reused
