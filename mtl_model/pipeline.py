"""The step order, written once: validate → tokenize → pad → train → evaluate → embed (and the
freeze-policy comparison: tokenize once, then train → evaluate per policy, then one table).

`run_pipeline` takes the step implementations as a `Steps` table, so the Prefect flow runs it with
its cached, retried tasks and `python -m mtl_model` runs it with the plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtl_model import steps as plain
from mtl_model.backbone import SCRATCH_BACKBONE
from mtl_model.base import StrictModel
from mtl_model.compare import entry_folders, parse_entry
from mtl_model.config import RunPlan, plan_run
from mtl_model.contracts import (
    ComparisonReport,
    EncodedTask,
    Metrics,
    PolicyResult,
    TokenizedTask,
    TrainedModel,
    TrainRequest,
    ValidationReport,
    Vocabulary,
)
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.embed import EmbeddingResult
from mtl_model.lock import output_lock
from mtl_model.options import ComparisonOptions, PipelineOptions
from mtl_model.runtime import quiet_third_party


@dataclass(frozen=True, kw_only=True)
class Steps:
    """One callable per step, named after it; each takes the keyword arguments of its `mtl_model.steps` namesake
    and returns the same typed record."""

    validate: Callable[..., ValidationReport]
    build_vocab: Callable[..., Vocabulary]
    tokenize: Callable[..., EncodedTask]
    pad: Callable[..., TokenizedTask]
    train: Callable[..., TrainedModel]
    evaluate: Callable[..., Metrics]
    embed: Callable[..., EmbeddingResult]
    compare: Callable[..., ComparisonReport]


PLAIN_STEPS = Steps(
    validate=plain.validate,
    build_vocab=plain.build_vocab,
    tokenize=plain.tokenize,
    pad=plain.pad,
    train=plain.train,
    evaluate=plain.evaluate,
    embed=plain.embed,
    compare=plain.compare,
)


class RunResult(StrictModel):
    """What a pipeline run returns (and `--json` prints): metrics and where each output lies."""

    out_dir: str
    """The run's output folder."""
    device: str
    """Device the run used."""
    metrics: dict[str, dict[str, float | int]]
    """Head name → metric name → value, on the evaluation split."""
    training: TrainedModel
    """What training did."""
    tokenized: dict[str, dict[str, str]]
    """Task → split → padded Parquet file."""
    model: str
    """The saved model folder."""
    metrics_file: str
    """`metrics.json`."""
    embeddings: str | None
    """The embeddings folder (None when the config names no corpus)."""


class ComparisonResult(StrictModel):
    """What a freeze-policy comparison returns."""

    out_dir: str
    """The comparison's output folder."""
    device: str
    """Device the comparison used."""
    rows: list[dict[str, str | int | float | None]]
    """One row per entry (see `ComparisonReport.rows`)."""
    markdown: str
    """The table as Markdown."""
    files: dict[str, str]
    """`md`, `json`, `png` → path."""


def prepare_run(options: PipelineOptions) -> tuple[RunPlan, str, str]:
    """What every entry point does first: quiet third-party logs, resolve the plan, then device and precision
    (decided once, here)."""
    quiet_third_party()
    plan = plan_run(options, freeze_policy=options.freeze_policy)
    chosen = resolve_device(options.device)
    return plan, chosen, resolve_precision(chosen, plan.config.train.precision)


def prepare_data(plan: RunPlan, steps: Steps) -> list[TokenizedTask]:
    """Validate every input, build the vocabulary (scratch encoder only), then tokenize and pad each task into
    `<out>/tokenized/`."""
    config, out_dir = plan.config, plan.out_dir
    steps.validate(tasks=config.tasks, files=plan.files, config=config.tokenize)
    tokenizer_source = config.model.backbone
    if tokenizer_source == SCRATCH_BACKBONE:
        vocabulary = steps.build_vocab(tasks=config.tasks, files=plan.files, config=config.tokenize, out_dir=out_dir)
        tokenizer_source = vocabulary.tokenizer_dir
    encoded = [
        steps.tokenize(
            task=task, files=plan.files[task.name], config=config.tokenize, backbone=tokenizer_source, out_dir=out_dir
        )
        for task in config.tasks
    ]
    return [steps.pad(encoded=e, max_seq_length=config.tokenize.max_seq_length, out_dir=out_dir) for e in encoded]


def train_request(plan: RunPlan, tokenized: list[TokenizedTask]) -> TrainRequest:
    """What training needs from a plan and the padded data."""
    config = plan.config
    return TrainRequest(
        tokenized=tokenized,
        model=config.model,
        train=config.train,
        max_seq_length=config.tokenize.max_seq_length,
        loss_weights={task.name: task.loss_weight for task in config.tasks},
    )


