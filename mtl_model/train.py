"""Step 3: multi-task training. Each optimizer step sums one batch of every task (weighted cross-entropy)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_model.config import TrainConfig
from mtl_model.device import autocast_dtype
from mtl_model.freeze import FreezePolicy, apply_freeze_policy, frozen_modules, parse_freeze_policy
from mtl_model.model import MultiTaskModel
from mtl_model.tokenization import IGNORE_INDEX, TokenizedSplit


@dataclass
class TrainResult:
    """What training did, for logs and metrics.json."""

    trained: bool
    steps: int
    freeze_policy: str
    trainable_params: int
    total_params: int
    seconds: float
    examples_seen: int = 0
    precision: str = "fp32"
    losses: list[float] = field(default_factory=list)  # summed loss per step

    def summary(self) -> dict:
        last = self.losses[-10:]
        return {
            "trained": self.trained,
            "steps": self.steps,
            "freeze_policy": self.freeze_policy,
            "precision": self.precision,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "seconds": round(self.seconds, 2),
            "examples_per_second": round(self.examples_seen / self.seconds, 1) if self.seconds > 0 else None,
            "first_loss": round(self.losses[0], 4) if self.losses else None,
            "final_loss": round(sum(last) / len(last), 4) if last else None,
        }


GROUP_WINDOW = 50  # batches per length-sorting window


class BatchStream:
    """Endless seeded batches of one split; each epoch is a new shuffle.

    With `lengths`, rows are sorted by length inside windows of GROUP_WINDOW batches and the batches
    are shuffled again, so batches are short and uniform yet their order stays random.
    """

    def __init__(self, size: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None) -> None:
        if size == 0:
            raise ValueError("cannot train on an empty split")
        self.size, self.batch_size, self.rng, self.lengths = size, batch_size, rng, lengths
        self._batches: list[np.ndarray] = []

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def _epoch(self) -> list[np.ndarray]:
        order = self.rng.permutation(self.size)
        if self.lengths is None:
            return [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        window = self.batch_size * GROUP_WINDOW
        batches = []
        for start in range(0, self.size, window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def next(self) -> np.ndarray:
        if not self._batches:
            self._batches = self._epoch()[::-1]  # pop() from the end walks the epoch in order
        return self._batches.pop()


def trimmed_batch(split: TokenizedSplit, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Rows of a padded split, cut to the batch's longest real sequence (CPU tensors)."""
    mask = split.attention_mask[rows]  # (B, L)
    length = int(mask.sum(axis=1).max())
    batch = {
        "input_ids": torch.from_numpy(split.input_ids[rows, :length]),  # (B, T)
        "attention_mask": torch.from_numpy(mask[:, :length]),  # (B, T)
    }
    labels = split.labels[rows]
    batch["labels"] = torch.from_numpy(labels if labels.ndim == 1 else labels[:, :length])  # (B,) or (B, T)
    return batch


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B, C) vs (B,) or (B, T, C) vs (B, T), ignoring IGNORE_INDEX."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name


def build_optimizer(model: MultiTaskModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only: encoder at `learning_rate`, projection and heads at `head_learning_rate`."""
    head_lr = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = config.learning_rate if name.startswith("encoder.") else head_lr
        decay = 0.0 if _no_decay(name) else config.weight_decay
        groups.setdefault((lr, decay), []).append(parameter)
    param_groups = [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]
    return torch.optim.AdamW(param_groups)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate, then linear decay to zero at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def total_steps(config: TrainConfig, split_sizes: dict[str, int]) -> int:
    """`max_steps`, else `epochs` passes over the largest task's training split."""
    if config.max_steps is not None:
        return config.max_steps
    largest = max(math.ceil(size / config.batch_size) for size in split_sizes.values())
    return max(1, math.ceil(config.epochs * largest))


def train_multitask(
    model: MultiTaskModel,
    train_splits: dict[str, TokenizedSplit],
    config: TrainConfig,
    *,
    device: str,
    precision: str = "fp32",
    loss_weights: dict[str, float] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train in place under the configured freeze policy. `model` must already be on `device`.

    The step loss is the sum over tasks of `loss_weights[task]` (default 1) times its cross-entropy.
    """
    policy: FreezePolicy = parse_freeze_policy(config.freeze_policy)
    trainable, total = apply_freeze_policy(model, policy)
    if policy.trains_nothing or trainable == 0:
        model.eval()
        return TrainResult(False, 0, config.freeze_policy, trainable, total, 0.0)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    streams = {
        task: BatchStream(len(split), config.batch_size, rng, split.attention_mask.sum(axis=1) if config.group_by_length else None)
        for task, split in train_splits.items()
    }
    steps = total_steps(config, {task: len(split) for task, split in train_splits.items()})
    optimizer = build_optimizer(model, config)
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * steps), steps)
    amp_dtype = autocast_dtype(precision)
    weights = {task: 1.0 for task in train_splits} | (loss_weights or {})
    frozen = frozen_modules(model, policy)

    model.train()
    for module in frozen:
        module.eval()  # dropout off where nothing trains
    result = TrainResult(True, steps, config.freeze_policy, trainable, total, 0.0, precision=precision)
    started = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for task, split in train_splits.items():
            batch = {k: v.to(device, non_blocking=True) for k, v in trimmed_batch(split, streams[task].next()).items()}
            if batch["labels"].ne(IGNORE_INDEX).sum() == 0:
                continue  # every label truncated away: nothing to learn from this batch
            autocast = torch.autocast(device_type=device, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with autocast:
                out = model(batch["input_ids"], batch["attention_mask"], task=task)
            loss = weights[task] * task_loss(out["logits"], batch["labels"])
            loss.backward()
            step_loss += float(loss.detach())
            result.examples_seen += int(batch["input_ids"].shape[0])
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        result.losses.append(step_loss)
        if on_step is not None:
            on_step(step + 1, steps, step_loss)
    result.seconds = time.perf_counter() - started
    model.eval()
    return result
