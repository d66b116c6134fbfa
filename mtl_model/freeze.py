"""Freeze policies: which parameters of the multi-task model train.

Frozen parameters get `requires_grad=False`, so they get no gradients and (because AdamW skips
parameters without a gradient, and static policies leave them out of the optimizer) no optimizer
state. Any module whose parameters are all frozen runs in eval mode during training (dropout off),
see `set_train_mode`.

Encoder layers are addressed through `encoder.layer_groups()`: parameter groups from the bottom
(embeddings) to the top layer, covering every encoder parameter once. `top:<k>`, gradual unfreezing
and layer-wise learning rates all read that one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

    from mtl_model.model import MultiTaskModel

# The freeze-policy grammar, written once: the parser below and the regex that flow parameters and configs are
# validated with (`mtl_model.config.FreezePolicyText`) both come from these names; a test checks they agree.
WHOLE_MODEL_POLICIES = ("none", "all", "backbone", "gradual", "lora")  # policies that take no argument
TOP_PREFIX, HEAD_PREFIX = "top:", "head:"
VALID_POLICIES = (*WHOLE_MODEL_POLICIES[:3], f"{HEAD_PREFIX}<task>", f"{TOP_PREFIX}<k>", *WHOLE_MODEL_POLICIES[3:])
_HEAD = HEAD_PREFIX + r"[^,|\s]+"
POLICY_PATTERN = f"({'|'.join(WHOLE_MODEL_POLICIES)}|{TOP_PREFIX}[0-9]+|{_HEAD}(,{_HEAD})*)"
"""A regex matching exactly the policy strings `parse_freeze_policy` accepts (written without spaces)."""
PolicyKind = Literal["none", "all", "backbone", "heads", "top", "gradual", "lora"]


@dataclass(frozen=True)
class FreezePolicy:
    """Parsed form of a `--freeze-policy` string."""

    kind: PolicyKind = "none"
    frozen_heads: tuple[str, ...] = field(default_factory=tuple)
    top_layers: int = 0

    @property
    def trains_nothing(self) -> bool:
        return self.kind == "all"


def _invalid(text: str, why: str = "unknown freeze policy") -> ValueError:
    return ValueError(
        f"{why} {text!r}; valid policies: {', '.join(VALID_POLICIES)} (several head:<task> may be joined with commas)"
    )


def parse_freeze_policy(text: str) -> FreezePolicy:
    """Parse a policy string; an unknown or malformed one raises, listing the valid ones."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise _invalid(text, "empty freeze policy")
    if len(parts) == 1 and parts[0] in WHOLE_MODEL_POLICIES:
        return FreezePolicy(kind=parts[0])  # type: ignore[arg-type]
    if len(parts) == 1 and parts[0].startswith(TOP_PREFIX):
        value = parts[0][len(TOP_PREFIX) :]
        if not value.isdigit():
            raise _invalid(text, "top:<k> needs a whole number of layers, got")
        return FreezePolicy(kind="top", top_layers=int(value))
    heads = []
    for part in parts:
        if not part.startswith(HEAD_PREFIX) or not part[len(HEAD_PREFIX) :]:
            raise _invalid(text)
        heads.append(part[len(HEAD_PREFIX) :])
    return FreezePolicy(kind="heads", frozen_heads=tuple(heads))


def policy_slug(text: str) -> str:
    """A folder name for a policy string (`head:ner` → `head-ner`)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text.replace(" ", "")).strip("-") or "policy"


def encoder_layer_groups(model: MultiTaskModel) -> list[list[nn.Parameter]]:
    """The encoder's parameter groups, bottom (embeddings) to top layer."""
    return model.encoder.layer_groups()


def check_policy_fits(model: MultiTaskModel, policy: FreezePolicy) -> None:
    """Errors that depend on the model: unknown heads, more top layers than the encoder has."""
    unknown = sorted(set(policy.frozen_heads) - set(model.heads.keys()))
    if unknown:
        raise ValueError(f"freeze policy names head(s) {unknown}; the model has {sorted(model.heads.keys())}")
    layers = len(encoder_layer_groups(model)) - 1
    if policy.kind == "top" and policy.top_layers > layers:
        raise ValueError(f"freeze policy top:{policy.top_layers} asks for more layers than the encoder's {layers}")


def gradual_stages(model: MultiTaskModel) -> int:
    """Stages of gradual unfreezing: heads only, then one more encoder group per stage (top first)."""
    return len(encoder_layer_groups(model)) + 1


def apply_freeze_policy(model: MultiTaskModel, policy: FreezePolicy, *, stage: int = 0) -> tuple[int, int]:
    """Set `requires_grad` per the policy; return (trainable, total) parameter counts.

    `stage` is used by `gradual` only: stage 0 trains projection and heads, stage s also the top s
    encoder groups (so stage = number of layers + 1 trains everything). For `lora` the adapters must
    already be added (`add_lora_adapters`): only parameters named `lora_` train in the encoder.
    """
    check_policy_fits(model, policy)
    for parameter in model.parameters():
        parameter.requires_grad_(policy.kind != "all")
    if policy.kind in ("backbone", "top", "gradual", "lora"):
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    groups = encoder_layer_groups(model)
    if policy.kind == "top" and policy.top_layers > 0:
        for group in groups[-policy.top_layers :]:
            for parameter in group:
                parameter.requires_grad_(True)
    if policy.kind == "gradual" and stage > 0:
        for group in groups[-stage:]:
            for parameter in group:
                parameter.requires_grad_(True)
    if policy.kind == "lora":
        for name, parameter in model.encoder.named_parameters():
            if "lora_" in name:
                parameter.requires_grad_(True)
    for name in policy.frozen_heads:
        for parameter in model.heads[name].parameters():
            parameter.requires_grad_(False)
    return count_parameters(model)


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """The largest sub-modules whose parameters are all frozen (their dropout must be off)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def set_train_mode(model: nn.Module) -> list[nn.Module]:
    """`model.train()`, except fully frozen sub-modules, which stay in eval mode; returns those."""
    model.train()
    frozen = frozen_modules(model)
    for module in frozen:
        module.eval()
    return frozen


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
