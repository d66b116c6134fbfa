"""LoRA adapters on the encoder (the `peft` library), merged back into plain weights before saving.

Adapters are injected in place (`peft.inject_adapter_in_model`), so the encoder keeps its own class,
forward contract and `layer_groups()`. `merge_lora_adapters` folds B·A·(alpha/r) into each adapted
weight and puts the original layer back: the saved model is an ordinary encoder and consumers need
no `peft`.
"""

from __future__ import annotations

from torch import nn

from mtl_model.errors import ConfigError


def _linear_names(module: nn.Module) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name, child in module.named_modules() if isinstance(child, nn.Linear)})


def add_lora_adapters(
    encoder: nn.Module, *, rank: int, alpha: float, dropout: float, target_modules: list[str] | None
) -> int:
    """Inject LoRA adapters into `encoder`'s matching layers; returns how many layers were adapted.

    `target_modules=None` lets peft pick its default for the architecture (`encoder.config.model_type`)."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    targets = list(target_modules) if target_modules else None
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    try:
        inject_adapter_in_model(config, encoder)
    except ValueError as exc:
        raise ConfigError(
            f"train.lora.target_modules {target_modules} match no layer of the encoder ({exc}); "
            f"its linear layers are named {_linear_names(encoder)}"
        ) from exc
    adapted = sum(isinstance(module, LoraLayer) for module in encoder.modules())
    if adapted == 0:
        raise ConfigError(
            f"train.lora.target_modules {target_modules} match no layer; linear layers: {_linear_names(encoder)}"
        )
    return adapted


def has_lora_adapters(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(child, LoraLayer) for child in module.modules())


def merge_lora_adapters(encoder: nn.Module) -> int:
    """Fold every adapter into its base weight and restore the plain layer; returns how many were merged."""
    from peft.tuners.lora import LoraLayer

    replaced = 0
    for name, module in list(encoder.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        module.merge(safe_merge=True)  # raises if the merged weight has NaN/inf
        parent_name, _, child_name = name.rpartition(".")
        parent = encoder.get_submodule(parent_name) if parent_name else encoder
        setattr(parent, child_name, module.get_base_layer())
        replaced += 1
    if hasattr(encoder, "peft_config"):
        del encoder.peft_config  # left by inject_adapter_in_model; the merged encoder is plain again
    return replaced
