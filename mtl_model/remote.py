"""Training on another machine, without Prefect: what goes to shared storage and what comes back.

The pipeline and a GPU worker exchange files through a folder both see (`remote_training.shared_dir`):

    <shared>/mtl-jobs/<job key>/inputs/   tokenized Parquet (+ a local backbone or built vocabulary), staged once
    <shared>/mtl-jobs/<job key>/runs/<id>/ what one training run writes there: model/, training.json, worker.json

The job key hashes the inputs' contents and the training settings, so an identical job reuses its staged
inputs. A `TrainRequest` (the training flow's one typed parameter) names the staged files; every path in it
lies under the shared folder, so the worker never reads the pipeline's own output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from mtl_model.backbone import BUNDLED_PREFIX, SCRATCH_BACKBONE, backbone_fingerprint
from mtl_model.contracts import TrainedModel, TrainRequest
from mtl_model.io import atomic_dir, atomic_path, json_sha256, source_fingerprint, write_json_atomic
from mtl_model.tokenization import read_metadata

JOBS_FOLDER = "mtl-jobs"
WORKER_RECORD = "worker.json"  # which machine, process and device trained
TRAIN_OUTPUTS = (
    "training.json",
    "train_log.parquet",
    "training_curve.png",
    WORKER_RECORD,
)  # copied back next to model/


def job_key(request: TrainRequest) -> str:
    """Content hash of a training job: data, backbone contents and settings (not paths)."""
    return json_sha256(
        {
            "data": {
                t.task: {split: source_fingerprint(path) for split, path in sorted(t.files.items())}
                for t in request.tokenized
            },
            "backbone": backbone_fingerprint(request.model.backbone),
            "model": request.model.model_dump(mode="json"),
            "train": request.train.model_dump(mode="json"),
            "max_seq_length": request.max_seq_length,
            "loss_weights": request.loss_weights,
        }
    )[:24]


def _is_local_dir(source: str) -> bool:
    return source != SCRATCH_BACKBONE and not source.startswith(BUNDLED_PREFIX) and Path(source).expanduser().is_dir()


def stage_training_job(request: TrainRequest, *, shared_dir: str | Path) -> tuple[TrainRequest, Path]:
    """Copy a request's inputs under `shared_dir` (once per content); the same request with every path there.

    Returns the job and its folder; each training run writes to its own `<folder>/runs/<id>`. Only the train and
    validation splits travel (evaluation stays with the pipeline). A backbone or tokenizer that is a local
    folder travels too; a hub id or `bundled:` model is resolved on the worker.
    """
    job_dir = Path(os.path.abspath(os.path.expanduser(shared_dir))) / JOBS_FOLDER / job_key(request)
    inputs = job_dir / "inputs"
    tokenized, model_config = request.tokenized, request.model
    tokenizer_source = read_metadata(tokenized[0].files["train"])["tokenizer"]
    staged_dirs = {  # local folder → its copy under inputs/ (the backbone's own tokenizer is staged once, with it)
        source: inputs / ("backbone" if source == model_config.backbone else "tokenizer")
        for source in (model_config.backbone, tokenizer_source)
        if _is_local_dir(source)
    }
    if not inputs.is_dir():
        with atomic_dir(inputs) as temp:
            for t in tokenized:
                for split in ("train", "validation"):
                    if split in t.files:
                        target = temp / "tokenized" / t.task / f"{split}.parquet"
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(t.files[split], target)
            for source, staged in staged_dirs.items():
                shutil.copytree(Path(source).expanduser(), temp / staged.name)
    staged_files = {
        t.task: {
            split: str(inputs / "tokenized" / t.task / f"{split}.parquet")
            for split in ("train", "validation")
            if split in t.files
        }
        for t in tokenized
    }
    job = request.model_copy(
        update={
            "tokenized": [t.model_copy(update={"files": staged_files[t.task]}) for t in tokenized],
            "model": model_config.model_copy(
                update={"backbone": str(staged_dirs.get(model_config.backbone, model_config.backbone))}
            ),
            "tokenizer_dir": str(staged_dirs[tokenizer_source]) if tokenizer_source in staged_dirs else None,
        }
    )
    write_json_atomic(
        job_dir / "job.json", job.model_dump(mode="json")
    )  # for `python flows/train.py --request` by hand
    return job, job_dir


def write_worker_record(out_dir: str | Path, *, device: str, flow_run_id: str | None) -> dict:
    """`<out>/worker.json`: which machine and process trained (the pipeline logs it; tests check it)."""
    record = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
        "device": device,
        "flow_run_id": flow_run_id,
    }
    write_json_atomic(Path(out_dir) / WORKER_RECORD, record)
    return record


def collect_training_output(remote_out: str | Path, out_dir: str | Path) -> TrainedModel:
    """Copy the trained model (and its logs) from shared storage into the pipeline's output folder; returns what
    the train step returns, with the worker's record."""
    remote_out, out_dir = Path(remote_out), Path(out_dir)
    if not (remote_out / "model" / "mtl_model.json").is_file():
        raise FileNotFoundError(
            f"the training run finished but {remote_out / 'model'} holds no model: is "
            f"remote_training.shared_dir the same storage on the worker?"
        )
    with atomic_dir(out_dir / "model") as temp:
        shutil.copytree(remote_out / "model", temp, dirs_exist_ok=True)
    for name in TRAIN_OUTPUTS:
        if (remote_out / name).is_file():
            with atomic_path(out_dir / name) as temp:
                shutil.copyfile(remote_out / name, temp)
    summary = json.loads((out_dir / "training.json").read_text())
    worker = json.loads((out_dir / WORKER_RECORD).read_text()) if (out_dir / WORKER_RECORD).is_file() else {}
    return TrainedModel(
        model_dir=str(out_dir / "model"), device=worker.get("device", "remote"), **summary, worker=worker
    )
