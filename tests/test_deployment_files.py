"""prefect.yaml, the Dockerfile and the README stay in step with the code."""

from __future__ import annotations

import importlib.util
import re

import yaml

from tests.conftest import REPO_ROOT


def load_flow(entrypoint: str):
    path, _, name = entrypoint.partition(":")
    spec = importlib.util.spec_from_file_location("deployment_entrypoint", REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_every_deployment_imports_and_its_parameters_validate():
    from prefect.flows import Flow

    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    assert deployments
    for deployment in deployments:
        flow = load_flow(deployment["entrypoint"])
        assert isinstance(flow, Flow)
        validated = flow.validate_parameters(deployment.get("parameters") or {})
        assert set(validated) <= set(flow.parameters.properties)
        config = deployment["parameters"].get("config_path")
        assert config is None or (REPO_ROOT / config).is_file()


def test_dockerfile_copies_existing_files_and_installs_the_readme_lock():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        *sources, _target = line.split()
        for source in sources:
            assert (REPO_ROOT / source.rstrip("/")).exists(), source
    assert "pip install -r requirements.lock" in dockerfile
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install --quiet -r requirements.lock" in makefile
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme and "flows/pipeline.py" in readme


def test_lock_pins_torch_and_the_prefect_fastapi_pair():
    lock = dict(line.split("==") for line in (REPO_ROOT / "requirements.lock").read_text().splitlines() if "==" in line and not line.startswith("#"))
    assert lock["torch"] == "2.13.0"
    assert lock["prefect"].startswith("3.8.")
    major, minor = (int(x) for x in lock["fastapi"].split(".")[:2])
    assert (major, minor) < (0, 151)
