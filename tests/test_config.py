"""Config validation at the boundary: errors name the field; paths resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtl_model.config import PipelineConfig, TaskSpec, default_config_path, load_pipeline_config, plan_run
from mtl_model.device import resolve_device
from mtl_model.errors import ConfigError
from mtl_model.options import RunOptions

NER = {"name": "ner", "kind": "token", "format": "conll", "files": {"train": "a", "test": "b"}}


def test_bundled_default_config_is_valid_and_resolves_to_sample_data():
    plan = plan_run(RunOptions(out="/tmp/x"))
    assert plan.config.name == "default" and plan.out_dir == "/tmp/x"
    sample = default_config_path().parent.parent / "sample"
    assert plan.files["ner"]["train"] == str(sample / "ner" / "train.txt")
    assert plan.corpus == str(sample / "corpus.csv")
    assert all(Path(p).is_file() for files in plan.files.values() for p in files.values())


def test_cli_overrides_are_validated(tmp_path):
    plan = plan_run(RunOptions(data_dir=tmp_path), freeze_policy="head:ner")
    assert plan.files["topic"]["all"] == str(tmp_path / "topic" / "news.csv")
    assert plan.config.train.freeze_policy == "head:ner"
    assert plan.out_dir == str(Path("runs/default").resolve())
    with pytest.raises(ConfigError, match=r"train.freeze_policy: head\(s\) \['pos'\] name no task"):
        plan_run(RunOptions(), freeze_policy="head:pos")
    with pytest.raises(ConfigError, match="unknown freeze policy 'everything'"):
        plan_run(RunOptions(), freeze_policy="everything")


def test_set_overrides_are_parsed_and_validated():
    plan = plan_run(
        RunOptions(overrides=["train.max_steps=7", "model.projection_dim=null", "tokenize.on_invalid=skip"])
    )
    assert (plan.config.train.max_steps, plan.config.model.projection_dim, plan.config.tokenize.on_invalid) == (
        7,
        None,
        "skip",
    )
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        plan_run(RunOptions(), extra_overrides=["train.max_steps"])
    with pytest.raises(ConfigError, match="max_steps"):
        plan_run(RunOptions(overrides=["train.max_steps=0"]))
    with pytest.raises(ConfigError, match="'nosuch' is not a config section"):
        plan_run(RunOptions(overrides=["nosuch.field=1"]))


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


@pytest.mark.parametrize(
    "text",
    [
        "none",
        "all",
        "backbone",
        "gradual",
        "lora",
        "top:0",
        "top:12",
        "head:ner",
        "head:ner,head:topic",
        "top:",
        "top:x",
        "head:",
        "frozen",
        "none,all",
        "head:ner,top:2",
        "lora,head:ner",
        "",
        "Top:2",
    ],
)
def test_policy_regex_and_parser_agree(text):
    """The freeze-policy grammar is written once (`mtl_model.freeze`): the flow-parameter regex accepts exactly
    what the parser accepts."""
    import re

    from mtl_model.freeze import POLICY_PATTERN, parse_freeze_policy

    try:
        parse_freeze_policy(text)
        parsed = True
    except ValueError:
        parsed = False
    assert (re.fullmatch(POLICY_PATTERN, text) is not None) == parsed, text


def test_the_command_line_is_derived_from_the_options_model(capsys):
    """Every option field is a flag whose help is the field's docstring; a bad value is exit 2 naming the flag."""
    from mtl_model.cli import main
    from mtl_model.options import FLAGS, PipelineOptions

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name, field in PipelineOptions.model_fields.items():
        if name != "gpu":  # training on a GPU worker needs Prefect: only the flow's command line has --gpu
            assert FLAGS.get(name, "--" + name.replace("_", "-")) in text, name
            assert field.description.split()[0] in text, name
    assert "python -m mtl_model embed" in text and "python -m mtl_model compare" in text  # the subcommands
    assert main(["--freeze-policy", "frozen"]) == 2
    assert "--freeze-policy: Value error, unknown freeze policy 'frozen'" in capsys.readouterr().err
    assert main(["--set", "max_steps=5"]) == 2
    assert "--set: String should match pattern" in capsys.readouterr().err


def test_options_accept_paths_and_split_task_lists():
    import argparse

    from mtl_model.options import PipelineOptions, add_option_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_option_arguments(parser, PipelineOptions)
    args = parser.parse_args(
        ["--tasks", "topic,ner", "--set", "train.max_steps=3", "--set", "train.seed=1", "--gpu", "never"]
    )
    options = options_from_args(PipelineOptions, args)
    assert options == PipelineOptions(
        only_tasks=["topic", "ner"], overrides=["train.max_steps=3", "train.seed=1"], gpu="never"
    )
    assert PipelineOptions(config_path=Path("a.yaml"), out=Path("o")).config_path == "a.yaml"
