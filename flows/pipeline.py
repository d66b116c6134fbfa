"""The pipeline flow: validate → tokenize → pad → train → evaluate → embed, each a cached Prefect task.

Run once:      python flows/pipeline.py [--config data/configs/default.yaml] [--out runs/default]
As a service:  see prefect.yaml (`prefect deploy --all`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys

from prefect import flow

from mtl_model.cli import run_cli
from mtl_model.options import PipelineOptions
from mtl_model.pipeline import RunResult, Steps, prepare_run, run_pipeline
from tasks import data, embed, model
from tasks.remote import train_on_best_worker
from tasks.server import tie_temporary_server_to_this_process

PREFECT_STEPS = Steps(
    validate=data.validate,
    build_vocab=data.build_vocab,
    tokenize=data.tokenize,
    pad=data.pad,
    train=model.train,
    evaluate=model.evaluate,
    embed=embed.embed,
    compare=model.compare,
)


@flow(name="mtl-pipeline")
def pipeline(options: PipelineOptions = PipelineOptions()) -> RunResult:
    """Train, evaluate and serve the multi-task sentence transformer described by a YAML config.

    Args:
        options: Config, output folder, data folder, freeze policy, device, `--set` overrides, tasks, and
            whether training goes to a GPU worker (see each field's description).
    """
    plan, device, precision = prepare_run(options)
    routed_train = functools.partial(train_on_best_worker, gpu=options.gpu, settings=plan.config.remote_training)
    steps = dataclasses.replace(PREFECT_STEPS, train=routed_train)
    return run_pipeline(plan, device=device, precision=precision, steps=steps)


def main(argv: list[str] | None = None) -> int:
    tie_temporary_server_to_this_process()
    return run_cli(
        pipeline,
        PipelineOptions,
        argv,
        "python flows/pipeline.py",
        "Train, evaluate and embed with a multi-task sentence transformer (a Prefect flow).",
    )


if __name__ == "__main__":
    sys.exit(main())
