"""Config validation at the boundary: errors name the field; paths resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtl_model.config import PipelineConfig, TaskSpec, default_config_path, load_pipeline_config, plan_run
from mtl_model.device import resolve_device
from mtl_model.errors import ConfigError

NER = {"name": "ner", "kind": "token", "format": "conll", "files": {"train": "a", "test": "b"}}


def test_bundled_default_config_is_valid_and_resolves_to_sample_data():
    plan = plan_run(None, out="/tmp/x")
    assert plan.config.name == "default" and plan.out_dir == "/tmp/x"
    sample = default_config_path().parent.parent / "sample"
    assert plan.files["ner"]["train"] == str(sample / "ner" / "train.txt")
    assert plan.corpus == str(sample / "corpus.csv")
    assert all(Path(p).is_file() for files in plan.files.values() for p in files.values())


def test_cli_overrides_are_validated(tmp_path):
    plan = plan_run(None, data_dir=tmp_path, freeze_policy="head:ner")
    assert plan.files["topic"]["all"] == str(tmp_path / "topic" / "news.csv")
    assert plan.config.train.freeze_policy == "head:ner"
    assert plan.out_dir == str(Path("runs/default").resolve())
    with pytest.raises(ConfigError, match=r"train.freeze_policy: head\(s\) \['pos'\] name no task"):
        plan_run(None, freeze_policy="head:pos")
    with pytest.raises(ConfigError, match="unknown freeze policy 'everything'"):
        plan_run(None, freeze_policy="everything")


def test_set_overrides_are_parsed_and_validated():
    plan = plan_run(None, overrides=["train.max_steps=7", "model.projection_dim=null", "tokenize.on_invalid=skip"])
    assert (plan.config.train.max_steps, plan.config.model.projection_dim, plan.config.tokenize.on_invalid) == (7, None, "skip")
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        plan_run(None, overrides=["train.max_steps"])
    with pytest.raises(ConfigError, match="max_steps"):
        plan_run(None, overrides=["train.max_steps=0"])
    with pytest.raises(ConfigError, match="'nosuch' is not a config section"):
        plan_run(None, overrides=["nosuch.field=1"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": []}, "tasks: at least one task is required"),
        ({"tasks": [NER, NER]}, r"duplicate task names \['ner'\]"),
        ({"tasks": [{**NER, "format": "csv"}]}, "kind 'token' does not fit format 'csv'"),
        ({"tasks": [{**NER, "files": {"train": "a"}}]}, "files needs `train` and `test`"),
        ({"tasks": [{**NER, "name": "1ner"}]}, "task name must match"),
        ({"tokenize": {"max_seq_length": 4}}, "max_seq_length"),
        ({"train": {"learning_rate": 0}}, "learning_rate"),
        ({"train": {"lr": 1e-4}}, "lr"),
    ],
)
def test_invalid_configs_name_the_field(change, message):
    raw = {"tasks": [NER], **change}
    with pytest.raises(ValueError, match=message):
        PipelineConfig.model_validate(raw)


def test_every_field_is_documented():
    from pydantic import BaseModel

    def walk(model: type[BaseModel]):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from walk(annotation)
        yield model

    list(walk(TaskSpec))
    for section in ("tokenize", "model", "train", "evaluate", "embed"):
        list(walk(PipelineConfig.model_fields[section].annotation))


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tasks": [NER], "train": {"epochs": -1}}))
    with pytest.raises(ConfigError, match=rf"(?s){bad}:.*train.epochs"):
        load_pipeline_config(bad)


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="--device must be auto, cpu or cuda"):
        resolve_device("tpu")
