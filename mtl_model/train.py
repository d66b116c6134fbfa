"""Step 3: the multi-task training engine.

One optimizer step = `gradient_accumulation_steps` micro-steps; a micro-step is one batch of the
sampled task (or one batch of every task with `task_sampling: all`), its loss weighted by a fixed
per-task weight or by learned uncertainty (Kendall et al. 2018). Optional evaluation on the validation
splits every N steps keeps the best weights (early stopping). Checkpoints hold everything that
decides what happens next (weights, optimizer, schedule, batch order, sampler, RNG states), so a run
killed at any point and started again finishes with the same weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_model.config import SCRATCH_LORA_TARGETS, TAGS_SUFFIX, TrainConfig
from mtl_model.device import autocast_dtype
from mtl_model.evaluate import evaluate_splits
from mtl_model.freeze import FreezePolicy, apply_freeze_policy, count_parameters, gradual_stages, parse_freeze_policy, set_train_mode
from mtl_model.lora import add_lora_adapters, merge_lora_adapters
from mtl_model.io import atomic_path
from mtl_model.model import MultiTaskModel
from mtl_model.modules.scratch import ScratchEncoder
from mtl_model.tokenization import IGNORE_INDEX, TokenizedSplit

GROUP_WINDOW = 50  # batches per length-sorting window
CHECKPOINT_RE = re.compile(r"^step-(\d{8})\.pt$")


# ------------------------------------------------------------------------------------ batches


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

    def state_dict(self) -> dict:
        return {"batches": [batch.tolist() for batch in self._batches]}

    def load_state_dict(self, state: dict) -> None:
        self._batches = [np.asarray(batch, dtype=np.int64) for batch in state["batches"]]


def sampling_probabilities(strategy: str, sizes: dict[str, int], temperature: float = 2.0) -> np.ndarray:
    """Share of micro-steps each task gets, in `sizes` order: uniform, ∝ size, or ∝ size^(1/T)."""
    counts = np.array(list(sizes.values()), dtype=np.float64)
    if strategy == "proportional":
        weights = counts
    elif strategy == "temperature":
        weights = counts ** (1.0 / temperature)
    else:
        weights = np.ones(len(counts))
    return weights / weights.sum()


class TaskSampler:
    """Which task(s) the next micro-step trains on."""

    def __init__(self, strategy: str, sizes: dict[str, int], rng: np.random.Generator, temperature: float = 2.0) -> None:
        self.strategy, self.tasks, self.rng = strategy, list(sizes), rng
        self.probabilities = sampling_probabilities(strategy, sizes, temperature)
        self._position = 0

    def next_tasks(self) -> list[str]:
        if self.strategy == "all":
            return list(self.tasks)
        if self.strategy == "round_robin":
            task = self.tasks[self._position % len(self.tasks)]
            self._position += 1
            return [task]
        return [self.tasks[int(self.rng.choice(len(self.tasks), p=self.probabilities))]]

    def state_dict(self) -> dict:
        return {"position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self._position = state["position"]


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
    if split.sentence_labels is not None:  # joint data: the same rows also carry a sentence label
        batch["sentence_labels"] = torch.from_numpy(split.sentence_labels[rows])  # (B,)
    return batch


# ------------------------------------------------------------------------------ losses, optimizer


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B, C) vs (B,) or (B, T, C) vs (B, T), ignoring IGNORE_INDEX."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


class UncertaintyWeights(nn.Module):
    """Learned task weights (Kendall et al. 2018): loss_t · exp(-s_t) + s_t, with s_t = log σ_t² trained."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.index = {task: i for i, task in enumerate(tasks)}
        self.log_variances = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_variances[self.index[task]]
        return loss * torch.exp(-s) + s

    def weights(self) -> dict[str, float]:
        return {task: float(torch.exp(-self.log_variances[i].detach())) for task, i in self.index.items()}


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name


def encoder_learning_rates(model: MultiTaskModel, config: TrainConfig) -> dict[int, float]:
    """Learning rate per encoder parameter (by id): `learning_rate`, decayed per layer below the top when
    `layerwise_lr_decay` is set (discriminative fine-tuning, Howard & Ruder 2018)."""
    groups = model.encoder.layer_groups()  # bottom (embeddings) → top layer
    decay = config.layerwise_lr_decay or 1.0
    top = len(groups) - 1
    return {id(p): config.learning_rate * decay ** (top - level) for level, group in enumerate(groups) for p in group}


