"""Freeze policies: which parameters of the multi-task model train.

Frozen parameters get `requires_grad=False` (so no gradients and no optimizer state) and frozen
modules are put in eval mode during training (dropout off), via `frozen_modules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from mtl_model.model import MultiTaskModel

VALID_POLICIES = ("none", "backbone", "all", "head:<task>")


@dataclass(frozen=True)
class FreezePolicy:
    """Parsed form of a `--freeze-policy` string."""

    freeze_encoder: bool = False
    freeze_everything: bool = False
    frozen_heads: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trains_nothing(self) -> bool:
        return self.freeze_everything


def parse_freeze_policy(text: str) -> FreezePolicy:
    """Parse `none`, `backbone`, `all` or `head:<task>[,head:<task>...]`; raise listing the valid ones."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"freeze policy is empty; valid policies: {', '.join(VALID_POLICIES)}")
    if len(parts) == 1 and parts[0] in ("none", "backbone", "all"):
        return FreezePolicy(freeze_encoder=parts[0] in ("backbone", "all"), freeze_everything=parts[0] == "all")
    heads = []
    for part in parts:
        if not part.startswith("head:") or not part[len("head:"):]:
            raise ValueError(
                f"unknown freeze policy {text!r}; valid policies: {', '.join(VALID_POLICIES)} "
                "(several head:<task> may be joined with commas)"
            )
        heads.append(part[len("head:"):])
    return FreezePolicy(frozen_heads=tuple(heads))


def frozen_modules(model: MultiTaskModel, policy: FreezePolicy) -> list[nn.Module]:
    """The modules the policy freezes, so training can keep them in eval mode."""
    if policy.freeze_everything:
        return [model]
    modules: list[nn.Module] = []
    if policy.freeze_encoder:
        modules.append(model.encoder)
    modules.extend(model.heads[name] for name in policy.frozen_heads)
    return modules


def apply_freeze_policy(model: MultiTaskModel, policy: FreezePolicy) -> tuple[int, int]:
    """Set `requires_grad` per the policy; return (trainable, total) parameter counts."""
    unknown = sorted(set(policy.frozen_heads) - set(model.heads.keys()))
    if unknown:
        raise ValueError(f"freeze policy names head(s) {unknown}; the model has {sorted(model.heads.keys())}")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    for module in frozen_modules(model, policy):
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return count_parameters(model)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