def train_and_evaluate(
    plan: RunPlan, tokenized: list[TokenizedTask], *, out_dir: str, device: str, precision: str, steps: Steps
) -> tuple[TrainedModel, Metrics]:
    """Train under the plan's settings into `out_dir`, then evaluate there."""
    trained = steps.train(request=train_request(plan, tokenized), device=device, precision=precision, out_dir=out_dir)
    metrics = steps.evaluate(
        trained=trained, tokenized=tokenized, config=plan.config.evaluate, device=device, out_dir=out_dir
    )
    return trained, metrics


def run_pipeline(plan: RunPlan, *, device: str, precision: str, steps: Steps = PLAIN_STEPS) -> RunResult:
    """Run every step for a resolved plan, holding the output folder's lock; returns metrics and where each
    output lies."""
    with output_lock(plan.out_dir):
        return _run_steps(plan, device=device, precision=precision, steps=steps)


def _run_steps(plan: RunPlan, *, device: str, precision: str, steps: Steps) -> RunResult:
    out_dir = plan.out_dir
    tokenized = prepare_data(plan, steps)
    trained, metrics = train_and_evaluate(
        plan, tokenized, out_dir=out_dir, device=device, precision=precision, steps=steps
    )
    embeddings = (
        steps.embed(
            model_dir=trained.model_dir, corpus=plan.corpus, config=plan.config.embed, device=device, out_dir=out_dir
        )
        if plan.corpus
        else None
    )
    return RunResult(
        out_dir=out_dir,
        device=device,
        metrics=metrics.tasks,
        training=trained,
        tokenized={t.task: t.files for t in tokenized},
        model=trained.model_dir,
        metrics_file=f"{out_dir}/metrics.json",
        embeddings=embeddings.path if embeddings else None,
    )


def plan_comparison(options: ComparisonOptions) -> tuple[RunPlan, dict[str, RunPlan], dict[str, str]]:
    """The shared plan (data, output folder) and one validated plan per comparison entry, before any work."""
    base = plan_run(options)
    if options.out is None:
        default = Path(base.out_dir)
        base = base.model_copy(update={"out_dir": str(default.with_name(default.name + "-freeze-comparison"))})
    folders = entry_folders(options.policies)
    plans = {}
    for entry in options.policies:
        policy, settings = parse_entry(entry)
        entry_options = options.model_copy(update={"out": base.out_dir})
        plans[entry] = plan_run(entry_options, freeze_policy=policy, extra_overrides=settings)
    return base, plans, folders


def prepare_comparison(
    options: ComparisonOptions,
) -> tuple[RunPlan, dict[str, RunPlan], dict[str, str], str, dict[str, str]]:
    """`prepare_run` for the comparison: every entry validated, then the device and each entry's precision decided."""
    quiet_third_party()
    base, plans, folders = plan_comparison(options)
    chosen = resolve_device(options.device)
    return (
        base,
        plans,
        folders,
        chosen,
        {entry: resolve_precision(chosen, plan.config.train.precision) for entry, plan in plans.items()},
    )


def run_comparison(
    base: RunPlan,
    plans: dict[str, RunPlan],
    folders: dict[str, str],
    *,
    device: str,
    precision: dict[str, str],
    steps: Steps = PLAIN_STEPS,
) -> ComparisonResult:
    """Tokenize once, train and evaluate each entry into `<out>/policies/<entry>/`, then write the table (holding
    the output folder's lock)."""
    with output_lock(base.out_dir):
        return _compare(base, plans, folders, device=device, precision=precision, steps=steps)


def _compare(
    base: RunPlan,
    plans: dict[str, RunPlan],
    folders: dict[str, str],
    *,
    device: str,
    precision: dict[str, str],
    steps: Steps,
) -> ComparisonResult:
    tokenized = prepare_data(base, steps)
    results = []
    for entry, plan in plans.items():
        out_dir = str(Path(base.out_dir) / "policies" / folders[entry])
        trained, metrics = train_and_evaluate(
            plan, tokenized, out_dir=out_dir, device=device, precision=precision[entry], steps=steps
        )
        results.append(PolicyResult(entry=entry, out_dir=out_dir, training=trained, metrics=metrics))
    report = steps.compare(results=results, out_dir=base.out_dir, device=device)
    return ComparisonResult(out_dir=base.out_dir, device=device, **report.model_dump())


def format_summary(result: RunResult) -> str:
    """The few lines a person reads after a run: metrics per task and where the outputs are."""
    t = result.training
    lines = [
        f"Run finished on {result.device} → {result.out_dir}",
        f"  training: freeze policy {t.freeze_policy}, {t.trainable_params:,}/{t.total_params:,} params trainable, "
        f"{t.steps} steps, {t.seconds}s, {t.precision}",
    ]
    for task, values in result.metrics.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
        lines.append(f"  {task}: {shown}")
    lines.append(f"  model:      {result.model}")
    lines.append(f"  metrics:    {result.metrics_file}")
    lines.append(f"  embeddings: {result.embeddings or '(no corpus configured)'}")
    for task, files in result.tokenized.items():
        lines.append(f"  tokenized {task}: {', '.join(files.values())}")
    return "\n".join(lines)
