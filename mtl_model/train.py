"""Step 3: the multi-task training engine.

One optimizer step = `gradient_accumulation_steps` micro-steps; a micro-step is one batch of the
sampled task (or one batch of every task with `task_sampling: all`), its loss weighted by a fixed
per-task weight or by learned uncertainty (Kendall et al. 2018). Optional evaluation on the validation
splits every N steps keeps the best weights (early stopping). Checkpoints hold everything that
decides what happens next (weights, optimizer, schedule, batch order, sampler, RNG states), so a run
killed at any point and started again finishes with the same weights as one never interrupted.

`TrainingRun` holds one run's whole state, a recipe in torchtune's sense: `setup`, `step`, `evaluate`,
`finish`, and `state_dict` / `load_state_dict` as the checkpoint and the resume (the same keys both ways).
What only watches training (log rows, logging, the progress bar) is a `TrainerCallback`.
`train_multitask` is the short driver most callers use.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_model.callbacks import (
    LoggingCallback,
    ProgressBarCallback,
    StepFunctionCallback,
    TrainerCallback,
    TrainLogCallback,
)
from mtl_model.checkpoint import (
    Checkpointer,  # it lived here; `from mtl_model.train import Checkpointer` still works
    plain,
)
from mtl_model.config import TrainConfig
from mtl_model.device import autocast_dtype
from mtl_model.evaluate import evaluate_splits, primary_metric
from mtl_model.freeze import (
    FreezePolicy,
    apply_freeze_policy,
    count_parameters,
    gradual_stages,
    parse_freeze_policy,
    set_train_mode,
)
from mtl_model.lora import add_lora_adapters, merge_lora_adapters
from mtl_model.model import TAGS_SUFFIX, MultiTaskModel
from mtl_model.modules.scratch import SCRATCH_LORA_TARGETS, ScratchEncoder
from mtl_model.tokenization import IGNORE_INDEX, TokenizedSplit

GROUP_WINDOW = 50  # batches per length-sorting window


# ------------------------------------------------------------------------------------ batches


class BatchStream:
    """Endless seeded batches of one split; each epoch is a new shuffle.

    With `lengths`, rows are sorted by length inside windows of GROUP_WINDOW batches and the batches
    are shuffled again, so batches are short and uniform yet their order stays random.
    """

    def __init__(
        self, size: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None
    ) -> None:
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
        """The rest of the current epoch, as lists of Python ints (a checkpoint holds no numpy objects)."""
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

    def __init__(
        self, strategy: str, sizes: dict[str, int], rng: np.random.Generator, temperature: float = 2.0
    ) -> None:
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
        return {"position": int(self._position)}

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
    if split.casing_ids is not None:  # token data: each token's word shape, read by heads with `casing_dim`
        batch["casing_ids"] = torch.from_numpy(split.casing_ids[rows, :length])  # (B, T)
    return batch


# ------------------------------------------------------------------------------ losses, optimizer


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (B, C) vs (B,) or (B, T, C) vs (B, T), ignoring IGNORE_INDEX."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (N, C), N = B or B·T
    return F.cross_entropy(flat_logits, labels.reshape(-1), ignore_index=IGNORE_INDEX)


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


def _no_decay(parameter: nn.Parameter) -> bool:
    """nanoGPT's rule: vectors (biases, LayerNorm weights) get no weight decay, matrices and embeddings do.

    By shape, not by name: name patterns missed the scratch encoder's `final_norm.weight`."""
    return parameter.dim() < 2


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
    named = list(model.named_parameters())
    if extra is not None:
        named += [(f"loss_weights.{n}", p) for n, p in extra.named_parameters()]
    for name, parameter in named:
        always = include is None or name.startswith("loss_weights.")
        trains = parameter.requires_grad if always else id(parameter) in include
        if not trains:
            continue
        lr = encoder_lr[id(parameter)] if name.startswith("encoder.") else head_lr
        decay = 0.0 if _no_decay(parameter) or name.startswith("loss_weights.") else config.weight_decay
        groups.setdefault((lr, decay), []).append(parameter)
    param_groups = [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]
    return torch.optim.AdamW(param_groups)


def linear_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
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


