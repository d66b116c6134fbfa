"""One writer per output folder: a second run into the same `--out` exits 2 at once naming the holder; a lock
left by a dead process is taken over; a folder created for a run that failed is not left behind."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from mtl_model.lock import LOCK_NAME, OutputLocked, output_lock
from tests.conftest import REPO_ROOT, SAMPLE_DIR
from tests.helpers import write_config


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with output_lock(tmp_path / "out") as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(OutputLocked, match=rf"is being written by pid {os.getpid()} on "):
            with output_lock(tmp_path / "out"):
                pass
    assert not path.exists()
    with output_lock(tmp_path / "out"):  # released: the next run takes it
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "started": 0, "command": "killed run"}))
    with caplog.at_level(logging.WARNING, logger="mtl_model.lock"), output_lock(out):
        pass
    assert "taking over the lock left by pid 999999 on gone" in caplog.text


def test_a_folder_created_for_a_failed_run_is_removed(tmp_path):
    with pytest.raises(RuntimeError), output_lock(tmp_path / "new"):
        raise RuntimeError("bad input")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), output_lock(tmp_path / "kept"):
        raise RuntimeError("bad input")
    assert (tmp_path / "kept").is_dir()  # it was the user's folder before the run


def test_two_concurrent_runs_into_one_folder_one_succeeds_one_exits_2(tmp_path, tiny_backbone):
    config = write_config(tmp_path, tiny_backbone, SAMPLE_DIR)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mtl_model", "--config", str(config), "--out", str(out), "--device", "cpu"]
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / LOCK_NAME).exists():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    started = time.monotonic()
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"is being written by pid {first.pid}" in second.stderr
    assert time.monotonic() - started < 30  # at once: no data read, nothing trained
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert (out / "metrics.json").is_file() and (out / "embeddings" / "_SUCCESS").is_file()
    assert not (out / LOCK_NAME).exists()
    assert json.loads((out / "metrics.json").read_text())["training"]["steps"] == 12  # the first run's, complete


@pytest.mark.parametrize(
    ("code", "strerror", "shown"),
    [
        ("ENOSPC", "No space left on device", "bytes free"),
        ("EROFS", "Read-only file system", "Read-only file system"),
        ("EACCES", "Permission denied", "Permission denied"),
    ],
)
def test_storage_errors_are_exit_2_naming_the_path(tmp_path, capsys, monkeypatch, code, strerror, shown):
    """Disk full, read-only or forbidden (simulated: root may write anywhere) → exit 2 naming the path, and the
    folder made for the run is gone again."""
    import errno

    from mtl_model.cli import main

    def fail(*args, **kwargs):
        raise OSError(getattr(errno, code), strerror, str(tmp_path / "out" / "tokenized"))

    monkeypatch.setattr("mtl_model.pipeline.prepare_data", fail)
    assert main(["--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'out' / 'tokenized'}: {strerror}") and shown in error
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_or_a_full_disk_is_exit_2_naming_the_path(tmp_path, capsys, monkeypatch):
    import errno

    from mtl_model.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["--out", str(blocker), "--device", "cpu"]) == 2
    assert f"error: {blocker}: File exists (a file stands where the output folder goes" in capsys.readouterr().err

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "tokenized"))

    monkeypatch.setattr("mtl_model.pipeline.prepare_data", full)
    assert main(["--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert f"error: {tmp_path / 'out' / 'tokenized'}: No space left on device (" in error and "bytes free" in error
    assert not (tmp_path / "out").exists()  # the folder made for the run is gone again
