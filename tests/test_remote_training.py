"""Training on a GPU worker: the routing decision (Prefect client faked) and the shared-storage exchange."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect.client.schemas.objects import WorkerStatus
from prefect.exceptions import ObjectNotFound

from mtl_model.config import ModelConfig, RemoteTrainingConfig, TrainConfig
from mtl_model.contracts import TrainedModel, TrainRequest
from mtl_model.remote import collect_training_output, stage_training_job
from tasks.remote import NoGpuWorker, choose_training_target


class FakeClient:
    """The three reads `choose_training_target` makes, answered from plain data."""

    def __init__(
        self,
        pools: dict[str, list[WorkerStatus]] | None = None,
        deployments: dict[str, str] | None = None,
        down: bool = False,
    ):
        self.pools, self.deployments, self.down = pools or {}, deployments or {}, down
        self.calls: list[str] = []

    def read_work_pool(self, name):
        self.calls.append(f"pool {name}")
        if self.down:
            raise ConnectionError("connection refused")
        if name not in self.pools:
            raise ObjectNotFound(http_exc=Exception("404"))
        return SimpleNamespace(name=name)

    def read_workers_for_work_pool(self, work_pool_name):
        return [SimpleNamespace(name=f"w{i}", status=s) for i, s in enumerate(self.pools[work_pool_name])]

    def read_deployment_by_name(self, name):
        self.calls.append(f"deployment {name}")
        if name not in self.deployments:
            raise ObjectNotFound(http_exc=Exception("404"))
        return SimpleNamespace(name=name, work_pool_name=self.deployments[name])


SHARED = RemoteTrainingConfig(shared_dir="/mnt/shared")
READY = dict(pools={"gpu": [WorkerStatus.OFFLINE, WorkerStatus.ONLINE]}, deployments={"mtl-train/train-gpu": "gpu"})


def test_an_online_worker_with_the_deployment_and_shared_storage_gets_the_training():
    target = choose_training_target(FakeClient(**READY), SHARED, "auto")
    assert target.remote and target.reason == "work pool 'gpu' has ONLINE worker(s) w1"
    assert choose_training_target(FakeClient(**READY), SHARED, "require").remote


@pytest.mark.parametrize(
    "client, settings, reason",
    [
        (FakeClient(), SHARED, "work pool 'gpu' does not exist"),
        (
            FakeClient(pools={"gpu": [WorkerStatus.OFFLINE]}, deployments=READY["deployments"]),
            SHARED,
            "work pool 'gpu' has no ONLINE worker",
        ),
        (FakeClient(pools={"gpu": []}), SHARED, "work pool 'gpu' has no ONLINE worker"),
        (
            FakeClient(pools=READY["pools"]),
            SHARED,
            "work pool 'gpu' is online but deployment 'mtl-train/train-gpu' does not exist "
            "(run `prefect deploy --all`)",
        ),
        (
            FakeClient(pools=READY["pools"], deployments={"mtl-train/train-gpu": "cpu"}),
            SHARED,
            "deployment 'mtl-train/train-gpu' runs on work pool 'cpu', not 'gpu' (remote_training.work_pool)",
        ),
        (
            FakeClient(**READY),
            RemoteTrainingConfig(),
            "work pool 'gpu' is online but remote_training.shared_dir is not set",
        ),
        (
            FakeClient(down=True),
            SHARED,
            "the Prefect API could not be asked about work pool 'gpu': ConnectionError: connection refused",
        ),
    ],
)
def test_without_a_usable_gpu_worker_auto_trains_here_and_require_fails_saying_why(client, settings, reason):
    target = choose_training_target(client, settings, "auto")
    assert not target.remote and target.reason.startswith(reason)
    with pytest.raises(
        NoGpuWorker, match="^--gpu require: " + reason.replace("(", r"\(").replace(")", r"\)").replace("`", ".")
    ):
        choose_training_target(client, settings, "require")


def test_never_does_not_ask_the_api():
    client = FakeClient(**READY)
    assert choose_training_target(client, SHARED, "never").remote is False
    assert client.calls == []


def test_the_deployment_name_must_be_flow_slash_deployment():
    with pytest.raises(ValueError, match="remote_training.deployment must be `<flow name>/<deployment name>`"):
        RemoteTrainingConfig(deployment="train-gpu")


def _tokenized_task(tmp_path, tiny_backbone):
    """A real tokenized task: the pad step's output on two sentences."""
    from mtl_model.config import TaskSpec, TokenizeConfig
    from mtl_model.steps import pad, tokenize

    data = tmp_path / "data"
    data.mkdir()
    files = {"train": str(data / "train.csv"), "test": str(data / "test.csv")}
    for path in files.values():
        Path(path).write_text("text,label\nthe cat sat,a\nthe dog ran,b\n")
    task = TaskSpec(name="t", kind="sentence", format="csv", files=files, labels=["a", "b"])
    encoded = tokenize(
        task=task,
        files=files,
        config=TokenizeConfig(max_seq_length=16),
        backbone=str(tiny_backbone),
        out_dir=str(tmp_path / "run"),
    )
    return pad(encoded=encoded, max_seq_length=16, out_dir=str(tmp_path / "run"))