def selection_value(metrics: dict[str, dict[str, float]], name: str, kinds: dict[str, str]) -> float:
    """The early-stopping value: `mean` of each task's primary metric, or `<task>.<metric>`."""
    if name == "mean":
        return float(np.mean([metrics[task][primary_metric(kinds[task])] for task in metrics]))
    task, metric = name.split(".")
    if task not in metrics or metric not in metrics[task]:
        raise ValueError(f"early_stopping_metric {name!r}: no such validation metric; have {sorted(metrics)}")
    return float(metrics[task][metric])


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
    examples_per_task: dict[str, int] = field(default_factory=dict)
    precision: str = "fp32"
    losses: list[float] = field(default_factory=list)  # weighted loss per optimizer step
    log: list[dict] = field(default_factory=list)  # rows: step, kind (train|eval), task, name, value
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)

    @property
    def examples_seen(self) -> int:
        return sum(self.examples_per_task.values())

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
            "examples_per_task": self.examples_per_task,
            "first_loss": round(self.losses[0], 4) if self.losses else None,
            "final_loss": round(sum(last) / len(last), 4) if last else None,
            "best_step": self.best_step,
            "best_value": self.best_value,
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "loss_weights": self.loss_weights,
        }


# ----------------------------------------------------------------------------------- training


