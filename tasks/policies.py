"""Caching and retry rules shared by every task.

Cache keys hash what a step reads (file contents, not paths or mtimes), its config, and the
library's code version. The output folder is part of the key because it is where the result lies.
A cached result is only paths to files, so when those files have been deleted since, the step runs
again with `refresh_cache` (and its cache record is overwritten) instead of returning dead paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.tasks import exponential_backoff

from mtl_model.backbone import SCRATCH_BACKBONE, is_saved_multitask_model, is_tokenizer_dir, resolve_backbone
from mtl_model.errors import ConfigError, DataValidationError
from mtl_model.io import code_version, json_sha256, source_fingerprint

IO_RETRIES = 2
IO_RETRY_DELAYS = exponential_backoff(backoff_factor=2)
NEVER_RETRIED = (DataValidationError, ConfigError, FileNotFoundError, ValueError, KeyError, TypeError)


def backbone_inputs(backbone: str) -> list[str]:
    """A local backbone's (or built vocabulary's) folder is hashed by content; a hub id enters the key as
    config instead; `scratch` has no files (its vocabulary is keyed by the training data)."""
    if backbone == SCRATCH_BACKBONE:
        return []
    if is_tokenizer_dir(backbone) or is_saved_multitask_model(backbone):
        return [backbone]  # a built vocabulary, or a trained model (encoder, projection and heads)
    resolved = resolve_backbone(backbone)
    return [resolved] if Path(resolved).exists() else []


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry transient failures only: bad input, bad config and programming errors fail at once."""
    try:
        state.result()
    except NEVER_RETRIED:
        return False
    except Exception:
        return True
    return False


# Steps that read and write files: transient I/O errors are retried with backoff, bad input never.
IO_TASK = dict(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_unless_bad_input,
    persist_result=True,
)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def content_key(step: str, *, inputs: Iterable[str | Path], config: Any) -> str:
    """Key = hash(step, code version, contents of `inputs`, `config`)."""
    digest = json_sha256({
        "step": step,
        "code": code_version(),
        "inputs": [source_fingerprint(path) for path in inputs],
        "config": _jsonable(config),
    })
    return f"{step}-{digest}"


def recompute_if_missing(prefect_task, outputs: Iterable[str | Path]):
    """The task, set to ignore (and overwrite) its cache record when any of its outputs is gone."""
    missing = any(not Path(path).exists() for path in outputs)
    return prefect_task.with_options(refresh_cache=True) if missing else prefect_task