def test_staging_copies_the_data_and_a_local_backbone_once_per_content(tmp_path, tiny_backbone):
    tokenized = [_tokenized_task(tmp_path, tiny_backbone)]
    model, train = ModelConfig(backbone=str(tiny_backbone)), TrainConfig(max_steps=2)

    def request(train: TrainConfig) -> TrainRequest:
        return TrainRequest(tokenized=tokenized, model=model, train=train, max_seq_length=16, loss_weights={"t": 1.0})

    job, job_dir = stage_training_job(request(train), shared_dir=tmp_path / "shared")

    assert job_dir.parent == (tmp_path / "shared" / "mtl-jobs").resolve()
    staged_train = job_dir / "inputs" / "tokenized" / "t" / "train.parquet"
    assert job.tokenized[0].files == {"train": str(staged_train)}
    assert staged_train.read_bytes() == open(tokenized[0].files["train"], "rb").read()
    assert job.model.backbone == job.tokenizer_dir == str(job_dir / "inputs" / "backbone")
    assert (job_dir / "inputs" / "backbone" / "config.json").is_file()
    assert TrainRequest.model_validate(json.loads((job_dir / "job.json").read_text())) == job

    mtime = staged_train.stat().st_mtime_ns
    again, same_dir = stage_training_job(request(train), shared_dir=tmp_path / "shared")
    assert (again, same_dir) == (
        job,
        job_dir,
    ) and staged_train.stat().st_mtime_ns == mtime  # same content: reused as is
    _, other_dir = stage_training_job(request(TrainConfig(max_steps=3)), shared_dir=tmp_path / "shared")
    assert other_dir != job_dir  # other settings: another job


def test_collecting_copies_the_model_back_or_says_where_it_is_missing(tmp_path):
    remote_out, out = tmp_path / "shared" / "train", tmp_path / "run"
    with pytest.raises(
        FileNotFoundError, match="holds no model: is remote_training.shared_dir the same storage on the worker"
    ):
        collect_training_output(remote_out, out)
    (remote_out / "model").mkdir(parents=True)
    (remote_out / "model" / "mtl_model.json").write_text("{}")
    summary = {
        "trained": True,
        "steps": 3,
        "freeze_policy": "none",
        "precision": "bf16",
        "trainable_params": 5,
        "total_params": 9,
        "seconds": 1.5,
    }
    (remote_out / "training.json").write_text(json.dumps(summary))
    (remote_out / "worker.json").write_text(json.dumps({"hostname": "gpu-1", "device": "cuda", "pid": 7}))
    result = collect_training_output(remote_out, out)
    assert result == TrainedModel(
        model_dir=str(out / "model"),
        device="cuda",
        **summary,
        worker={"hostname": "gpu-1", "device": "cuda", "pid": 7},
    )
    assert (out / "model" / "mtl_model.json").read_text() == "{}"


