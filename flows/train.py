"""The training flow on its own: what a GPU worker runs when the pipeline sends training there.

The pipeline stages a `TrainRequest` (tokenized Parquet and settings) on shared storage and starts the
`mtl-train/train-gpu` deployment (prefect.yaml) with `run_deployment`; this flow trains on the worker's
best device into `out` on that storage, and the pipeline copies the model back.

Run once:  python flows/train.py --request <shared>/mtl-jobs/<key>/job.json --out <dir> [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from mtl_model.config import DeviceChoice
from mtl_model.contracts import TrainedModel, TrainRequest
from mtl_model.device import resolve_device, resolve_precision
from mtl_model.remote import write_worker_record
from mtl_model.runtime import quiet_third_party
from tasks.model import train as train_step
from tasks.server import tie_temporary_server_to_this_process


@flow(name="mtl-train")
def train(request: TrainRequest, out: str, device: DeviceChoice = "auto") -> TrainedModel:
    """Train the multi-task model described by `request` into `out` (model/, training.json, worker.json).

    Args:
        request: Tokenized data on shared storage, the model and training settings, and the loss weights.
        out: Output folder on shared storage.
        device: `auto` picks CUDA when this worker has it, else CPU.
    """
    quiet_third_party()
    chosen = resolve_device(device)
    precision = resolve_precision(chosen, request.train.precision)
    get_run_logger().info("training on %s (%s) into %s", chosen, precision, out)
    trained = train_step(request, chosen, precision, out)
    write_worker_record(out, device=chosen, flow_run_id=flow_run.get_id())
    return trained


def main(argv: list[str] | None = None) -> int:
    tie_temporary_server_to_this_process()
    parser = argparse.ArgumentParser(
        prog="python flows/train.py", description="Train from a staged TrainRequest (a Prefect flow)."
    )
    parser.add_argument(
        "--request", required=True, metavar="JSON", help="a TrainRequest as JSON (what the pipeline stages)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    with open(args.request) as handle:
        request = TrainRequest.model_validate(json.load(handle))
    print(train(request, args.out, args.device).model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