def build_optimizer(
    model: MultiTaskModel, config: TrainConfig, extra: nn.Module | None = None, *, include: set[int] | None = None
) -> torch.optim.Optimizer:
    """AdamW over the parameters that train: encoder at `learning_rate` (per layer with `layerwise_lr_decay`);
    projection, heads and loss weights at `head_learning_rate`.

    `include` (parameter ids) defaults to those with `requires_grad`; gradual unfreezing passes every
    parameter that will train at some stage. Parameters not yet unfrozen have no gradient, so AdamW
    neither updates them nor creates their state.
    """
    head_lr = config.head_learning_rate or config.learning_rate
    encoder_lr = encoder_learning_rates(model, config)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    named = list(model.named_parameters()) + ([(f"loss_weights.{n}", p) for n, p in extra.named_parameters()] if extra else [])
    for name, parameter in named:
        trains = parameter.requires_grad if include is None or name.startswith("loss_weights.") else id(parameter) in include
        if not trains:
            continue
        lr = encoder_lr[id(parameter)] if name.startswith("encoder.") else head_lr
        decay = 0.0 if _no_decay(name) or name.startswith("loss_weights.") else config.weight_decay
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
    """`max_steps`, else the optimizer steps in which the largest task sees `epochs` passes over its split.

    With `all`, every micro-step holds one batch of the largest task; with one task per batch it gets
    its sampling share of the micro-steps, so the same number of passes takes proportionally more steps.
    """
    if config.max_steps is not None:
        return config.max_steps
    batches = {task: math.ceil(size / config.batch_size) for task, size in split_sizes.items()}
    largest = max(batches, key=batches.get)
    share = 1.0
    if config.task_sampling != "all":
        probabilities = sampling_probabilities(config.task_sampling, split_sizes, config.sampling_temperature)
        share = float(probabilities[list(split_sizes).index(largest)])
    micro_steps = config.epochs * batches[largest] / share
    return max(1, math.ceil(micro_steps / config.gradient_accumulation_steps))


# --------------------------------------------------------------------------------- evaluation


def primary_metric(kind: str) -> str:
    return "f1" if kind == "token" else "accuracy"


def selection_value(metrics: dict[str, dict[str, float]], name: str, kinds: dict[str, str]) -> float:
    """The early-stopping value: `mean` of each task's primary metric, or `<task>.<metric>`."""
    if name == "mean":
        return float(np.mean([metrics[task][primary_metric(kinds[task])] for task in metrics]))
    task, metric = name.split(".")
    if task not in metrics or metric not in metrics[task]:
        raise ValueError(f"early_stopping_metric {name!r}: no such validation metric; have {sorted(metrics)}")
    return float(metrics[task][metric])


# -------------------------------------------------------------------------------- checkpoints


class Checkpointer:
    """Atomic `step-XXXXXXXX.pt` files in one folder; only those written by the same run setup are resumed."""

    def __init__(self, directory: str | Path, fingerprint: str, keep: int = 2) -> None:
        self.directory, self.fingerprint, self.keep = Path(directory), fingerprint, keep

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if CHECKPOINT_RE.match(p.name))

    def latest(self) -> dict | None:
        """The newest complete checkpoint of this setup (temp files never match the name pattern)."""
        for path in reversed(self.files()):
            state = torch.load(path, map_location="cpu", weights_only=False)
            if state.get("fingerprint") == self.fingerprint:
                return state
            print(f"ignoring checkpoint {path}: written by a different config or data", file=sys.stderr)
        return None

    def save(self, state: dict) -> Path:
        path = self.directory / f"step-{state['step']:08d}.pt"
        with atomic_path(path) as temp:
            torch.save({**state, "fingerprint": self.fingerprint}, temp)
        for old in self.files()[: -self.keep]:
            old.unlink()
        return path

    def clear(self) -> None:
        for path in self.files():
            path.unlink()


# ------------------------------------------------------------------------------------- result


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
    losses: list[float] = field(default_factory=list)  # weighted loss per optimizer step
    log: list[dict] = field(default_factory=list)  # rows: step, kind (train|eval), task, name, value
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)

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
            "best_step": self.best_step,
            "best_value": self.best_value,
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "loss_weights": self.loss_weights,
        }


# ----------------------------------------------------------------------------------- training


def lora_target(model: MultiTaskModel) -> nn.Module:
    """The module LoRA adapts: the Hugging Face model itself (so peft knows its architecture), or our encoder."""
    return getattr(model.encoder, "auto_model", model.encoder)


def steps_per_epoch(config: TrainConfig, split_sizes: dict[str, int]) -> int:
    """Optimizer steps in which the largest task sees its training split once."""
    return total_steps(config.model_copy(update={"epochs": 1.0, "max_steps": None}), split_sizes)


