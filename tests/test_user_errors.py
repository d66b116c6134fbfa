"""Every user-fixable error is exit 2 with one clear message, before anything is written (table-driven)."""

from __future__ import annotations

import json
import shutil

import pytest

from mtl_model.cli import main
from tests.conftest import SAMPLE_DIR


def _model_folder(tmp_path, model_dir, change):
    """A copy of a saved model folder with one thing wrong (the saved-model fixture stays untouched)."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    change(folder)
    return folder


CASES = {
    "top:k beyond the encoder's layers": (
        ["--freeze-policy", "top:99"],
        "train.freeze_policy top:99 asks for more layers than the encoder's 6",
    ),
    "max_seq_length beyond the position table": (
        ["--set", "tokenize.max_seq_length=1000"],
        "tokenize.max_seq_length 1000 exceeds the encoder's 512 positions",
    ),
    "eval_every without a validation split": (
        ["--tasks", "sentiment", "--set", "train.eval_every=5"],
        "train.eval_every: no task has a validation split",
    ),
    "unknown freeze policy": (["--freeze-policy", "frozen"], "unknown freeze policy 'frozen'"),
    "malformed --set": (["--set", "max_steps=3"], "--set: String should match pattern"),
    "unknown task": (["--tasks", "pos"], "--tasks: ['pos'] name no task"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_errors_are_exit_2_before_anything_is_written(case, tmp_path, capsys):
    args, message = CASES[case]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error, error
    assert not out.exists()


def _resaved(change):
    """The change, then the folder's `_files.json` written again: a folder as a future or foreign writer left it,
    complete by its own manifest, so the loader's own checks must speak."""
    from mtl_model.io import write_files_manifest

    return lambda folder: (change(folder), write_files_manifest(folder))


MODEL_FAULTS = {
    "missing weight file": (lambda f: (f / "heads.safetensors").unlink(), "heads.safetensors: missing"),
    "truncated weight file": (
        lambda f: (f / "heads.safetensors").write_bytes((f / "heads.safetensors").read_bytes()[:-10]),
        "heads.safetensors: ",
    ),
    "changed mtl_model.json": (lambda f: (f / "mtl_model.json").write_text("{}"), "mtl_model.json: 2 bytes, "),
    "bad mtl_model.json": (
        _resaved(lambda f: (f / "mtl_model.json").write_text("{not json")),
        "mtl_model.json: not a model config this code can read",
    ),
    "unknown format_version": (
        _resaved(
            lambda f: (f / "mtl_model.json").write_text(
                json.dumps({**json.loads((f / "mtl_model.json").read_text()), "format_version": 99})
            )
        ),
        "format_version 99, this code reads 1",
    ),
    "projection that does not match the config": (
        _resaved(
            lambda f: (f / "mtl_model.json").write_text(
                json.dumps({**json.loads((f / "mtl_model.json").read_text()), "projection_dim": 8})
            )
        ),
        "heads.safetensors: cannot be loaded into this model",
    ),
}


@pytest.mark.parametrize("fault", list(MODEL_FAULTS))
def test_a_broken_model_folder_is_exit_2_naming_the_file(fault, tmp_path, model_dir, capsys):
    change, message = MODEL_FAULTS[fault]
    folder = _model_folder(tmp_path, model_dir, change)
    out = tmp_path / "out"
    code = main(["embed", "--model", str(folder), "--corpus", str(SAMPLE_DIR / "corpus.csv"), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2, error
    assert error.startswith("error: ") and message in error, error
    assert not (out / "embeddings").exists()
