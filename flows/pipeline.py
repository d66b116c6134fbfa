"""The pipeline flow: validate → tokenize → pad → train → evaluate → embed, each a cached Prefect task.

Run once:      python flows/pipeline.py [--config data/configs/default.yaml] [--out runs/default]
As a service:  see prefect.yaml (`prefect deploy --all`).
"""

from __future__ import annotations

import sys
from typing import Literal

from prefect import flow

from mtl_model.cli import run_cli
from mtl_model.pipeline import Steps, prepare_run, run_pipeline
from tasks.data import build_vocab, pad_data, tokenize_data, validate_inputs
from flows.embed import embed_corpus
from tasks.model import compare_policies, evaluate_model, train_model

PREFECT_STEPS = Steps(
    validate_inputs, tokenize_data, pad_data, train_model, evaluate_model, embed_corpus, compare_policies, build_vocab,
)


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
        freeze_policy: Override of `train.freeze_policy`: `none`, `all`, `backbone`, `head:<task>`, `top:<k>`, `gradual`, `lora`.
        device: `auto` picks CUDA when available, else CPU.
        overrides: `section.field=value` settings applied over the config, e.g. `train.max_steps=500`.
        only_tasks: Train and evaluate only these tasks of the config (default: all).
    """
    plan, chosen_device, precision = prepare_run(
        config_path, out=out, data_dir=data_dir, freeze_policy=freeze_policy, device=device, overrides=overrides, only_tasks=only_tasks
    )
    return run_pipeline(plan, device=chosen_device, precision=precision, steps=PREFECT_STEPS)


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        pipeline, argv, "python flows/pipeline.py",
        "Train, evaluate and embed with a multi-task sentence transformer (a Prefect flow).",
    )


if __name__ == "__main__":
    sys.exit(main())
