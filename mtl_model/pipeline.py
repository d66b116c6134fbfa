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
from mtl_model.compare import entry_folders, parse_entry
from mtl_model.config import RunPlan, plan_run
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.errors import ConfigError
from mtl_model.runtime import quiet_third_party


@dataclass(frozen=True)
class Steps:
    """One callable per step; all take the same keyword arguments as `mtl_model.steps`."""

    validate: Callable[..., dict]
    tokenize: Callable[..., dict]
    pad: Callable[..., dict]
    train: Callable[..., dict]
    evaluate: Callable[..., dict]
    embed: Callable[..., dict]
    compare: Callable[..., dict]
    vocab: Callable[..., dict]


PLAIN_STEPS = Steps(
    plain.validate_step, plain.tokenize_step, plain.pad_step, plain.train_step, plain.evaluate_step, plain.embed_step,
    plain.compare_step, plain.vocab_step,
)


def prepare_run(
    config_path: str | None,
    *,
    out: str | None,
    data_dir: str | None,
    freeze_policy: str | None,
    device: str,
    overrides: list[str] | None,
    only_tasks: list[str] | None,
) -> tuple[RunPlan, str, str]:
    """What every entry point does first: quiet third-party logs, resolve the plan, then device and
    precision (decided once, here)."""
    quiet_third_party()
    plan = plan_run(config_path, out=out, data_dir=data_dir, freeze_policy=freeze_policy, overrides=overrides, only_tasks=only_tasks)
    chosen = resolve_device(device)
    return plan, chosen, resolve_precision(chosen, plan.config.train.precision)


def prepare_data(plan: RunPlan, steps: Steps) -> list[dict]:
    """Validate every input, build the vocabulary (scratch encoder only), then tokenize and pad each task
    into `<out>/tokenized/`."""
    config, out_dir = plan.config, plan.out_dir
    steps.validate(tasks=config.tasks, files=plan.files, tokenize=config.tokenize)
    tokenizer_source = config.model.backbone
    if tokenizer_source == SCRATCH_BACKBONE:
        tokenizer_source = steps.vocab(tasks=config.tasks, files=plan.files, tokenize=config.tokenize, out_dir=out_dir)["tokenizer_dir"]
    encoded = [
        steps.tokenize(task=task, files=plan.files[task.name], tokenize=config.tokenize, backbone=tokenizer_source, out_dir=out_dir)
        for task in config.tasks
    ]
    return [steps.pad(encoded=e, max_seq_length=config.tokenize.max_seq_length, out_dir=out_dir) for e in encoded]


def train_and_evaluate(plan: RunPlan, tokenized: list[dict], *, out_dir: str, device: str, precision: str, steps: Steps) -> tuple[dict, dict]:
    """Train under the plan's settings into `out_dir`, then evaluate there."""
    config = plan.config
    training = steps.train(
        tokenized=tokenized, model_config=config.model, train_config=config.train, max_seq_length=config.tokenize.max_seq_length,
        loss_weights={task.name: task.loss_weight for task in config.tasks}, device=device, precision=precision, out_dir=out_dir,
    )
    metrics = steps.evaluate(
        model_dir=training["model_dir"], tokenized=tokenized, config=config.evaluate, device=device, out_dir=out_dir, training=training,
    )
    return training, metrics


def run_pipeline(plan: RunPlan, *, device: str, precision: str, steps: Steps = PLAIN_STEPS) -> dict:
    """Run every step for a resolved plan; returns metrics and where each output lies."""
    out_dir = plan.out_dir
    tokenized = prepare_data(plan, steps)
    training, metrics = train_and_evaluate(plan, tokenized, out_dir=out_dir, device=device, precision=precision, steps=steps)
    embeddings = (
        steps.embed(model_dir=training["model_dir"], corpus_path=plan.corpus, config=plan.config.embed, device=device, out_dir=out_dir)
        if plan.corpus else None
    )
    return {
        "out_dir": out_dir,
        "device": device,
        "metrics": metrics["tasks"],
        "training": {k: training[k] for k in ("freeze_policy", "precision", "trainable_params", "total_params", "steps", "seconds")},
        "outputs": {
            "tokenized": {t["task"]: t["files"] for t in tokenized},
            "model": training["model_dir"],
            "metrics": f"{out_dir}/metrics.json",
            "embeddings": embeddings["path"] if embeddings else None,
        },
    }


