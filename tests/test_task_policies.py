"""Prefect-side rules: which failures are retried, and what cache keys depend on."""

from __future__ import annotations

import errno

import pytest
from prefect.states import Completed, Failed

from mtl_model.errors import ConfigError, DataValidationError, Problem
from tasks.policies import content_key, retry_unless_bad_input


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (DataValidationError([Problem("a.csv", "line 3", "text is empty")]), False),
        (ConfigError("model.backbone: nope"), False),
        (FileNotFoundError("a.csv"), False),
        (OSError(errno.ENOSPC, "No space left on device", "/out/part-00001.parquet"), False),
        (OSError(errno.EROFS, "Read-only file system", "/out"), False),
        (PermissionError(errno.EACCES, "Permission denied", "/out"), False),
        (OSError("disk hiccup"), True),
        (ConnectionError("storage unreachable"), True),
    ],
)
def test_only_transient_failures_are_retried(error, retried):
    assert retry_unless_bad_input(None, None, Failed(data=error)) is retried


def test_a_completed_state_is_not_retried():
    assert retry_unless_bad_input(None, None, Completed(data=1)) is False


def test_cache_key_follows_content_not_path_or_mtime(tmp_path):
    import os

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same bytes")
    b.write_text("same bytes")
    os.utime(b, (1, 1))
    assert content_key("step", inputs=[a], config={"x": 1}) == content_key("step", inputs=[b], config={"x": 1})
    b.write_text("other bytes")
    assert content_key("step", inputs=[a], config={"x": 1}) != content_key("step", inputs=[b], config={"x": 1})
    assert content_key("step", inputs=[a], config={"x": 1}) != content_key("step", inputs=[a], config={"x": 2})
    assert content_key("step", inputs=["hf:glue/sst2"], config={}) == content_key(
        "step", inputs=["hf:glue/sst2"], config={}
    )
