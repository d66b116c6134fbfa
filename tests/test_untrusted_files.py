"""Files other machines can write are read without running their code: checkpoints, staged jobs and backbones.

Every planted file here carries a pickle whose `__reduce__` would create a marker folder when unpickled (the test
`test_the_planted_payload_runs_code_when_unpickled_the_unsafe_way` shows that it does); the tests check that the
marker never appears and that the file is refused or skipped with its reason.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mtl_model.checkpoint import Checkpointer, check_plain, load_plain, plain
from mtl_model.config import ModelConfig, TrainConfig
from mtl_model.contracts import TokenizedTask, TrainRequest
from mtl_model.errors import ConfigError
from mtl_model.train import TrainingRun, train_multitask
from tests.conftest import REPO_ROOT
from tests.helpers import one_batch_split, splits, tiny_model

CHECKPOINT_LOGGER = "mtl_model.checkpoint"


class Payload:
    """Unpickling this creates `marker` (a folder): stands for any code a planted pickle could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def plant(path: Path, marker: Path, form: str = "archive") -> Path:
    """A malicious `path`: a torch.save archive (what a checkpoint or pytorch_model.bin is) or a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"step": 1, "fingerprint": "x", "model": Payload(marker)}
    if form == "archive":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def test_the_planted_payload_runs_code_when_unpickled_the_unsafe_way(tmp_path):
    """The control: these files do run code under a plain unpickler, so the tests below prove something. The only
    unsafe loads in the project: of payloads this test planted a moment ago in its own tmp_path, to prove them."""
    for form in ("archive", "pickle"):
        marker = tmp_path / f"ran-{form}"
        path = plant(tmp_path / f"evil-{form}.pt", marker, form)
        if form == "archive":
            torch.load(path, weights_only=False)
        else:
            pickle.loads(path.read_bytes())
        assert marker.is_dir()


def ignored(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CHECKPOINT_LOGGER and r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ("archive", "not a plain-tensor checkpoint (refused to unpickle os.makedirs)"),
        ("pickle", "unreadable (not a complete torch.save archive: truncated, or another format)"),
    ],
)
def test_a_planted_checkpoint_runs_no_code_and_training_starts_afresh(tiny_backbone, tmp_path, caplog, form, reason):
    marker = tmp_path / "ran"
    evil = plant(tmp_path / "out" / "checkpoints" / "step-00000001.pt", marker, form)
    config = TrainConfig(max_steps=3, batch_size=4)  # no checkpoint_every: training looks for checkpoints anyway
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        result = train_multitask(
            tiny_model(tiny_backbone), splits(), config, device="cpu", checkpointer=Checkpointer(evil.parent, "fp")
        )
    assert not marker.exists()
    assert result.resumed_from is None and result.steps == 3
    fresh = train_multitask(tiny_model(tiny_backbone), splits(), config, device="cpu")
    assert result.losses == fresh.losses  # from scratch: the same run as without the planted file
    assert ignored(caplog) == [f"ignoring checkpoint {evil}: {reason}"]


def test_unusable_checkpoints_are_skipped_with_their_reasons_and_an_older_valid_one_is_resumed(
    tiny_backbone, tmp_path, caplog
):
    """Newest first: a planted pickle, another setup's checkpoint, one with the wrong parts, a truncated one; then
    the valid step 2, from which the run ends bitwise where the uninterrupted one did."""
    folder, marker = tmp_path / "checkpoints", tmp_path / "ran"
    config = TrainConfig(max_steps=6, batch_size=4, eval_every=2, checkpoint_every=2, loss_weighting="uncertainty")
    validation = {"topic": one_batch_split(seed=9, rows=16)}

    def train(checkpointer: Checkpointer, seed: int = 0):
        model = tiny_model(tiny_backbone, seed=seed)
        result = train_multitask(
            model, splits(), config, device="cpu", validation_splits=validation, checkpointer=checkpointer
        )
        return result, model.state_dict()

    straight, straight_weights = train(Checkpointer(folder, "fp", keep=10))
    assert [p.name for p in Checkpointer(folder, "fp").files()] == ["step-00000002.pt", "step-00000004.pt"]
    step4 = folder / "step-00000004.pt"
    step4.write_bytes(step4.read_bytes()[: step4.stat().st_size // 2])  # cut short, as by a full disk
    Checkpointer(folder, "another setup", keep=10).save({"step": 5})
    Checkpointer(folder, "fp", keep=10).save({"step": 6, "model": {}})  # the right tag, not a training state
    evil = plant(folder / "step-00000007.pt", marker)

    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        resumed, resumed_weights = train(Checkpointer(folder, "fp", keep=10), seed=1)  # other initial weights
    assert not marker.exists()
    assert ignored(caplog) == [
        f"ignoring checkpoint {evil}: not a plain-tensor checkpoint (refused to unpickle os.makedirs)",
        f"ignoring checkpoint {folder / 'step-00000006.pt'}: not a training checkpoint: missing "
        "['bad_evals', 'best_state', 'ema', 'optimizer', 'result', 'rng_cuda', 'rng_numpy', 'rng_torch', 'sampler', "
        "'scaler', 'scheduler', 'streams', 'uncertainty'], unexpected []",
        f"ignoring checkpoint {folder / 'step-00000005.pt'}: written by a different config or data",
        f"ignoring checkpoint {step4}: unreadable (not a complete torch.save archive: truncated, or another format)",
    ]
    assert resumed.resumed_from == 2
    assert (resumed.losses, resumed.log, resumed.best_step) == (straight.losses, straight.log, straight.best_step)
    assert resumed.loss_weights == straight.loss_weights
    assert all(torch.equal(straight_weights[name], resumed_weights[name]) for name in straight_weights)


def test_a_checkpoint_of_another_model_or_named_for_another_step_is_skipped(tiny_backbone, tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    config = TrainConfig(max_steps=4, batch_size=4, checkpoint_every=2)
    train_multitask(tiny_model(tiny_backbone), splits(), config, device="cpu", checkpointer=Checkpointer(folder, "fp"))
    shutil.copyfile(folder / "step-00000002.pt", folder / "step-00000003.pt")  # renamed: not what its name says
    run = TrainingRun(config, device="cpu")
    run.setup(tiny_model(tiny_backbone, projection_dim=8), splits())  # other shapes, same parameter names
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        assert Checkpointer(folder, "fp").latest(check=run.check_state) is None
    assert ignored(caplog) == [
        f"ignoring checkpoint {folder / 'step-00000003.pt'}: not the checkpoint of step 3 its name says "
        "(it holds step 2)",
        f"ignoring checkpoint {folder / 'step-00000002.pt'}: not a checkpoint of this model: model has weights of "
        "other shapes",
    ]


@pytest.mark.parametrize(
    "train",
    [
        {"loss_weighting": "uncertainty", "eval_every": 2},
        {"freeze_policy": "lora"},
        {"freeze_policy": "gradual", "unfreeze_every": 1},
        {"task_sampling": "temperature", "group_by_length": True, "gradient_accumulation_steps": 2},
    ],
)
def test_a_training_state_holds_only_what_the_weights_only_unpickler_reads(tiny_backbone, tmp_path, train):
    run = TrainingRun(TrainConfig(max_steps=4, batch_size=4, **train), device="cpu")
    run.setup(tiny_model(tiny_backbone), splits(), validation_splits={"topic": one_batch_split(seed=9, rows=16)})
    run.begin()
    for _ in range(3):
        run.step()
        if run.eval_due:
            run.evaluate()
    run.log.append({"step": 3, "kind": "eval", "task": "", "name": "x", "value": np.float32(0.5)})  # numpy leaks in
    run.best_value = np.float64(0.25)
    state = run.state_dict()
    check_plain(state)
    assert type(state["result"]["log"][-1]["value"]) is float and type(state["result"]["best_value"]) is float
    path = Checkpointer(tmp_path, "fp").save(state)
    assert load_plain(path)["rng_numpy"] == run.rng.bit_generator.state


def test_saving_refuses_what_the_weights_only_unpickler_would_refuse(tmp_path):
    checkpointer = Checkpointer(tmp_path, "fp")
    with pytest.raises(TypeError, match=r"state\['result'\]\['losses'\]\[1\] is a numpy.float64"):
        checkpointer.save({"step": 1, "result": {"losses": [0.5, np.float64(0.25)]}})
    with pytest.raises(TypeError, match=r"state\['streams'\] is a collections.defaultdict"):
        checkpointer.save({"step": 1, "streams": defaultdict(list)})
    assert checkpointer.files() == []
    assert plain({"a": np.arange(3), "b": (np.int64(2), np.float32(0.5)), "c": torch.ones(1)})["b"] == (2, 0.5)
    check_plain(torch.amp.GradScaler("cpu", enabled=True).state_dict())  # the fp16 scaler's state: Python numbers


# ----------------------------------------------------------------------------------- no unsafe loads in source

SOURCE_DIRS = ("mtl_model", "tasks", "flows")
UNSAFE_TEXT = ("weights_only=False", "allow_pickle=True", "trust_remote_code=True")
UNSAFE_CALLS = {  # module → its functions that can build arbitrary objects from bytes
    **dict.fromkeys(("pickle", "_pickle", "cPickle", "cloudpickle", "dill"), {"load", "loads", "Unpickler"}),
    "joblib": {"load"},
    "marshal": {"load", "loads"},
    "shelve": {"open"},
    "yaml": {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"},
    "torch": {"load"},  # a `torch.load(...)` call is fine with `weights_only=True`; importing it bare is not
}


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """(line, what) for each way `source` could unpickle untrusted bytes: `torch.load` without
    `weights_only=True`, any pickle-family load, `pandas.read_pickle`, numpy's `allow_pickle=True`, a model's
    `trust_remote_code=True`, yaml's object-building loaders, or importing such a loader under its bare name."""
    found = [
        (number, text)
        for number, line in enumerate(source.splitlines(), start=1)
        for text in UNSAFE_TEXT
        if text in line.replace(" ", "")
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and any(a.name in UNSAFE_CALLS.get(node.module, ()) for a in node.names):
            found.append((node.lineno, f"from {node.module} import a loader"))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name = node.func.attr
        if owner == "torch" and name == "load":
            safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
            if not safe:
                found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in UNSAFE_CALLS.get(owner, ()) or name == "read_pickle":
            found.append((node.lineno, f"{owner}.{name}"))
    return sorted(found)


def test_the_unsafe_load_rule_catches_what_it_should():
    good = "torch.load(p, map_location='cpu', weights_only=True)\nimport pickle\npickle.dumps(1)\nyaml.safe_load(t)\n"
    assert unsafe_loads(good) == []
    bad = (
        "torch.load(p)\n"
        "torch.load(\n    p,\n    weights_only=False,\n)\n"
        "pickle.loads(b)\n"
        "from dill import load\n"
        "from torch import load\n"
        "pd.read_pickle(p)\n"
        "np.load(p, allow_pickle = True)\n"
        "AutoModel.from_pretrained(p, trust_remote_code=True)\n"
        "yaml.load(text, Loader=yaml.Loader)\n"
        "joblib.load(p)\n"
    )
    assert [line for line, _ in unsafe_loads(bad)] == [1, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13]


def test_no_source_file_unpickles_untrusted_bytes():
    """Checkpoints are read with `torch.load(..., weights_only=True)` and everything else is JSON, Parquet or
    safetensors. Nothing is allow-listed."""
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {what}"
        for folder in SOURCE_DIRS
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for line, what in unsafe_loads(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    assert any("weights_only=True" in p.read_text() for p in (REPO_ROOT / "mtl_model").rglob("*.py"))  # it scans


# -------------------------------------------------------------------------- a staged job in a shared folder


def staged_request() -> dict:
    task = TokenizedTask(task="t", kind="sentence", labels=["a", "b"], files={"train": "/shared/t/train.parquet"})
    request = TrainRequest(
        tokenized=[task],
        model=ModelConfig(backbone="/shared/inputs/backbone"),
        train=TrainConfig(max_steps=2),
        max_seq_length=16,
        loss_weights={"t": 1.0},
    )
    return request.model_dump(mode="json")


@pytest.mark.parametrize(
    ("where", "extra"),
    [
        ((), {"__reduce__": ["os.system", "touch /tmp/x"]}),
        (("model",), {"trust_remote_code": True}),
        (("train",), {"callbacks": ["evil.Callback"]}),
        (("tokenized", 0), {"py/object": "os.system"}),
    ],
)
def test_a_staged_job_is_json_validated_and_unexpected_keys_are_rejected(tmp_path, where, extra):
    from flows.train import main

    job = staged_request()
    assert TrainRequest.model_validate(json.loads(json.dumps(job))).model_dump(mode="json") == job  # valid as staged
    part = job
    for key in where:
        part = part[key]
    part.update(extra)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        main(["--request", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert not (tmp_path / "out").exists()


def test_a_pickle_staged_as_job_json_is_not_unpickled(tmp_path):
    from flows.train import main

    marker = tmp_path / "ran"
    path = plant(tmp_path / "job.json", marker, form="pickle")
    with pytest.raises(ValueError):  # JSONDecodeError or UnicodeDecodeError: it is read as JSON text
        main(["--request", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert not marker.exists()


@pytest.mark.parametrize("form", ["archive", "pickle"])
def test_a_staged_backbone_with_a_pickled_pytorch_model_bin_runs_no_code(tiny_backbone, tmp_path, form):
    """transformers reads `pytorch_model.bin` with `torch.load(..., weights_only=True)`: it refuses the payload."""
    from mtl_model.backbone import load_auto_model, load_encoder

    staged, marker = tmp_path / "inputs" / "backbone", tmp_path / "ran"
    staged.mkdir(parents=True)
    shutil.copyfile(tiny_backbone / "config.json", staged / "config.json")
    plant(staged / "pytorch_model.bin", marker, form)
    for load in (load_encoder, load_auto_model):
        with pytest.raises(
            ConfigError, match=r"weights file holds more than tensors and was not loaded: .*GLOBAL os.makedirs"
        ):
            load(str(staged))
        assert not marker.exists()
