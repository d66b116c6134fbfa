"""The run options of every entry point, typed once: the flows take them as their one parameter, and the command
lines (`python flows/pipeline.py`, `python -m mtl_model`) are derived from their fields (as transformers'
`HfArgumentParser` derives a CLI from dataclasses), so a new option is one field with one docstring.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, field_validator

from mtl_model.base import StrictModel
from mtl_model.compare import DEFAULT_POLICIES, parse_entry
from mtl_model.config import ComparisonEntry, DeviceChoice, FreezePolicyText, GpuMode, Override
from mtl_model.freeze import parse_freeze_policy


class RunOptions(StrictModel):
    """What any run of the pipeline's steps is told: which config, where its data and output are, on what device."""

    config_path: str | None = None
    """YAML pipeline config; the bundled default (sample data, bundled MiniLM) when empty."""
    out: str | None = None
    """Output folder; default `runs/<config name>`."""
    data_dir: str | None = None
    """Folder that the config's relative data paths start from (overrides the config's `data_dir`)."""
    device: DeviceChoice = "auto"
    """Where to train and embed: `auto` picks CUDA when PyTorch sees a GPU, else CPU."""
    overrides: list[Override] = Field(default_factory=list)
    """`section.field=value` settings applied over the config (value parsed as YAML), e.g. `train.max_steps=500`."""
    only_tasks: list[str] | None = None
    """Train and evaluate only these tasks of the config (e.g. a single-task run); default: all."""

    @field_validator("config_path", "out", "data_dir", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, os.PathLike) else value  # a `Path` from Python callers


class PipelineOptions(RunOptions):
    """The pipeline's options: the run options, a freeze policy, and where training may run."""

    freeze_policy: FreezePolicyText | None = None
    """Override of `train.freeze_policy`: none, all, backbone, head:<task>, top:<k>, gradual, lora."""
    gpu: GpuMode = "auto"
    """Training on a GPU worker (config `remote_training`): `auto` uses one when its pool has an ONLINE worker,
    else trains here; `require` fails when none can take it; `never` always trains here."""

    @field_validator("freeze_policy", mode="before")
    @classmethod
    def _known_policy(cls, value: object) -> object:
        if isinstance(value, str):
            parse_freeze_policy(value)  # the parser's message lists the valid policies
        return value


class ComparisonOptions(RunOptions):
    """The freeze-policy comparison's options: the run options and the entries to compare."""

    policies: list[ComparisonEntry] = Field(default_factory=lambda: list(DEFAULT_POLICIES), min_length=1)
    """Freeze policies to compare; an entry may add settings for itself only,
    e.g. `none|train.layerwise_lr_decay=0.8`."""

    @field_validator("policies", mode="before")
    @classmethod
    def _known_entries(cls, value: object) -> object:
        if isinstance(value, list):
            for entry in value:
                if isinstance(entry, str):
                    parse_entry(entry)  # its message names the entry and lists the valid policies
        return value


# Command-line spelling where it differs from the field name (`--tasks topic,ner` is a comma-separated list).
FLAGS = {"config_path": "--config", "only_tasks": "--tasks", "overrides": "--set", "policies": "--policy"}
COMMA_SEPARATED = {"only_tasks"}


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _literal_choices(annotation: Any) -> list[str] | None:
    annotation = _unwrap_optional(annotation)
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return list(get_args(annotation)) if get_origin(annotation) is Literal else None


def add_option_arguments(
    parser: argparse.ArgumentParser, model: type[StrictModel], exclude: set[str] = frozenset()
) -> None:
    """One `--flag` per field of `model`, its help the field's docstring; lists repeat the flag, Literals are
    choices. Values stay strings: the model validates them (so the CLI and the flow reject the same things)."""
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        help_text = (field.description or "").replace("%", "%%")
        annotation = _unwrap_optional(field.annotation)
        choices = _literal_choices(field.annotation)
        if choices:
            parser.add_argument(
                flag, dest=name, choices=choices, default=field.default, help=f"{help_text} (default: {field.default})"
            )
        elif name in COMMA_SEPARATED:
            parser.add_argument(flag, dest=name, metavar="NAME[,NAME]", help=help_text)
        elif get_origin(annotation) is list:
            parser.add_argument(flag, dest=name, action="append", metavar=name.upper().rstrip("S"), help=help_text)
        else:
            parser.add_argument(flag, dest=name, metavar=name.upper(), help=help_text)


def options_from_args(model: type[StrictModel], args: argparse.Namespace) -> StrictModel:
    """The parsed command line as a validated options model (unset flags keep the model's defaults)."""
    values = {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
    for name in COMMA_SEPARATED & set(values):
        values[name] = [part for part in values[name].split(",") if part]
    return model.model_validate(values)
