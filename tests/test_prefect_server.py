"""Under a real Prefect server: `prefect deploy --all`, process workers, deployment runs, GPU-worker routing.

One server on 127.0.0.1 with a temporary PREFECT_HOME, three pools (`cpu` and `gpu` process pools, the
Docker example pool), every deployment of prefect.yaml, and a worker on `cpu` and on `gpu`. The "GPU"
worker trains on this CPU: what is proven is the routing. Everything is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterParentTaskRunId,
)

from tests.conftest import REPO_ROOT, SAMPLE_DIR

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120


def _die_with_pytest() -> None:
    """In the child before exec: SIGTERM when the parent dies, so a killed test run leaves no server behind."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    """A Prefect server, its workers, and the environment for CLI calls against it."""

    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            {
                "PREFECT_HOME": str(home),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        self.logs = home / "logs"
        self.logs.mkdir(parents=True)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_pytest,
        )
        self.processes[name] = process
        return process

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"the Prefect server did not start:\n{(self.logs / 'server.log').read_text()}")

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def wait_online(self, pool: str) -> None:
        from prefect.client.schemas.objects import WorkerStatus

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with self.client() as client:
            while time.monotonic() < deadline:
                if any(
                    w.status == WorkerStatus.ONLINE for w in client.read_workers_for_work_pool(work_pool_name=pool)
                ):
                    return
                time.sleep(0.5)
        raise AssertionError(f"no worker came online on pool {pool!r}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        for name in [n for n in self.processes if n != "server"] + ["server"]:
            if name in self.processes:
                self.stop(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    prefect = PrefectServer(home)
    try:
        prefect.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(prefect.port))
        prefect.wait_healthy()
        prefect.cli("work-pool", "create", "cpu", "--type", "process")
        prefect.cli("work-pool", "create", "gpu", "--type", "process")
        prefect.cli("work-pool", "create", "gpu-docker", "--type", "docker")
        prefect.cli("--no-prompt", "deploy", "--all")
        prefect.start("cpu-worker", "worker", "start", "--pool", "cpu", "--name", "cpu-worker")
        prefect.start("gpu-worker", "worker", "start", "--pool", "gpu", "--name", "gpu-worker")
        prefect.wait_online("cpu")
        prefect.wait_online("gpu")
        yield prefect
    finally:
        prefect.stop_all()


@pytest.fixture(scope="module")
def tiny_run_config(tmp_path_factory, tiny_backbone) -> Path:
    """The default config on the tiny in-code BERT, 12 steps, with shared storage for the GPU worker."""
    folder = tmp_path_factory.mktemp("server-config")
    config = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())
    config["name"] = "tiny"
    config["data_dir"] = str(SAMPLE_DIR)
    config["model"].update(backbone=str(tiny_backbone), projection_dim=16)
    config["train"].update(max_steps=12, batch_size=8)
    config["embed"]["precision"] = "fp32"
    config["remote_training"] = {"shared_dir": str(folder / "shared"), "start_timeout_s": 20, "poll_interval_s": 0.5}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _flow_run(client, flow_run_id: str):
    from uuid import UUID

    return client.read_flow_run(UUID(flow_run_id))


def test_every_deployment_is_on_the_server_and_bad_parameters_are_rejected_before_a_run(server):
    declared = [d["name"] for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]]
    with server.client() as client:
        assert sorted(d.name for d in client.read_deployments()) == sorted(declared)
        pipeline = client.read_deployment_by_name("mtl-pipeline/pipeline-default")
        assert pipeline.enforce_parameter_schema and pipeline.schedules[0].active
        assert pipeline.schedules[0].schedule.cron == "0 2 * * *"
        docker = client.read_deployment_by_name("mtl-train/train-gpu-docker")
        assert docker.job_variables["container_create_kwargs"]["device_requests"][0]["capabilities"] == [["gpu"]]
    rejected = server.cli(
        "deployment", "run", "mtl-pipeline/pipeline-default", "--param", 'options={"device": "gpu0"}', check=False
    )
    assert (
        rejected.returncode != 0
        and "'gpu0' is not one of ['auto', 'cpu', 'cuda']" in rejected.stdout + rejected.stderr
    )
    rejected = server.cli(
        "deployment",
        "run",
        "mtl-pipeline/pipeline-default",
        "--param",
        'options={"freeze_policy": "frozen"}',
        check=False,
    )
    assert rejected.returncode != 0 and "freeze_policy" in rejected.stdout + rejected.stderr


def test_the_pipeline_sends_training_to_the_gpu_worker(server, tiny_run_config, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "flows/pipeline.py",
            "--config",
            str(tiny_run_config),
            "--out",
            str(out),
            "--gpu",
            "require",
            "--json",
        ],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["metrics"]["topic"]["accuracy"] >= 0.0 and result["model"] == str(out / "model")
    worker = json.loads((out / "worker.json").read_text())
    assert (
        worker["parent_pid"] == server.processes["gpu-worker"].pid
    )  # the GPU pool's worker started the training process
    with server.client() as client:
        training = _flow_run(client, worker["flow_run_id"])
        assert training.work_pool_name == "gpu" and training.state.is_completed()
        assert client.read_flow(training.flow_id).name == "mtl-train"
    assert (out / "model" / "mtl_model.json").is_file() and (out / "metrics.json").is_file()
    assert "training on a GPU worker: work pool 'gpu' has ONLINE worker(s) gpu-worker" in done.stderr


def test_deploy_all_then_deployment_runs_complete_with_their_artifacts(server, tiny_run_config, tmp_path):
    params = {"config_path": str(tiny_run_config), "out": str(tmp_path / "pipeline"), "gpu": "never"}
    server.cli(
        "deployment",
        "run",
        "mtl-pipeline/pipeline-default",
        "--params",
        json.dumps({"options": params}),
        "--watch",
        timeout=300,
    )
    compare = {
        "config_path": str(tiny_run_config),
        "data_dir": str(SAMPLE_DIR),
        "out": str(tmp_path / "compare"),
        "policies": ["none", "all"],
        "overrides": ["train.max_steps=4"],
    }
    server.cli(
        "deployment",
        "run",
        "mtl-compare-freeze/compare-freeze",
        "--params",
        json.dumps({"options": compare}),
        "--watch",
        timeout=300,
    )

    with server.client() as client:
        artifacts = {}
        for deployment in ("pipeline-default", "compare-freeze"):
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True)),
            )
            run = next(
                r
                for r in runs
                if r.state
                and r.state.is_completed()
                and r.parameters.get("options", {}).get("out", "").startswith(str(tmp_path))
            )
            artifacts[deployment] = {a.key: a for a in client.read_artifacts() if a.flow_run_id == run.id}
    assert {"metrics", "embeddings"} <= set(artifacts["pipeline-default"])  # (validation is cached from the run above)
    assert artifacts["pipeline-default"]["metrics"].type == "table"
    assert {"freeze-comparison", "freeze-comparison-markdown"} <= set(artifacts["compare-freeze"])
    assert (tmp_path / "pipeline" / "embeddings" / "_SUCCESS").is_file()
    assert (tmp_path / "compare" / "comparison.md").is_file()


def test_a_run_nobody_picks_up_is_cancelled_and_training_runs_here(server, tiny_run_config, tmp_path):
    """The pool's only ONLINE worker serves another queue (as a busy or misconfigured GPU machine would): the
    pipeline sends the run, waits `start_timeout_s`, cancels it, and trains in-process."""
    server.cli("work-queue", "create", "idle", "--pool", "gpu")
    server.start(
        "idle-gpu-worker", "worker", "start", "--pool", "gpu", "--work-queue", "idle", "--name", "idle-gpu-worker"
    )
    server.stop("gpu-worker")
    with server.client() as client:  # wait until the stopped worker's run of the idle one is the pool's only poller
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "idle-gpu-worker" not in {w.name for w in client.read_workers_for_work_pool(work_pool_name="gpu")}:
            assert time.monotonic() < deadline, "the idle worker never registered"
            time.sleep(0.5)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "flows/pipeline.py", "--config", str(tiny_run_config), "--out", str(out), "--gpu", "auto"],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "training on a GPU worker: work pool 'gpu' has ONLINE worker(s)" in done.stderr
    assert re.search(
        r"stayed (Scheduled|Late) for 20s \(remote_training.start_timeout_s\) and was cancelled; "
        r"training in-process on cpu instead",
        done.stderr,
    ), done.stderr[-4000:]
    assert not (out / "worker.json").exists() and (out / "model" / "mtl_model.json").is_file()
    with server.client() as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train-gpu"])))
        assert "Cancelled" in {r.state.name for r in runs}
