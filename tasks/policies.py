"""Caching and retry rules shared by every task.

Cache keys hash what a step reads (file contents, not paths or mtimes), its config, and the
library's code version. The output folder is part of the key because it is where the result lies.
A cached result is only paths to files, so when those files have been deleted since, the step runs
again with `refresh_cache` (and its cache record is overwritten) instead of returning dead paths.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import task_run
from prefect.tasks import exponential_backoff

from mtl_model.errors import ConfigError, DataValidationError, is_user_fixable
from mtl_model.io import code_version, json_sha256, source_fingerprint

IO_RETRIES = 2
IO_RETRY_DELAYS = exponential_backoff(backoff_factor=2)
NEVER_RETRIED = (DataValidationError, ConfigError, FileNotFoundError, ValueError, KeyError, TypeError)


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry transient failures only: bad input, bad config and programming errors fail at once."""
    try:
        state.result()
    except NEVER_RETRIED:
        return False
    except Exception as exc:
        return not is_user_fixable(exc)  # a full or read-only disk stays full on the next try
    return False


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
    digest = json_sha256(
        {
            "step": step,
            "code": code_version(),
            "inputs": [source_fingerprint(path) for path in inputs],
            "config": _jsonable(config),
        }
    )
    return f"{step}-{digest}"


@dataclass(frozen=True)
class CacheKey:
    """What a step's cache key hashes: the files it reads (by content) and the settings it depends on."""

    inputs: list[str | Path]
    config: Any = field(default=None)


def recompute_if_missing(prefect_task, outputs: Iterable[str | Path]):
    """The task, set to ignore (and overwrite) its cache record when any of its outputs is gone."""
    missing = any(not Path(path).exists() for path in outputs)
    return prefect_task.with_options(refresh_cache=True) if missing else prefect_task


def folder_run_name(step: str) -> Callable[[], str]:
    """A task run name `<step>-<output folder name>` (e.g. `train-default`, `evaluate-lora`): readable, and
    distinct for the comparison's entries."""

    def name() -> str:
        return f"{step}-{Path(task_run.parameters['out_dir']).name}"

    return name


def io_task(
    name: str,
    *,
    key: Callable[..., CacheKey] | None = None,
    outputs: Callable[..., Iterable[str | Path]] | None = None,
    problems: Callable[..., list[str]] | None = None,
    run_name: str | Callable[[], str] | None = None,
    retries: int = IO_RETRIES,
    persist_result: bool = True,
):
    """A step as a Prefect task that reads and writes files: transient I/O errors are retried with backoff, bad
    input never; the cache key is `key(**parameters)` hashed by `content_key`; and when any of
    `outputs(**parameters)` is gone, the cache record is ignored and overwritten (a result is only paths, so a
    cached one whose files were deleted would be a lie); likewise when `problems(**parameters)` finds any (a
    folder whose files no longer match what was written). The task run is called `run_name` (default: `name`)."""

    def decorate(function: Callable[..., Any]):
        prefect_task = task(
            function,
            name=name,
            task_run_name=run_name or name,
            cache_key_fn=(lambda context, parameters: content_key(name, **vars(key(**parameters)))) if key else None,
            retries=retries,
            retry_delay_seconds=IO_RETRY_DELAYS,
            retry_condition_fn=retry_unless_bad_input,
            persist_result=persist_result,
        )
        if outputs is None and problems is None:
            return prefect_task
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            prefect_options = {
                k: kwargs.pop(k) for k in list(kwargs) if k not in signature.parameters
            }  # return_state…
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            found = problems(**bound.arguments) if problems else []
            if found:
                get_run_logger().warning("%s: its earlier output is damaged, recomputing: %s", name, "; ".join(found))
                chosen = prefect_task.with_options(refresh_cache=True)
            else:
                chosen = recompute_if_missing(prefect_task, outputs(**bound.arguments) if outputs else [])
            return chosen(*args, **kwargs, **prefect_options)

        run.task = prefect_task  # the Prefect task itself (for `.map`, `.with_options`, tests)
        return run

    return decorate
