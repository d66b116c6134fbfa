"""prefect.yaml, the Dockerfile and the README stay in step with the code."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from tests.conftest import REPO_ROOT


def load_flow(entrypoint: str):
    path, _, name = entrypoint.partition(":")
    spec = importlib.util.spec_from_file_location("deployment_entrypoint", REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


# What the pipeline passes to the training deployment at run time (it has no defaults of its own).
TRAIN_RUN_PARAMETERS = {
    "request": {
        "tokenized": [
            {"task": "topic", "kind": "sentence", "labels": ["a", "b"], "files": {"train": "/shared/t/train.parquet"}}
        ],
        "model": {},
        "train": {"max_steps": 5},
        "max_seq_length": 64,
        "loss_weights": {"topic": 1.0},
    },
    "out": "/shared/mtl-jobs/k/train",
}


def test_every_deployment_imports_and_its_parameters_validate():
    from prefect.flows import Flow

    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in deployments} == {
        "pipeline-default",
        "train-gpu",
        "train-gpu-docker",
        "compare-freeze",
        "embed",
    }
    for deployment in deployments:
        flow = load_flow(deployment["entrypoint"])
        assert isinstance(flow, Flow)
        parameters = deployment.get("parameters") or {}
        at_run_time = TRAIN_RUN_PARAMETERS if flow.name == "mtl-train" else {}
        validated = flow.validate_parameters({**at_run_time, **parameters})
        assert set(validated) <= set(flow.parameters.properties)
        assert set(flow.parameters.required or []) <= set(parameters) | set(at_run_time), deployment["name"]
        config = parameters.get("options", {}).get("config_path")
        assert config is None or (REPO_ROOT / config).is_file()


def test_bad_parameter_values_are_rejected_by_the_flow_signatures():
    from prefect.exceptions import ParameterTypeError

    pipeline = load_flow("flows/pipeline.py:pipeline")
    for bad in ({"device": "gpu0"}, {"gpu": "maybe"}, {"freeze_policy": "frozen"}, {"overrides": ["max_steps=5"]}):
        with pytest.raises(ParameterTypeError):
            pipeline.validate_parameters({"options": bad})
    good = {"freeze_policy": "head:ner,head:topic", "overrides": ["train.max_steps=5"]}
    assert pipeline.validate_parameters({"options": good})["options"].gpu == "auto"
    compare = load_flow("flows/compare_freeze.py:compare_freeze")
    with pytest.raises(ParameterTypeError):
        compare.validate_parameters({"options": {"policies": ["none|model.backbone=x"]}})
    train = load_flow("flows/train.py:train")
    with pytest.raises(ParameterTypeError):
        train.validate_parameters(
            {**TRAIN_RUN_PARAMETERS, "request": {**TRAIN_RUN_PARAMETERS["request"], "tokenized": []}}
        )


def test_the_nightly_pipeline_and_the_gpu_pools():
    deployments = {d["name"]: d for d in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]}
    nightly = deployments["pipeline-default"]
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert nightly["parameters"]["options"]["config_path"] == "data/configs/default.yaml"
    assert (
        deployments["train-gpu"]["work_pool"]["name"] == "gpu"
    )  # RemoteTrainingConfig's default pool and deployment:
    from mtl_model.config import RemoteTrainingConfig

    assert RemoteTrainingConfig().work_pool == "gpu" and RemoteTrainingConfig().deployment == "mtl-train/train-gpu"
    docker = deployments["train-gpu-docker"]["work_pool"]["job_variables"]
    assert docker["container_create_kwargs"]["device_requests"] == [
        {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}
    ]


def test_lock_pins_torch_and_the_prefect_fastapi_pair():
    lock = dict(
        line.split("==")
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert lock["torch"] == "2.13.0"
    assert lock["prefect"].startswith("3.8.")
    major, minor = (int(x) for x in lock["fastapi"].split(".")[:2])
    assert (major, minor) < (0, 151)


def _created_pools(text: str) -> dict[str, str]:
    """Pool name → type, from every `prefect work-pool create NAME --type TYPE` command in `text`."""
    return dict(re.findall(r"prefect work-pool create ([\w-]+) --type ([\w-]+)", text))


def test_prefect_deploy_all_finds_every_pool_the_header_and_the_readme_create():
    """`prefect deploy --all` stops at the first deployment whose pool does not exist; following prefect.yaml's header
    (or the README's Deploying block) creates every pool a deployment names, with a type that can run it.
    tests/test_prefect_server.py runs these commands against a real server."""
    text = (REPO_ROOT / "prefect.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#") and "deployments:" not in line)
    header = header[: header.index("prefect deploy --all")]
    readme = (REPO_ROOT / "README.md").read_text()
    deploying = readme[readme.index("## Deploying") :]
    deploying = deploying[: deploying.index("prefect deploy --all")]
    deployments = yaml.safe_load(text)["deployments"]
    used = {d["work_pool"]["name"] for d in deployments}
    for where, created in (("prefect.yaml's header", _created_pools(header)), ("README", _created_pools(deploying))):
        assert used <= set(created), f"{where} does not create {used - set(created)} before `prefect deploy --all`"
        for deployment in deployments:
            pool = deployment["work_pool"]
            wanted = "docker" if "image" in pool.get("job_variables", {}) else "process"
            assert created[pool["name"]] == wanted, (where, deployment["name"], created[pool["name"]])
