"""The pipeline flow: validate → tokenize → pad → train → evaluate → embed, each a cached Prefect task.

Run once:      python flows/pipeline.py [--config data/configs/default.yaml] [--out runs/default]
As a service:  see prefect.yaml (`prefect deploy --all`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys

from prefect import flow

from flows.embed import embed_corpus
from mtl_model.cli import run_cli
from mtl_model.config import DeviceChoice, FreezePolicyText, GpuMode, Override
from mtl_model.pipeline import Steps, prepare_run, run_pipeline
from tasks.data import build_vocab, pad_data, tokenize_data, validate_inputs
from tasks.model import compare_policies, evaluate_model, train_model
from tasks.remote import train_on_best_worker

PREFECT_STEPS = Steps(
    validate_inputs, tokenize_data, pad_data, train_model, evaluate_model, embed_corpus, compare_policies, build_vocab,
)


@flow(name="mtl-pipeline")
def pipeline(
    config_path: str | None = None,
    out: str | None = None,
    data_dir: str | None = None,
    freeze_policy: FreezePolicyText | None = None,
    device: DeviceChoice = "auto",
    overrides: list[Override] | None = None,
    only_tasks: list[str] | None = None,
    gpu: GpuMode = "auto",
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
        gpu: Training on a GPU worker (config `remote_training`): `auto` uses one when its pool has an ONLINE
            worker, else trains here; `require` fails when none can take it; `never` always trains here.
    """
    plan, chosen_device, precision = prepare_run(
        config_path, out=out, data_dir=data_dir, freeze_policy=freeze_policy, device=device, overrides=overrides, only_tasks=only_tasks
    )
    routed_train = functools.partial(train_on_best_worker, gpu=gpu, settings=plan.config.remote_training)
    return run_pipeline(plan, device=chosen_device, precision=precision, steps=dataclasses.replace(PREFECT_STEPS, train=routed_train))


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        pipeline, argv, "python flows/pipeline.py",
        "Train, evaluate and embed with a multi-task sentence transformer (a Prefect flow).", gpu=True,
    )


if __name__ == "__main__":
    sys.exit(main())
