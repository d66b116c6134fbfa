"""The pipeline flow: validate → tokenize → pad → train → evaluate → embed.

Run once:      python flows/pipeline.py [--config data/configs/default.yaml] [--out runs/default]
As a service:  see prefect.yaml (`prefect deploy --all`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Literal

from prefect import flow

from mtl_model.config import plan_run
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.runtime import quiet_third_party
from tasks.data import pad_data, tokenize_data, validate_inputs
from tasks.model import embed_corpus, evaluate_model, train_model


@flow(name="mtl-pipeline")
def pipeline(
    config_path: str | None = None,
    out: str | None = None,
    data_dir: str | None = None,
    freeze_policy: str | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    overrides: list[str] | None = None,
    only_tasks: list[str] | None = None,
) -> dict:
    """Train, evaluate and serve the multi-task sentence transformer described by a YAML config.

    Args:
        config_path: YAML pipeline config; the bundled default (sample data, bundled MiniLM) when empty.
        out: Output folder; default `runs/<config name>`.
        data_dir: Folder that relative data paths in the config start from (overrides the config's).
        freeze_policy: Override of `train.freeze_policy` (`none`, `backbone`, `all`, `head:<task>`).
        device: `auto` picks CUDA when available, else CPU.
        overrides: `section.field=value` settings applied over the config, e.g. `train.max_steps=500`.
        only_tasks: Train and evaluate only these tasks of the config (default: all).
    """
    quiet_third_party()
    plan = plan_run(
        config_path, out=out, data_dir=data_dir, freeze_policy=freeze_policy, overrides=overrides, only_tasks=only_tasks
    )
    config, out_dir = plan.config, plan.out_dir
    chosen_device = resolve_device(device)
    precision = resolve_precision(chosen_device, config.train.precision)

    validate_inputs(config.tasks, plan.files, config.tokenize)
    encoded = [tokenize_data(task, plan.files[task.name], config.tokenize, config.model.backbone, out_dir) for task in config.tasks]
    tokenized = [pad_data(e, config.tokenize.max_seq_length, out_dir) for e in encoded]
    training = train_model(
        tokenized, config.model, config.train, config.tokenize.max_seq_length,
        {task.name: task.loss_weight for task in config.tasks}, chosen_device, precision, out_dir,
    )
    metrics = evaluate_model(training["model_dir"], tokenized, config.evaluate, chosen_device, out_dir, training)
    embeddings = embed_corpus(training["model_dir"], plan.corpus, config.embed, chosen_device, out_dir) if plan.corpus else None
    return {
        "out_dir": out_dir,
        "device": chosen_device,
        "metrics": metrics["tasks"],
        "training": {k: training[k] for k in ("freeze_policy", "precision", "trainable_params", "total_params", "steps", "seconds")},
        "outputs": {
            "tokenized": {t["task"]: t["files"] for t in tokenized},
            "model": training["model_dir"],
            "metrics": f"{out_dir}/metrics.json",
            "embeddings": embeddings["path"] if embeddings else None,
        },
    }


def format_summary(result: dict) -> str:
    """The few lines a person reads after a run: metrics per task and where the outputs are."""
    lines = [f"Run finished on {result['device']} → {result['out_dir']}"]
    t = result["training"]
    lines.append(
        f"  training: freeze policy {t['freeze_policy']}, {t['trainable_params']:,}/{t['total_params']:,} params trainable, "
        f"{t['steps']} steps, {t['seconds']}s, {t['precision']}"
    )
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python flows/pipeline.py",
        description="Train, evaluate and embed with a multi-task sentence transformer (a Prefect flow).",
    )
    parser.add_argument("--config", metavar="PATH", help="YAML pipeline config (default: the bundled data/configs/default.yaml)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<config name>)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder that the config's relative data paths start from")
    parser.add_argument("--freeze-policy", metavar="POLICY", help="none | backbone | all | head:<task>[,head:<task>] (default: the config's)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train and embed (default: auto)")
    parser.add_argument("--tasks", metavar="NAME[,NAME]", help="only these tasks of the config (e.g. a single-task run)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                        help="override a config field, e.g. --set train.max_steps=500 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from mtl_model.errors import ConfigError, DataValidationError

    args = parse_args(argv)
    try:
        result = pipeline(
            config_path=args.config, out=args.out, data_dir=args.data_dir,
            freeze_policy=args.freeze_policy, device=args.device, overrides=args.overrides,
            only_tasks=args.tasks.split(",") if args.tasks else None,
        )
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