def train_multitask(
    model: MultiTaskModel,
    train_splits: dict[str, TokenizedSplit],
    config: TrainConfig,
    *,
    device: str,
    precision: str = "fp32",
    loss_weights: dict[str, float] | None = None,
    validation_splits: dict[str, TokenizedSplit] | None = None,
    checkpointer: Checkpointer | None = None,
    eval_batch_size: int = 64,
    on_step: Callable[[int, int, float], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train in place under the configured freeze policy. `model` must already be on `device`.

    `progress=None` shows a console bar only when stderr is a terminal.
    """
    policy: FreezePolicy = parse_freeze_policy(config.freeze_policy)
    if policy.kind == "lora":
        lora, adapted = config.lora, lora_target(model)
        targets = lora.target_modules or (sorted(SCRATCH_LORA_TARGETS) if isinstance(model.encoder, ScratchEncoder) else None)
        add_lora_adapters(adapted, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout, target_modules=targets)
        model.to(device)
    final_stage = gradual_stages(model) - 1 if policy.kind == "gradual" else 0
    apply_freeze_policy(model, policy, stage=final_stage)
    will_train = {id(p) for p in model.parameters() if p.requires_grad}  # at the last stage, for the optimizer
    trainable, total = apply_freeze_policy(model, policy, stage=0)
    if policy.trains_nothing or not will_train:
        model.eval()
        return TrainResult(False, 0, config.freeze_policy, trainable, total, 0.0, precision=precision)

    tasks = list(train_splits)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    streams = {
        task: BatchStream(len(split), config.batch_size, rng, split.attention_mask.sum(axis=1) if config.group_by_length else None)
        for task, split in train_splits.items()
    }
    sampler = TaskSampler(config.task_sampling, {t: len(s) for t, s in train_splits.items()}, rng, config.sampling_temperature)
    steps = total_steps(config, {task: len(split) for task, split in train_splits.items()})
    uncertainty = UncertaintyWeights(tasks).to(device) if config.loss_weighting == "uncertainty" else None
    optimizer = build_optimizer(model, config, uncertainty, include=will_train if policy.kind == "gradual" else None)
    unfreeze_every = config.unfreeze_every or steps_per_epoch(config, {task: len(split) for task, split in train_splits.items()})
    if policy.kind == "gradual" and final_stage * unfreeze_every > steps - 1:
        reached = min(final_stage, (steps - 1) // unfreeze_every)
        warnings.warn(
            f"gradual unfreezing: {steps} steps with one group every {unfreeze_every} steps unfreeze {reached} of "
            f"{final_stage} encoder groups; set train.unfreeze_every to at most {max(1, (steps - 1) // final_stage)} to reach them all",
            stacklevel=2,
        )
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * steps), steps)
    amp_dtype = autocast_dtype(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")  # fp16 gradients underflow without it
    fixed_weights = {task: 1.0 for task in tasks} | (loss_weights or {})
    kinds = {head.name: head.kind for head in model.config.heads}
    validation = {t: s for t, s in (validation_splits or {}).items() if t in train_splits}
    if config.eval_every and not validation:
        raise ValueError("train.eval_every is set but no task has a validation split")

    result = TrainResult(True, steps, config.freeze_policy, trainable, total, 0.0, precision=precision)
    stage: int | None = None  # gradual unfreezing: the stage applied so far
    mode_set = False
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals, step = 0, 0

    def snapshot() -> dict:
        return {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "uncertainty": uncertainty.state_dict() if uncertainty else None,
            "scaler": scaler.state_dict(),
            "rng_numpy": rng.bit_generator.state,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "streams": {task: stream.state_dict() for task, stream in streams.items()},
            "sampler": sampler.state_dict(),
            "result": {k: getattr(result, k) for k in ("seconds", "examples_seen", "losses", "log", "best_step", "best_value")},
            "best_state": best_state,
            "bad_evals": bad_evals,
        }

    if checkpointer is not None and (saved := checkpointer.latest()) is not None:
        step = saved["step"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if uncertainty is not None:
            uncertainty.load_state_dict(saved["uncertainty"])
        scaler.load_state_dict(saved["scaler"])
        rng.bit_generator.state = saved["rng_numpy"]
        torch.set_rng_state(saved["rng_torch"])
        if saved["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng_cuda"])
        for task, stream in streams.items():
            stream.load_state_dict(saved["streams"][task])
        sampler.load_state_dict(saved["sampler"])
        for key, value in saved["result"].items():
            setattr(result, key, value)
        best_state, bad_evals = saved["best_state"], saved["bad_evals"]
        result.resumed_from = step
        if policy.kind == "gradual":  # the stage the checkpoint was in; its unfreezing is already in the log
            stage = min(step // unfreeze_every, final_stage)
            result.trainable_params, _ = apply_freeze_policy(model, policy, stage=stage)

    bar = None
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    started = time.perf_counter() - result.seconds
    while step < steps and not result.stopped_early:
        if policy.kind == "gradual" and stage != min(step // unfreeze_every, final_stage):
            stage = min(step // unfreeze_every, final_stage)  # a function of the step, so resuming restores it
            result.trainable_params, _ = apply_freeze_policy(model, policy, stage=stage)
            result.log.append({"step": step, "kind": "train", "task": "", "name": "trainable_params", "value": float(result.trainable_params)})
            mode_set = False
        if not mode_set:
            set_train_mode(model)  # fully frozen modules stay in eval mode: no dropout where nothing trains
            mode_set = True
        optimizer.zero_grad(set_to_none=True)
        step_losses: dict[str, float] = {}
        weighted_total = 0.0
        for _ in range(config.gradient_accumulation_steps):
            for task in sampler.next_tasks():
                batch = {k: v.to(device, non_blocking=True) for k, v in trimmed_batch(train_splits[task], streams[task].next()).items()}
                if batch["labels"].ne(IGNORE_INDEX).sum() == 0:
                    continue  # every label truncated away: nothing to learn from this batch
                autocast = torch.autocast(device_type=device, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
                with autocast:
                    out = model(batch["input_ids"], batch["attention_mask"], task=task)
                    tag_logits = model.head_logits(out, task + TAGS_SUFFIX) if "sentence_labels" in batch else None
                if tag_logits is not None:  # joint: sentence loss + token loss on the same forward pass
                    loss = task_loss(out["logits"], batch["sentence_labels"]) + task_loss(tag_logits, batch["labels"])
                else:
                    loss = task_loss(out["logits"], batch["labels"])
                weighted = uncertainty(task, loss) if uncertainty is not None else fixed_weights[task] * loss
                scaler.scale(weighted / config.gradient_accumulation_steps).backward()
                step_losses[task] = step_losses.get(task, 0.0) + float(loss.detach())
                weighted_total += float(weighted.detach()) / config.gradient_accumulation_steps
                result.examples_seen += int(batch["input_ids"].shape[0])
        if config.max_grad_norm is not None:
            scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
        scaler.update()
        scheduler.step()
        step += 1
        result.losses.append(weighted_total)
        learning_rate = scheduler.get_last_lr()[0]
        result.log.extend({"step": step, "kind": "train", "task": t, "name": "loss", "value": v} for t, v in step_losses.items())
        result.log.append({"step": step, "kind": "train", "task": "", "name": "learning_rate", "value": learning_rate})
        if bar is not None:
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{weighted_total:.4f}", ex_per_s=f"{result.examples_seen / max(elapsed, 1e-9):.0f}")
            bar.update(1)
        if on_step is not None:
            on_step(step, steps, weighted_total)

        if config.eval_every and (step % config.eval_every == 0 or step == steps):
            metrics = evaluate_splits(model, validation, batch_size=eval_batch_size, device=device)
            value = selection_value(metrics, config.early_stopping_metric, kinds)
            result.log.extend(
                {"step": step, "kind": "eval", "task": t, "name": k, "value": float(v)}
                for t, m in metrics.items() for k, v in m.items() if k != "support"
            )
            result.log.append({"step": step, "kind": "eval", "task": "", "name": config.early_stopping_metric, "value": value})
            if result.best_value is None or value > result.best_value:
                result.best_step, result.best_value, bad_evals = step, value, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                bad_evals += 1
                if config.early_stopping_patience is not None and bad_evals >= config.early_stopping_patience:
                    result.stopped_early = True
            mode_set = False
        if checkpointer is not None and config.checkpoint_every and step % config.checkpoint_every == 0 and step < steps:
            result.seconds = time.perf_counter() - started
            checkpointer.save(snapshot())
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - started
    result.steps = step
    if uncertainty is not None:
        result.loss_weights = uncertainty.weights()
    if best_state is not None:
        model.load_state_dict(best_state)  # the best evaluation's weights become the model
    if policy.kind == "lora":
        merge_lora_adapters(lora_target(model))  # plain weights again: saving and consumers need no peft
        result.total_params = count_parameters(model)[1]
    model.eval()
    return result