class FakeRunClient:
    """A flow run whose state types follow `states` (the last repeats); records the states proposed."""

    def __init__(self, states: list[str], after_cancel: str = "CANCELLED"):
        from prefect.client.schemas.objects import StateType

        self.types, self.proposed = [StateType(s) for s in states], []
        self.after_cancel = StateType(after_cancel)  # COMPLETED: a worker took it and finished meanwhile

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_flow_run(self, flow_run_id):
        state_type = self.types.pop(0) if len(self.types) > 1 else self.types[0]
        return SimpleNamespace(
            id=flow_run_id, state=SimpleNamespace(type=state_type, name=state_type.value.title(), message="")
        )

    def set_flow_run_state(self, flow_run_id, state, force=False):
        self.proposed.append((state.type.value, force))
        self.types = [self.after_cancel]


@pytest.fixture
def remote_task(monkeypatch, tmp_path):
    """`train-remote`'s body with Prefect's API faked: returns (run it, the fake client)."""
    import logging

    import tasks.remote as routed

    def run(states: list[str], after_cancel: str = "CANCELLED", **settings):
        client = FakeRunClient(states, after_cancel)
        monkeypatch.setattr(routed, "get_client", lambda sync_client: client)
        monkeypatch.setattr(routed, "get_run_logger", lambda: logging.getLogger("test"))
        monkeypatch.setattr(routed, "run_deployment", lambda *a, **k: SimpleNamespace(id="run-1", name="fake-run"))
        monkeypatch.setattr(
            routed.remote,
            "stage_training_job",
            lambda *a, **k: (SimpleNamespace(model_dump=lambda mode: {}), tmp_path / "job"),
        )
        monkeypatch.setattr(routed, "CANCEL_WAIT_S", 0.2)
        config = RemoteTrainingConfig(shared_dir=str(tmp_path), poll_interval_s=0.01, **settings)
        with pytest.raises(Exception) as raised:
            routed.train_remote.task.fn(SimpleNamespace(), str(tmp_path / "out"), config)
        return raised.value, client

    return run


def test_a_run_left_scheduled_is_asked_to_cancel_then_reported_not_started(remote_task):
    from tasks.remote import RemoteRunNotStarted

    error, client = remote_task(["SCHEDULED"], start_timeout_s=0.05)
    assert isinstance(error, RemoteRunNotStarted) and "stayed Scheduled for 0.05s" in str(error)
    assert client.proposed == [
        ("CANCELLING", False)
    ]  # a worker that just took it stops its process; never a forced state


def test_a_run_finished_while_being_cancelled_is_collected_not_reported_unstarted(remote_task):
    error, client = remote_task(["SCHEDULED"], after_cancel="COMPLETED", start_timeout_s=0.05)
    assert client.proposed == [("CANCELLING", False)]
    assert isinstance(error, FileNotFoundError)  # it went on to collect the model (which this fake never wrote)


def test_a_run_past_run_timeout_is_cancelled_and_fails_the_step(remote_task):
    error, client = remote_task(["PENDING", "RUNNING"], run_timeout_s=0.05)
    assert isinstance(
        error, TimeoutError
    ) and "ran past remote_training.run_timeout_s (0.05s) and was cancelled" in str(error)
    assert client.proposed == [("CANCELLING", False)]


def test_a_failed_remote_run_fails_the_step_with_its_state(remote_task):
    error, client = remote_task(["RUNNING", "FAILED"])
    assert isinstance(error, RuntimeError) and "training flow run 'fake-run' on work pool 'gpu' ended Failed" in str(
        error
    )
    assert client.proposed == []
