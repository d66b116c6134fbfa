"""The train step, routed: on a GPU worker when one is online, else in this process.

`choose_training_target` asks the Prefect API whether the GPU work pool exists, has an ONLINE worker and
has the training deployment. If so, `train-remote` stages the data on shared storage, starts the training
flow there with `run_deployment`, waits, and copies the model back; a run that nobody picks up within
`remote_training.start_timeout_s` is cancelled and training runs in-process instead (`--gpu require`:
the pipeline fails). Every decision is logged.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType, WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from mtl_model import remote
from mtl_model.config import GpuMode, RemoteTrainingConfig
from mtl_model.contracts import TrainedModel, TrainRequest
from mtl_model.errors import ConfigError
from tasks.model import MODEL_FILE, model_problems, train
from tasks.policies import CacheKey, io_task

NOT_STARTED = {StateType.SCHEDULED}  # includes `Late`: nobody has picked the run up
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
CANCEL_WAIT_S = 120.0  # how long a cancelled run's worker gets to stop its process


class NoGpuWorker(ConfigError):
    """`--gpu require`, but no GPU worker can take the training run."""


class RemoteRunNotStarted(RuntimeError):
    """The training run stayed Scheduled/Late past `remote_training.start_timeout_s` (and was cancelled)."""


@dataclass(frozen=True)
class TrainingTarget:
    """Where training runs and why."""

    remote: bool
    reason: str


def _what_is_missing(client: Any, settings: RemoteTrainingConfig) -> tuple[str | None, list[str]]:
    """(What stops remote training or None, names of the pool's ONLINE workers)."""
    pool = settings.work_pool
    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        return f"work pool {pool!r} does not exist", []
    online = sorted(
        w.name for w in client.read_workers_for_work_pool(work_pool_name=pool) if w.status == WorkerStatus.ONLINE
    )
    if not online:
        return f"work pool {pool!r} has no ONLINE worker", []
    try:
        deployment = client.read_deployment_by_name(settings.deployment)
    except ObjectNotFound:
        return (
            f"work pool {pool!r} is online but deployment {settings.deployment!r} does not exist "
            "(run `prefect deploy --all`)",
            online,
        )
    if deployment.work_pool_name != pool:
        return (
            f"deployment {settings.deployment!r} runs on work pool {deployment.work_pool_name!r}, not {pool!r} "
            "(remote_training.work_pool)",
            online,
        )
    if not settings.shared_dir:
        return (
            f"work pool {pool!r} is online but remote_training.shared_dir is not set "
            "(data and model travel through it)",
            online,
        )
    return None, online


def choose_training_target(client: Any, settings: RemoteTrainingConfig, mode: GpuMode) -> TrainingTarget:
    """Decide with the Prefect API (`client`: a sync Prefect client) whether training goes to the GPU pool.

    `never`: in-process. `auto`: the pool if it exists, has an ONLINE worker, has the training deployment
    and `shared_dir` is set; else in-process. `require`: the pool, or `NoGpuWorker` saying what is missing.
    """
    if mode == "never":
        return TrainingTarget(False, "--gpu never")
    pool = settings.work_pool
    online: list[str] = []
    try:
        problem, online = _what_is_missing(client, settings)
    except Exception as exc:  # the API is unreachable: nothing can be routed
        problem = f"the Prefect API could not be asked about work pool {pool!r}: {type(exc).__name__}: {exc}"
    if problem is None:
        return TrainingTarget(True, f"work pool {pool!r} has ONLINE worker(s) {', '.join(online)}")
    if mode == "require":
        raise NoGpuWorker(f"--gpu require: {problem}")
    return TrainingTarget(False, problem)


def _wait(client: Any, flow_run_id, *, until: set[StateType], timeout_s: float | None, poll_s: float):
    """Poll the flow run until its state type is in `until` or `timeout_s` passes; returns the last read."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.type in until:
            return flow_run
        if deadline is not None and time.monotonic() >= deadline:
            return flow_run
        time.sleep(poll_s)


def _cancel(client: Any, flow_run_id, message: str, poll_s: float):
    """Ask for `Cancelling` (not a forced `Cancelled`): the server cancels a run nobody picked up at once, and a
    worker that did pick it up kills its process. Waits for a final state (at most CANCEL_WAIT_S)."""
    client.set_flow_run_state(flow_run_id, Cancelling(message=message))
    return _wait(client, flow_run_id, until=FINAL, timeout_s=CANCEL_WAIT_S, poll_s=poll_s)


def _await_start(client: Any, flow_run: Any, settings: RemoteTrainingConfig) -> Any:
    """The flow run once a worker has taken it; cancelled, and `RemoteRunNotStarted`, when nobody did within
    `start_timeout_s` (unless a worker took and finished it while it was being cancelled)."""
    started = _wait(
        client,
        flow_run.id,
        until=set(StateType) - NOT_STARTED,
        timeout_s=settings.start_timeout_s,
        poll_s=settings.poll_interval_s,
    )
    if started.state is not None and started.state.type not in NOT_STARTED:
        return started
    reason = "no GPU worker started it within remote_training.start_timeout_s"
    cancelled = _cancel(client, flow_run.id, reason, settings.poll_interval_s)
    if cancelled.state.type == StateType.COMPLETED:
        return cancelled
    raise RemoteRunNotStarted(
        f"training flow run {flow_run.name!r} stayed {started.state.name if started.state else 'unscheduled'} "
        f"for {settings.start_timeout_s:g}s (remote_training.start_timeout_s) and was cancelled"
    )


def _await_end(client: Any, flow_run: Any, settings: RemoteTrainingConfig) -> Any:
    """The flow run in a final state; cancelled, and `TimeoutError`, past `run_timeout_s`."""
    final = _wait(client, flow_run.id, until=FINAL, timeout_s=settings.run_timeout_s, poll_s=settings.poll_interval_s)
    if final.state.type in FINAL:
        return final
    _cancel(client, flow_run.id, "remote_training.run_timeout_s passed", settings.poll_interval_s)
    raise TimeoutError(
        f"training flow run {flow_run.name!r} ran past remote_training.run_timeout_s "
        f"({settings.run_timeout_s:g}s) and was cancelled"
    )


@io_task(
    "train-remote",
    key=lambda request, out_dir, settings: CacheKey(
        inputs=request.input_paths(), config=[request, out_dir, settings.work_pool, settings.deployment]
    ),
    outputs=lambda out_dir, **_: [Path(out_dir) / MODEL_FILE],
    problems=model_problems,
    retries=0,
)
def train_remote(request: TrainRequest, out_dir: str, settings: RemoteTrainingConfig) -> TrainedModel:
    """Run the training deployment on the GPU pool and bring its model into `<out>/model`. Not retried: a
    failed remote training is reported as it is."""
    logger = get_run_logger()
    staged, job_dir = remote.stage_training_job(
        request,
        shared_dir=os.path.abspath(os.path.expanduser(settings.shared_dir)),  # not resolve(): the worker's path
    )
    remote_out = job_dir / "runs" / uuid.uuid4().hex[:12]  # one folder per attempt: runs never share one
    flow_run = run_deployment(
        settings.deployment,
        parameters={"request": staged.model_dump(mode="json"), "out": str(remote_out), "device": "auto"},
        timeout=0,
    )
    logger.info(
        "training flow run %r submitted to work pool %r (job folder %s)", flow_run.name, settings.work_pool, job_dir
    )
    with get_client(sync_client=True) as client:
        started = _await_start(client, flow_run, settings)
        logger.info(
            "training flow run %r is %s on work pool %r", flow_run.name, started.state.name, settings.work_pool
        )
        final = _await_end(client, flow_run, settings)
    if final.state.type != StateType.COMPLETED:
        raise RuntimeError(
            f"training flow run {flow_run.name!r} on work pool {settings.work_pool!r} ended "
            f"{final.state.name}: {final.state.message}"
        )
    trained = remote.collect_training_output(remote_out, out_dir)
    worker = trained.worker or {}
    logger.info(
        "trained on %s (pid %s, device %s) by flow run %r; model copied to %s",
        worker.get("hostname"),
        worker.get("pid"),
        worker.get("device"),
        flow_run.name,
        trained.model_dir,
    )
    return trained


def train_on_best_worker(
    request: TrainRequest, *, device: str, precision: str, out_dir: str, gpu: GpuMode, settings: RemoteTrainingConfig
) -> TrainedModel:
    """The pipeline's train step: on a GPU worker when `choose_training_target` says so, else in-process on
    `device` (decided at the entry point). Same arguments and result as `tasks.model.train`."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        target = choose_training_target(client, settings, gpu)
    if target.remote:
        logger.info("training on a GPU worker: %s; deployment %r", target.reason, settings.deployment)
        state = train_remote(request, out_dir, settings, return_state=True)
        try:
            return state.result()
        except RemoteRunNotStarted as exc:
            if gpu == "require":
                raise NoGpuWorker(f"--gpu require: {exc}") from exc
            logger.warning("%s; training in-process on %s instead", exc, device)
    else:
        logger.info("training in-process on %s (%s): %s", device, precision, target.reason)
    Path(out_dir, remote.WORKER_RECORD).unlink(
        missing_ok=True
    )  # an earlier remote run's record names the wrong trainer
    return train(request, device, precision, out_dir)