def ema_decay_at(decay: float, step: int) -> float:
    """The averaging decay after optimizer step `step` (1-based): `decay`, but smaller early on, so the average
    follows the weights while they move fast instead of remembering the initialisation."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(average: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """average ← decay · average + (1 − decay) · weights, in place, for every floating-point entry of the model's
    state dict; other entries (integer buffers) are copied."""
    weights = model.state_dict()
    floating = [name for name, value in average.items() if value.is_floating_point()]
    torch._foreach_lerp_([average[n] for n in floating], [weights[n] for n in floating], 1.0 - decay)
    for name, value in average.items():
        if not value.is_floating_point():
            value.copy_(weights[name])


def lora_target(model: MultiTaskModel) -> nn.Module:
    """The module LoRA adapts: the Hugging Face model itself (so peft knows its architecture), or our encoder."""
    return getattr(model.encoder, "auto_model", model.encoder)


def steps_per_epoch(config: TrainConfig, split_sizes: dict[str, int]) -> int:
    """Optimizer steps in which the largest task sees its training split once."""
    return total_steps(config.model_copy(update={"epochs": 1.0, "max_steps": None}), split_sizes)


# Keys of `TrainingRun.state_dict()`, the checkpoint: `load_state_dict` accepts exactly these.
STATE_KEYS = (
    "step",
    "model",
    "optimizer",
    "scheduler",
    "uncertainty",
    "scaler",
    "rng_numpy",
    "rng_torch",
    "rng_cuda",
    "streams",
    "sampler",
    "result",
    "best_state",
    "bad_evals",
    "ema",
)
RESULT_KEYS = (
    "seconds",
    "examples_seen",
    "examples_per_task",
    "losses",
    "log",
    "best_step",
    "best_value",
)  # state["result"]


class TrainingRun:
    """One training run: its whole state in one object and the steps that advance it (a torchtune-style recipe).

    `train_multitask` drives it: `setup`, `load_state_dict` when resuming, `begin`, then `step` (and `evaluate`
    when `eval_due`) until `done`, `finish`; `cleanup` always. `state_dict` holds everything that decides what
    happens next, so a run resumed with `load_state_dict` ends bitwise where an uninterrupted one does.
    Callbacks read the public attributes (`global_step`, `total_steps`, `step_losses`, `learning_rate`, ...).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        device: str,
        precision: str = "fp32",
        eval_batch_size: int = 64,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        self.config, self.device, self.precision, self.eval_batch_size = config, device, precision, eval_batch_size
        self.callbacks = list(callbacks)
        self.policy: FreezePolicy = parse_freeze_policy(config.freeze_policy)
        self.resources = contextlib.ExitStack()  # what callbacks open for the run (a bar); closed by `cleanup`
        self.trains = False
        # Progress, saved in checkpoints.
        self.global_step = 0
        self.examples_per_task: dict[str, int] = {}
        self.losses: list[float] = []  # weighted loss per optimizer step
        self.log: list[dict] = []  # TrainResult.log rows, written by TrainLogCallback
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the best evaluation's weights
        self.ema: dict[str, torch.Tensor] | None = None  # moving average of the weights (`ema_decay`), on the device
        self.bad_evals = 0
        # Progress not saved: a function of the above, or only of this process.
        self.stopped_early = False
        self.resumed_from: int | None = None
        self.step_losses: dict[str, float] = {}  # last step: unweighted loss per task, summed over micro-steps
        self.eval_value: float | None = None  # last evaluation: the early-stopping value
        self._seconds = 0.0  # training time before `begin` (of the interrupted process when resuming)
        self._clock: float | None = None  # perf_counter() at which `seconds` was 0, while running
        self._stage: int | None = None  # gradual unfreezing: the stage applied so far
        self._mode_set = False  # train/eval modes are set for the current stage

    # ------------------------------------------------------------------------------- setup

    def setup(
        self,
        model: MultiTaskModel,
        train_splits: dict[str, TokenizedSplit],
        *,
        loss_weights: dict[str, float] | None = None,
        validation_splits: dict[str, TokenizedSplit] | None = None,
    ) -> None:
        """Prepare `model` (already on the device) and, when anything trains (`self.trains`), data and optimizer.

        Torch and numpy are seeded after LoRA's adapters drew their initialisation, as they always were.
        """
        self.model, self.train_splits = model, train_splits
        self._prepare_model()
        if not self.trains:
            return
        torch.manual_seed(self.config.seed)
        self.rng = np.random.default_rng(self.config.seed)  # shared by the batch streams and the task sampler
        self._build_data()
        self._build_optimization(loss_weights or {})
        if self.config.ema_decay is not None:  # after LoRA's adapters exist: they are averaged too
            self.ema = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self.kinds = {head.name: head.kind for head in model.config.heads}
        self.validation = {t: s for t, s in (validation_splits or {}).items() if t in train_splits}
        if self.config.eval_every and not self.validation:
            raise ValueError("train.eval_every is set but no task has a validation split")

    def _prepare_model(self) -> None:
        """LoRA adapters, then the freeze policy at its first stage; notes what will train at the last stage."""
        model, policy = self.model, self.policy
        if policy.kind == "lora":
            lora, adapted = self.config.lora, lora_target(model)
            scratch = sorted(SCRATCH_LORA_TARGETS) if isinstance(model.encoder, ScratchEncoder) else None
            add_lora_adapters(
                adapted,
                rank=lora.rank,
                alpha=lora.alpha,
                dropout=lora.dropout,
                target_modules=lora.target_modules or scratch,
            )
            model.to(self.device)
        self.final_stage = gradual_stages(model) - 1 if policy.kind == "gradual" else 0
        apply_freeze_policy(model, policy, stage=self.final_stage)
        self.will_train = {id(p) for p in model.parameters() if p.requires_grad}  # parameter ids, for the optimizer
        self.trainable_params, self.total_params = apply_freeze_policy(model, policy, stage=0)
        self.trains = not policy.trains_nothing and bool(self.will_train)

    def _build_data(self) -> None:
        """A seeded batch stream per task, the task sampler, and the number of optimizer steps."""
        config, sizes = self.config, {task: len(split) for task, split in self.train_splits.items()}
        self.streams = {
            task: BatchStream(
                len(split),
                config.batch_size,
                self.rng,
                split.attention_mask.sum(axis=1) if config.group_by_length else None,  # lengths (N,)
            )
            for task, split in self.train_splits.items()
        }
        self.sampler = TaskSampler(config.task_sampling, sizes, self.rng, config.sampling_temperature)
        self.total_steps = total_steps(config, sizes)
        self.unfreeze_every = config.unfreeze_every or steps_per_epoch(config, sizes)

    def _build_optimization(self, loss_weights: dict[str, float]) -> None:
        """Loss weights, AdamW, the linear schedule, and the fp16 gradient scaler."""
        config, tasks = self.config, list(self.train_splits)
        learned = config.loss_weighting == "uncertainty"
        self.uncertainty = UncertaintyWeights(tasks).to(self.device) if learned else None
        include = self.will_train if self.policy.kind == "gradual" else None  # later stages' parameters too
        self.optimizer = build_optimizer(self.model, config, self.uncertainty, include=include)
        if self.policy.kind == "gradual" and self.final_stage * self.unfreeze_every > self.total_steps - 1:
            steps, final = self.total_steps, self.final_stage
            reached = min(final, (steps - 1) // self.unfreeze_every)
            warnings.warn(
                f"gradual unfreezing: {steps} steps with one group every {self.unfreeze_every} steps unfreeze "
                f"{reached} of {final} encoder groups; set train.unfreeze_every to at most "
                f"{max(1, (steps - 1) // final)} to reach them all",
                stacklevel=4,  # the caller of train_multitask
            )
        self.scheduler = linear_schedule(self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps)
        self.amp_dtype = autocast_dtype(self.precision)
        self.scaler = torch.amp.GradScaler(self.device, enabled=self.precision == "fp16")  # fp16 grads underflow
        self.fixed_weights = {task: 1.0 for task in tasks} | loss_weights

    # ------------------------------------------------------------------ checkpoint / resume

    def state_dict(self) -> dict:
        """The checkpoint: everything that decides what happens next. `load_state_dict` reads the same keys.

        Only tensors and plain Python values (`checkpoint.plain`): a checkpoint is read back with the weights-only
        unpickler, which refuses numpy objects and every other global."""
        return {
            "step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "uncertainty": self.uncertainty.state_dict() if self.uncertainty is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng_numpy": plain(self.rng.bit_generator.state),  # {"bit_generator": "PCG64", "state": {...}: ints}
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "streams": {task: stream.state_dict() for task, stream in self.streams.items()},
            "sampler": self.sampler.state_dict(),
            "result": plain(
                {
                    "seconds": self.seconds,
                    "examples_seen": self.examples_seen,
                    "examples_per_task": self.examples_per_task,
                    "losses": self.losses,
                    "log": self.log,
                    "best_step": self.best_step,
                    "best_value": self.best_value,
                }
            ),
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
            "ema": self.ema,
        }

    def check_state(self, state: dict) -> None:
        """Raise ValueError unless `state` is a checkpoint this run can resume: `state_dict()`'s keys, this model's
        weights (names and shapes) and these tasks' batch streams. Nothing is changed, so a rejected checkpoint
        leaves the run as it was (`Checkpointer.latest` then tries an older one)."""
        if not isinstance(state, dict) or not isinstance(state.get("result", {}), dict):
            raise ValueError("not a training checkpoint: not a dict of its parts")
        missing, unexpected = sorted(set(STATE_KEYS) - set(state)), sorted(map(str, set(state) - set(STATE_KEYS)))
        if "result" in state:
            missing += sorted(f"result.{key}" for key in set(RESULT_KEYS) - set(state["result"]))
            unexpected += sorted(f"result.{key}" for key in set(state["result"]) - set(RESULT_KEYS))
        if missing or unexpected:
            raise ValueError(f"not a training checkpoint: missing {missing}, unexpected {unexpected}")
        if type(state["step"]) is not int or not 0 <= state["step"] <= self.total_steps:
            raise ValueError(f"not a training checkpoint of this run: step outside 0..{self.total_steps}")
        if (state["ema"] is None) != (self.ema is None):
            raise ValueError("not a checkpoint of this run: weight averaging (train.ema_decay) differs")
        own = self.model.state_dict()
        for part in ("model", "best_state", "ema"):
            weights = state[part]
            if part != "model" and weights is None:
                continue
            if not isinstance(weights, dict) or weights.keys() != own.keys():
                raise ValueError(f"not a checkpoint of this model: {part} has other weights")
            if any(not isinstance(w, torch.Tensor) or w.shape != own[name].shape for name, w in weights.items()):
                raise ValueError(f"not a checkpoint of this model: {part} has weights of other shapes")
        if not isinstance(state["streams"], dict) or state["streams"].keys() != self.streams.keys():
            raise ValueError(f"not a checkpoint of these tasks: batch streams for {sorted(state['streams'])}")

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`'s output (after `setup`, before `begin`); `check_state` first."""
        self.check_state(state)
        self.global_step = state["step"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.uncertainty is not None:
            self.uncertainty.load_state_dict(state["uncertainty"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.bit_generator.state = state["rng_numpy"]
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        for task, stream in self.streams.items():
            stream.load_state_dict(state["streams"][task])
        self.sampler.load_state_dict(state["sampler"])
        result = state["result"]
        self._seconds, self.losses = result["seconds"], result["losses"]
        self.examples_per_task = dict(result["examples_per_task"])
        self.log, self.best_step, self.best_value = result["log"], result["best_step"], result["best_value"]
        self.best_state, self.bad_evals = state["best_state"], state["bad_evals"]
        if self.ema is not None:
            self.ema = {name: value.to(self.device) for name, value in state["ema"].items()}
        self.resumed_from = self.global_step
        if self.policy.kind == "gradual":  # the checkpoint's stage; its unfreezing row is already in the log
            self._stage = self._stage_at(self.global_step)
            self.trainable_params, _ = apply_freeze_policy(self.model, self.policy, stage=self._stage)

    # -------------------------------------------------------------------------- training

    @property
    def seconds(self) -> float:
        """Training time so far, including that of the process a resumed run was interrupted in."""
        return self._seconds if self._clock is None else time.perf_counter() - self._clock

    @property
    def examples_seen(self) -> int:
        """Training examples so far, over all tasks (the checkpoint also records it, for readers of the file)."""
        return sum(self.examples_per_task.values())

    @property
    def learning_rate(self) -> float:
        """The first parameter group's current rate (the encoder's top layer, or the heads')."""
        return self.scheduler.get_last_lr()[0]

    @property
    def done(self) -> bool:
        return self.global_step >= self.total_steps or self.stopped_early

    @property
    def eval_due(self) -> bool:
        """Evaluate every `eval_every` steps and after the last one."""
        every = self.config.eval_every
        return bool(every) and (self.global_step % every == 0 or self.global_step == self.total_steps)

    @property
    def checkpoint_due(self) -> bool:
        """Every `checkpoint_every` steps, unless training is over anyway (the model is saved next)."""
        every = self.config.checkpoint_every
        return bool(every) and self.global_step % every == 0 and not self.done

    def begin(self) -> None:
        """Start the clock (continuing a resumed run's) and tell the callbacks."""
        self._clock = time.perf_counter() - self._seconds
        self._fire("on_train_begin")

    def step(self) -> float:
        """One optimizer step over `gradient_accumulation_steps` micro-steps; returns its weighted loss."""
        self._enter_stage()
        self.optimizer.zero_grad(set_to_none=True)
        accumulation = self.config.gradient_accumulation_steps
        self.step_losses, weighted_total = {}, 0.0
        for _ in range(accumulation):
            for task in self.sampler.next_tasks():
                losses = self._micro_step(task, accumulation)
                if losses is None:
                    continue
                loss, weighted = losses
                self.step_losses[task] = self.step_losses.get(task, 0.0) + loss
                weighted_total += weighted / accumulation
        if self.config.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip true gradients, not scaled ones
            parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
        self.scaler.step(self.optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        self.global_step += 1
        if self.ema is not None:
            update_ema(self.ema, self.model, ema_decay_at(self.config.ema_decay or 0.0, self.global_step))
        self.losses.append(weighted_total)
        self._fire("on_step_end", self.global_step, self.total_steps, weighted_total)
        return weighted_total

    def _stage_at(self, step: int) -> int:
        return min(step // self.unfreeze_every, self.final_stage)

    def _enter_stage(self) -> None:
        """Gradual unfreezing's stage is a function of the step, so resuming restores it. After a new stage or an
        evaluation the modes are set again: fully frozen modules stay in eval mode (no dropout where nothing trains).
        """
        if self.policy.kind == "gradual" and self._stage != self._stage_at(self.global_step):
            self._stage = self._stage_at(self.global_step)
            self.trainable_params, _ = apply_freeze_policy(self.model, self.policy, stage=self._stage)
            self._fire("on_unfreeze", self.global_step, self.trainable_params)
            self._mode_set = False
        if not self._mode_set:
            set_train_mode(self.model)
            self._mode_set = True

    def _micro_step(self, task: str, accumulation: int) -> tuple[float, float] | None:
        """Forward and backward on the next batch of `task`: (loss, weighted loss), or None for a batch whose
        labels were all truncated away (nothing to learn from it)."""
        rows = self.streams[task].next()  # (B,) row indices
        cpu_batch = trimmed_batch(self.train_splits[task], rows)  # input_ids, attention_mask (B, T); labels
        batch = {k: v.to(self.device, non_blocking=True) for k, v in cpu_batch.items()}
        if batch["labels"].ne(IGNORE_INDEX).sum() == 0:
            return None
        autocast = torch.autocast(self.device, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            out = self.model(  # logits (B, C) or (B, T, C)
                batch["input_ids"], batch["attention_mask"], task=task, casing_ids=batch.get("casing_ids")
            )
            joint = "sentence_labels" in batch
            tag_logits = self.model.head_logits(out, task + TAGS_SUFFIX) if joint else None  # (B, T, C_tags)
        if tag_logits is not None:  # joint: sentence loss + token loss on the same forward pass
            loss = task_loss(out["logits"], batch["sentence_labels"]) + task_loss(tag_logits, batch["labels"])
        else:
            loss = task_loss(out["logits"], batch["labels"])
        weighted = self.uncertainty(task, loss) if self.uncertainty is not None else self.fixed_weights[task] * loss
        self.scaler.scale(weighted / accumulation).backward()
        self.examples_per_task[task] = self.examples_per_task.get(task, 0) + int(batch["input_ids"].shape[0])  # + B
        return float(loss.detach()), float(weighted.detach())

    @contextlib.contextmanager
    def _averaged_weights(self) -> Iterator[None]:
        """The model holds the moving average (when `ema_decay` is set) inside the block, its own weights after."""
        if self.ema is None:
            yield
            return
        raw = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.model.load_state_dict(raw)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Validation metrics per task (of the averaged weights when `ema_decay` is set); keeps the best weights and
        counts evaluations without improvement."""
        with self._averaged_weights():
            metrics = evaluate_splits(self.model, self.validation, batch_size=self.eval_batch_size, device=self.device)
        self.eval_value = value = selection_value(metrics, self.config.early_stopping_metric, self.kinds)
        if self.best_value is None or value > self.best_value:
            self.best_step, self.best_value, self.bad_evals = self.global_step, value, 0
            evaluated = self.model.state_dict() if self.ema is None else self.ema
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.items()}
        else:
            self.bad_evals += 1
            patience = self.config.early_stopping_patience
            if patience is not None and self.bad_evals >= patience:
                self.stopped_early = True
        self._mode_set = False  # evaluation left the model in eval mode
        self._fire("on_evaluate", self.global_step, metrics)
        return metrics

    def finish(self) -> TrainResult:
        """The result. The best evaluation's weights become the model; LoRA adapters are merged into plain weights
        (saving and consumers need no peft); the model is left in eval mode."""
        config = self.config
        if not self.trains:
            self.model.eval()
            return TrainResult(
                trained=False,
                steps=0,
                freeze_policy=config.freeze_policy,
                precision=self.precision,
                trainable_params=self.trainable_params,
                total_params=self.total_params,
                seconds=0.0,
            )
        self._seconds, self._clock = self.seconds, None  # the clock stops
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.ema is not None:  # no evaluation chose a step: the average at the end is the model
            self.model.load_state_dict(self.ema)
        if self.policy.kind == "lora":
            merge_lora_adapters(lora_target(self.model))
            self.total_params = count_parameters(self.model)[1]
        self.model.eval()
        result = TrainResult(
            trained=True,
            steps=self.global_step,
            freeze_policy=config.freeze_policy,
            trainable_params=self.trainable_params,
            total_params=self.total_params,
            seconds=self._seconds,
            examples_per_task=self.examples_per_task,
            precision=self.precision,
            losses=self.losses,
            log=self.log,
            best_step=self.best_step,
            best_value=self.best_value,
            stopped_early=self.stopped_early,
            resumed_from=self.resumed_from,
            loss_weights=self.uncertainty.weights() if self.uncertainty is not None else {},
        )
        self._fire("on_train_end", result)
        return result

    def cleanup(self) -> None:
        """Close what callbacks opened for the run (progress bar, log redirection), also after an error."""
        self.resources.close()

    def _fire(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


def default_callbacks(progress: bool | None = None) -> list[TrainerCallback]:
    """Train log rows (`TrainResult.log`), a console bar (`progress=None`: when stderr is a terminal), logging."""
    bar = progress or (progress is None and sys.stderr.isatty())
    return [TrainLogCallback(), *([ProgressBarCallback()] if bar else []), LoggingCallback()]


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
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Train in place under the configured freeze policy. `model` must already be on `device`.

    Resumes from `checkpointer`'s latest checkpoint of the same setup and saves one every
    `checkpoint_every` steps. `callbacks` run after the default ones (`default_callbacks(progress)`);
    `on_step(step, total, loss)` is the older form of a callback's `on_step_end`.
    """
    callbacks = [*default_callbacks(progress), *callbacks, *([StepFunctionCallback(on_step)] if on_step else [])]
    run = TrainingRun(config, device=device, precision=precision, eval_batch_size=eval_batch_size, callbacks=callbacks)
    run.setup(model, train_splits, loss_weights=loss_weights, validation_splits=validation_splits)
    if not run.trains:
        return run.finish()
    if checkpointer is not None and (saved := checkpointer.latest(check=run.check_state)) is not None:
        run.load_state_dict(saved)
    try:
        run.begin()
        while not run.done:
            run.step()
            if run.eval_due:
                run.evaluate()
            if checkpointer is not None and run.checkpoint_due:
                checkpointer.save(run.state_dict())
        return run.finish()
    finally:
        run.cleanup()
