"""The training engine: task mixing, learned loss weights, early stopping, determinism, crash/resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file

from mtl_model.callbacks import TrainerCallback
from mtl_model.config import TrainConfig
from mtl_model.evaluate import evaluate_task
from mtl_model.train import (
    STATE_KEYS,
    TaskSampler,
    TrainingRun,
    ema_decay_at,
    selection_value,
    train_multitask,
    update_ema,
)
from tests.conftest import REPO_ROOT, SAMPLE_DIR
from tests.helpers import one_batch_split, splits, tiny_model


@pytest.mark.parametrize(
    ("strategy", "counts"),
    [
        ("round_robin", {"a": 500, "b": 500}),
        ("proportional", {"a": 904, "b": 96}),
        ("temperature", {"a": 733, "b": 267}),
        ("all", {"a": 1000, "b": 1000}),
    ],
)
def test_task_sampling_mix_for_a_seed(strategy, counts):
    sampler = TaskSampler(strategy, {"a": 900, "b": 100}, np.random.default_rng(0), temperature=2.0)
    assert Counter(task for _ in range(1000) for task in sampler.next_tasks()) == counts
    expected = {"round_robin": [0.5, 0.5], "proportional": [0.9, 0.1], "temperature": [0.75, 0.25], "all": [0.5, 0.5]}[
        strategy
    ]
    assert sampler.probabilities.tolist() == pytest.approx(expected)  # temperature: sqrt(900):sqrt(100) = 3:1


def test_one_task_per_batch_with_round_robin(tiny_backbone):
    model = tiny_model(tiny_backbone)
    result = train_multitask(
        model, splits(), TrainConfig(max_steps=6, batch_size=4, task_sampling="round_robin"), device="cpu"
    )
    trained = [(row["step"], row["task"]) for row in result.log if row["name"] == "loss"]
    assert trained == [(1, "topic"), (2, "sentiment"), (3, "topic"), (4, "sentiment"), (5, "topic"), (6, "sentiment")]
    assert result.examples_seen == 24
    assert result.examples_per_task == {"topic": 12, "sentiment": 12}  # what an equal-compute single-task run needs


def test_uncertainty_weights_are_trained(tiny_backbone):
    model = tiny_model(tiny_backbone)
    config = TrainConfig(max_steps=20, batch_size=8, loss_weighting="uncertainty", head_learning_rate=0.05)
    result = train_multitask(model, splits(), config, device="cpu")
    assert set(result.loss_weights) == {"topic", "sentiment"}
    assert all(abs(weight - 1.0) > 0.05 for weight in result.loss_weights.values()), result.loss_weights


def test_gradient_accumulation_sees_more_examples_per_step(tiny_backbone):
    result = train_multitask(
        tiny_model(tiny_backbone),
        splits(),
        TrainConfig(max_steps=3, batch_size=4, gradient_accumulation_steps=2),
        device="cpu",
    )
    assert result.examples_seen == 3 * 2 * 2 * 4  # steps × micro-steps × tasks × batch
    assert result.examples_per_task == {"topic": 24, "sentiment": 24}


def test_early_stopping_keeps_the_best_evaluation(tiny_backbone):
    data = splits()
    validation = {"topic": one_batch_split(seed=9, rows=16)}
    frozen_lr = TrainConfig(
        max_steps=50,
        batch_size=8,
        learning_rate=1e-12,
        head_learning_rate=1e-12,
        eval_every=2,
        early_stopping_patience=1,
    )
    result = train_multitask(tiny_model(tiny_backbone), data, frozen_lr, device="cpu", validation_splits=validation)
    assert (result.steps, result.stopped_early, result.best_step) == (4, True, 2)

    model = tiny_model(tiny_backbone)
    learning = TrainConfig(max_steps=40, batch_size=8, learning_rate=1e-3, head_learning_rate=1e-2, eval_every=5)
    result = train_multitask(model, data, learning, device="cpu", validation_splits=validation)
    evals = [row["value"] for row in result.log if row["kind"] == "eval" and row["name"] == "mean"]
    assert len(evals) == 8 and result.best_value == max(evals)
    final = {"topic": evaluate_task(model, validation["topic"], "topic", batch_size=16, device="cpu")}
    assert selection_value(final, "mean", {"topic": "sentence"}) == result.best_value  # the model is the best step's


def test_eval_every_without_validation_split_is_an_error(tiny_backbone):
    with pytest.raises(ValueError, match="no task has a validation split"):
        train_multitask(tiny_model(tiny_backbone), splits(), TrainConfig(max_steps=2, eval_every=1), device="cpu")


# ---------------------------------------------------------------- callbacks, checkpoint and resume


class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_train_begin(self, run):
        self.events.append(("begin", run.global_step, run.total_steps))

    def on_step_end(self, run, step: int, total: int, loss: float):
        self.events.append(("step", step, total, loss))

    def on_evaluate(self, run, step: int, metrics: dict):
        self.events.append(("evaluate", step, sorted(metrics), run.eval_value))

    def on_train_end(self, run, result):
        self.events.append(("end", result.steps, result.best_step))


def test_callbacks_see_every_step_and_evaluation_in_order(tiny_backbone, caplog):
    recorder, on_step = Recorder(), []
    config = TrainConfig(max_steps=4, batch_size=8, eval_every=2)
    validation = {"topic": one_batch_split(seed=9, rows=16)}
    with caplog.at_level("INFO", logger="mtl_model.train"):
        result = train_multitask(
            tiny_model(tiny_backbone),
            splits(),
            config,
            device="cpu",
            validation_splits=validation,
            callbacks=[recorder],
            on_step=lambda *args: on_step.append(args),
        )
    losses, means = result.losses, [r["value"] for r in result.log if r["name"] == "mean"]
    assert recorder.events == [
        ("begin", 0, 4),
        ("step", 1, 4, losses[0]),
        ("step", 2, 4, losses[1]),
        ("evaluate", 2, ["topic"], means[0]),
        ("step", 3, 4, losses[2]),
        ("step", 4, 4, losses[3]),
        ("evaluate", 4, ["topic"], means[1]),
        ("end", 4, result.best_step),
    ]
    assert on_step == [(step, 4, loss) for step, loss in enumerate(losses, start=1)]  # the older function argument
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("step 1/4 loss") for m in messages)
    assert any(m.startswith("step 4: validation mean") for m in messages)


def _advance(run: TrainingRun, steps: int) -> None:
    for _ in range(steps):
        run.step()
        if run.eval_due:
            run.evaluate()


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_state_dict_and_load_state_dict_resume_bitwise(tiny_backbone, ema_decay):
    """The checkpoint and the resume are two matching methods: the same keys, and the same next steps."""
    import io

    config = TrainConfig(max_steps=6, batch_size=4, eval_every=2, loss_weighting="uncertainty", ema_decay=ema_decay)
    validation = {"topic": one_batch_split(seed=9, rows=16)}
    straight = TrainingRun(config, device="cpu")
    straight.setup(tiny_model(tiny_backbone), splits(), validation_splits=validation)
    straight.begin()
    _advance(straight, 3)
    state = straight.state_dict()
    assert tuple(state) == STATE_KEYS
    saved = io.BytesIO()
    torch.save(state, saved)  # a copy, as a checkpoint file is
    _advance(straight, 3)
    straight.finish()

    resumed = TrainingRun(config, device="cpu")
    resumed.setup(tiny_model(tiny_backbone, seed=1), splits(), validation_splits=validation)  # other initial weights
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))  # as Checkpointer reads
    resumed.begin()
    _advance(resumed, 3)
    assert resumed.done and resumed.resumed_from == 3
    result = resumed.finish()
    assert result.losses == straight.losses and result.log == straight.log and result.best_step == straight.best_step
    weights = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    with pytest.raises(ValueError, match=r"missing \['bad_evals'\], unexpected \['fingerprint'\]"):
        resumed.load_state_dict({**{k: v for k, v in state.items() if k != "bad_evals"}, "fingerprint": "x"})


def test_ema_decay_warms_up_then_holds():
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)  # early on the average follows the weights
    assert ema_decay_at(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay_at(0.999, 100_000) == 0.999


def test_update_ema_moves_floats_toward_the_weights_and_copies_integer_buffers():
    module = torch.nn.BatchNorm1d(2)  # weight, bias, running stats (float) and num_batches_tracked (int)
    with torch.no_grad():
        module.weight.fill_(1.0)
    module.num_batches_tracked.fill_(7)
    average = {name: torch.zeros_like(value) for name, value in module.state_dict().items()}
    update_ema(average, module, decay=0.75)
    assert average["weight"].tolist() == [0.25, 0.25]  # 0.75 · 0 + 0.25 · 1
    assert average["running_var"].tolist() == [0.25, 0.25]
    assert average["num_batches_tracked"].item() == 7
    assert module.weight.tolist() == [1.0, 1.0]  # the model is left alone


def test_ema_weights_are_the_ones_evaluated_selected_and_saved(tiny_backbone):
    """With `ema_decay`, evaluation sees the average, training goes on from the raw weights, and the kept model is
    the average at the best step."""
    seen: dict[int, dict] = {}

    class Snapshot(TrainerCallback):
        def on_evaluate(self, run, step, metrics):
            raw = run.model.state_dict()
            seen[step] = {
                "ema": {k: v.clone() for k, v in run.ema.items()},
                "raw_restored": all(torch.equal(raw[k], v) for k, v in before[step].items()),
                "metrics": metrics,
            }

    before: dict[int, dict] = {}

    class Before(TrainerCallback):
        def on_step_end(self, run, step, total, loss):
            before[step] = {k: v.clone() for k, v in run.model.state_dict().items()}

    config = TrainConfig(max_steps=4, batch_size=4, eval_every=2, ema_decay=0.99, learning_rate=1e-2)
    validation = {"topic": one_batch_split(seed=9, rows=16)}
    model = tiny_model(tiny_backbone)
    result = train_multitask(
        model, splits(), config, device="cpu", validation_splits=validation, callbacks=[Before(), Snapshot()]
    )
    assert sorted(seen) == [2, 4] and all(snap["raw_restored"] for snap in seen.values())
    best = seen[result.best_step]["ema"]
    assert any(not torch.equal(best[k], before[result.best_step][k]) for k in best)  # the average is not the raw
    kept = model.state_dict()
    assert all(torch.equal(kept[k], best[k]) for k in best)
    again = evaluate_task(model, validation["topic"], "topic", batch_size=16, device="cpu")
    assert again["accuracy"] == seen[result.best_step]["metrics"]["topic"]["accuracy"]


def test_progress_bar_routes_logging_through_tqdm_and_restores_it(tiny_backbone):
    import logging

    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    seen: list[bool] = []

    class Probe(TrainerCallback):
        def on_step_end(self, run, step, total, loss):
            seen.append(console in root.handlers)
            if step == 2 and total == 3:
                raise RuntimeError("stop")

    root.addHandler(console)
    try:
        train_multitask(
            tiny_model(tiny_backbone),
            splits(),
            TrainConfig(max_steps=2, batch_size=8),
            device="cpu",
            progress=True,
            callbacks=[Probe()],
        )
        assert seen == [False, False] and console in root.handlers  # swapped for tqdm.write while the bar shows
        with pytest.raises(RuntimeError, match="stop"):
            train_multitask(
                tiny_model(tiny_backbone),
                splits(),
                TrainConfig(max_steps=3, batch_size=8),
                device="cpu",
                progress=True,
                callbacks=[Probe()],
            )
        assert console in root.handlers  # restored after an error too
    finally:
        root.removeHandler(console)


# -------------------------------------------------------------------- whole runs in a subprocess


def run_config(tmp_path: Path, backbone: Path, **train) -> Path:
    config = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())
    config.update(name="resume", data_dir=str(SAMPLE_DIR))
    config["model"].update(backbone=str(backbone), projection_dim=16)
    config["embed"]["corpus"] = None
    config["train"].update({"max_steps": 240, "batch_size": 8, "checkpoint_every": 20, "eval_every": 40, **train})
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mtl_model", "--config", str(config), "--out", str(out), "--device", "cpu", "--json"]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return {
        **load_file(str(out / "model/heads.safetensors")),
        **load_file(str(out / "model/encoder/model.safetensors")),
    }


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert different == []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_backbone):
    tmp = tmp_path_factory.mktemp("straight")
    config = run_config(tmp, tiny_backbone)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command(config, tmp / "out"), check=True, capture_output=True, env=env, cwd=REPO_ROOT)
    return {"config": config, "out": tmp / "out"}


def test_same_seed_same_weights_and_metrics(uninterrupted, tmp_path):
    again = tmp_path / "again"
    subprocess.run(command(uninterrupted["config"], again), check=True, capture_output=True, cwd=REPO_ROOT)
    assert_bitwise_equal(weights(uninterrupted["out"]), weights(again))
    assert (
        json.loads((again / "metrics.json").read_text())["tasks"]
        == json.loads((uninterrupted["out"] / "metrics.json").read_text())["tasks"]
    )


def test_killed_run_resumes_to_the_same_weights(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        command(uninterrupted["config"], out), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step-00000100.pt").exists():
        assert process.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "model").exists()  # killed mid-run: no model yet
    assert list((out / "checkpoints").glob("step-*.pt"))  # at least one complete checkpoint to resume from

    finished = subprocess.run(
        command(uninterrupted["config"], out), check=True, capture_output=True, text=True, cwd=REPO_ROOT
    )
    training = json.loads((out / "training.json").read_text())
    assert training["resumed_from"] in (100, 120, 140, 160, 180, 200, 220)
    assert_bitwise_equal(weights(uninterrupted["out"]), weights(out))
    assert (
        json.loads(finished.stdout)["metrics"]
        == json.loads((uninterrupted["out"] / "metrics.json").read_text())["tasks"]
    )
    assert not list((out / "checkpoints").glob("step-*.pt"))  # cleared once the model is saved


def test_training_log_and_curve_are_written(uninterrupted):
    log = pq.read_table(uninterrupted["out"] / "train_log.parquet").to_pandas()
    assert set(log["kind"]) == {"train", "eval"}
    assert log[(log["kind"] == "train") & (log["name"] == "loss")]["step"].max() == 240
    assert sorted(log[(log["kind"] == "eval") & (log["name"] == "mean")]["step"]) == [40, 80, 120, 160, 200, 240]
    png = (uninterrupted["out"] / "training_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_joint_task_trains_both_heads_on_one_forward_pass(tmp_path, tiny_backbone):
    """Paired data: each sentence has BIO tags and a sentence label; both losses are summed."""
    from mtl_model.cli import run_plain
    from mtl_model.options import PipelineOptions
    from mtl_model.readers import read_conll

    def write_jsonl(source: str, target: Path) -> None:
        rows = [
            {"tokens": e.tokens, "tags": e.tags, "label": "person" if "B-PER" in e.tags else "other"}
            for e in read_conll(SAMPLE_DIR / "ner" / source).examples
        ]
        target.write_text("".join(json.dumps(row) + "\n" for row in rows))

    write_jsonl("train.txt", tmp_path / "train.jsonl")
    write_jsonl("test.txt", tmp_path / "test.jsonl")
    config = {
        "name": "joint",
        "data_dir": str(tmp_path),
        "tasks": [
            {
                "name": "news",
                "kind": "joint",
                "format": "jsonl",
                "files": {"train": "train.jsonl", "test": "test.jsonl"},
            }
        ],
        "model": {"backbone": str(tiny_backbone), "projection_dim": 16},
        "train": {"max_steps": 30, "batch_size": 16, "learning_rate": 1e-3},
    }
    (tmp_path / "joint.yaml").write_text(yaml.safe_dump(config))
    result = run_plain(PipelineOptions(config_path=tmp_path / "joint.yaml", out=tmp_path / "out", device="cpu"))
    assert set(result.metrics) == {"news", "news_tags"}
    assert set(result.metrics["news"]) >= {"accuracy", "f1"} and set(result.metrics["news_tags"]) >= {
        "f1",
        "token_accuracy",
    }
    saved = json.loads((tmp_path / "out/model/mtl_model.json").read_text())
    assert [(h["name"], h["kind"], len(h["labels"])) for h in saved["heads"]] == [
        ("news", "sentence", 2),
        ("news_tags", "token", 9),
    ]
    log = pq.read_table(tmp_path / "out/train_log.parquet").to_pandas()
    assert log[(log["name"] == "loss")]["task"].unique().tolist() == ["news"]
    meta = json.loads(pq.read_schema(tmp_path / "out/tokenized/news/train.parquet").metadata[b"mtl"])
    assert meta["kind"] == "joint" and meta["labels"] == ["other", "person"] and meta["tag_labels"][0] == "O"
