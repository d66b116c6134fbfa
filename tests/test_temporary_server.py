"""A command-line flow run's temporary Prefect server dies with the run, even when the run is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import REPO_ROOT, SAMPLE_DIR
from tests.helpers import write_config


def test_a_sigkilled_flow_leaves_no_temporary_server(tmp_path, tiny_backbone):
    config = write_config(tmp_path, tiny_backbone, SAMPLE_DIR, max_steps=2000)  # long enough to be killed mid-run
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",  # a busy 2-core CI machine starts it slowly
    )
    log = open(tmp_path / "flow.log", "w")  # noqa: SIM115 (closed in finally)
    command = [sys.executable, "flows/pipeline.py", "--config", str(config), "--out", str(tmp_path / "out")]
    run = subprocess.Popen([*command, "--device", "cpu"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, server = time.monotonic() + 120, None
        while server is None:
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "flow.log").read_text()[-3000:]
            children = psutil.Process(run.pid).children(recursive=True)
            server = next((c for c in children if "uvicorn" in " ".join(c.cmdline())), None)
            time.sleep(0.2)
        while not (tmp_path / "out" / "tokenized").exists():  # the flow is running its tasks against the server
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "flow.log").read_text()[-3000:]
            time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        gone, alive = psutil.wait_procs([server], timeout=20)
        assert server in gone and not alive, f"temporary server {server.pid} outlived its SIGKILLed flow"
    finally:
        log.close()
        run.kill()
        for child in psutil.Process().children(recursive=True):
            child.kill()