def plan_comparison(
    config_path: str | None,
    *,
    policies: list[str],
    out: str | None,
    data_dir: str | None,
    overrides: list[str] | None,
    only_tasks: list[str] | None,
) -> tuple[RunPlan, dict[str, RunPlan], dict[str, str]]:
    """The shared plan (data, output folder) and one validated plan per comparison entry, before any work."""
    if not policies:
        raise ConfigError("the comparison needs at least one freeze policy")
    base = plan_run(config_path, out=out, data_dir=data_dir, overrides=overrides, only_tasks=only_tasks)
    if out is None:
        base = base.model_copy(update={"out_dir": str(Path(base.out_dir).with_name(Path(base.out_dir).name + "-freeze-comparison"))})
    folders = entry_folders(policies)
    plans = {}
    for entry in policies:
        policy, settings = parse_entry(entry)
        plans[entry] = plan_run(
            config_path, out=base.out_dir, data_dir=data_dir, freeze_policy=policy,
            overrides=[*(overrides or []), *settings], only_tasks=only_tasks,
        )
    return base, plans, folders


def prepare_comparison(
    config_path: str | None,
    *,
    policies: list[str],
    out: str | None,
    data_dir: str | None,
    device: str,
    overrides: list[str] | None,
    only_tasks: list[str] | None,
) -> tuple[RunPlan, dict[str, RunPlan], dict[str, str], str, dict[str, str]]:
    """`prepare_run` for the comparison: every entry validated, then the device and each entry's precision decided."""
    quiet_third_party()
    base, plans, folders = plan_comparison(
        config_path, policies=policies, out=out, data_dir=data_dir, overrides=overrides, only_tasks=only_tasks
    )
    chosen = resolve_device(device)
    return base, plans, folders, chosen, {entry: resolve_precision(chosen, plan.config.train.precision) for entry, plan in plans.items()}


def run_comparison(
    base: RunPlan,
    plans: dict[str, RunPlan],
    folders: dict[str, str],
    *,
    device: str,
    precision: dict[str, str],
    steps: Steps = PLAIN_STEPS,
) -> dict:
    """Tokenize once, train and evaluate each entry into `<out>/policies/<entry>/`, then write the table."""
    tokenized = prepare_data(base, steps)
    results = []
    for entry, plan in plans.items():
        out_dir = str(Path(base.out_dir) / "policies" / folders[entry])
        training, metrics = train_and_evaluate(plan, tokenized, out_dir=out_dir, device=device, precision=precision[entry], steps=steps)
        results.append({"entry": entry, "out_dir": out_dir, "training": training, "metrics": metrics})
    report = steps.compare(results=results, out_dir=base.out_dir, device=device)
    return {"out_dir": base.out_dir, "device": device, "rows": report["rows"], "files": report["files"], "markdown": report["markdown"]}


def format_summary(result: dict) -> str:
    """The few lines a person reads after a run: metrics per task and where the outputs are."""
    t = result["training"]
    lines = [
        f"Run finished on {result['device']} → {result['out_dir']}",
        f"  training: freeze policy {t['freeze_policy']}, {t['trainable_params']:,}/{t['total_params']:,} params trainable, "
        f"{t['steps']} steps, {t['seconds']}s, {t['precision']}",
    ]
    for task, values in result["metrics"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
        lines.append(f"  {task}: {shown}")
    outputs = result["outputs"]
    lines.append(f"  model:      {outputs['model']}")
    lines.append(f"  metrics:    {outputs['metrics']}")
    lines.append(f"  embeddings: {outputs['embeddings'] or '(no corpus configured)'}")
    for task, files in outputs["tokenized"].items():
        lines.append(f"  tokenized {task}: {', '.join(files.values())}")
    return "\n".join(lines)
