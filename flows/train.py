"""The training flow on its own: what a GPU worker runs when the pipeline sends training there.

The pipeline stages a `TrainJob` (tokenized Parquet and settings) on shared storage and starts the
`mtl-train/train-gpu` deployment (prefect.yaml) with `run_deployment`; this flow trains on the worker's
best device into `out` on that storage, and the pipeline copies the model back.

Run once:  python flows/train.py --job <shared>/mtl-jobs/<key>/job.json --out <dir> [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from mtl_model.config import DeviceChoice
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.remote import TrainJob, write_worker_record
from mtl_model.runtime import quiet_third_party
from tasks.model import train_model


@flow(name="mtl-train")
def train(job: TrainJob, out: str, device: DeviceChoice = "auto") -> dict:
    """Train the multi-task model described by `job` into `out` (model/, training.json, worker.json).

    Args:
        job: Tokenized data on shared storage, the model and training settings, and the loss weights.
        out: Output folder on shared storage.
        device: `auto` picks CUDA when this worker has it, else CPU.
    """
    quiet_third_party()
    chosen = resolve_device(device)
    precision = resolve_precision(chosen, job.train.precision)
    get_run_logger().info("training on %s (%s) into %s", chosen, precision, out)
    result = train_model(
        [t.model_dump() for t in job.tokenized], job.model, job.train, job.max_seq_length, job.loss_weights,
        chosen, precision, out, job.tokenizer_dir,
    )
    write_worker_record(out, device=chosen, flow_run_id=flow_run.get_id())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python flows/train.py", description="Train from a staged TrainJob (a Prefect flow).")
    parser.add_argument("--job", required=True, metavar="JSON", help="a TrainJob as JSON (what the pipeline stages)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    with open(args.job) as handle:
        job = TrainJob.model_validate(json.load(handle))
    print(json.dumps(train(job, args.out, args.device), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
