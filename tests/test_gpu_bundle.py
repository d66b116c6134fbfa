"""The GPU bundle and check, without a GPU: the bundle is built and within its size, and `gpu_check --device cpu
--smoke` runs end to end on the bundle alone with Prefect hidden, so the first GPU run does not die on set-up.

The bundle is built from ../shared/data where it exists (the real-data assertions need it, and fail in CI without
it, as `shared_data` does); elsewhere from the sample data in the same layout, so the smoke run is still tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.gpu_bundle import LIMIT_BYTES, build_bundle, read_manifest, verify_bundle
from benchmarks.gpu_check import goals, run_part
from tests.conftest import REPO_ROOT, SHARED_DATA

CARRY_LIMIT = 64 * 2**20  # what travels to the GPU machine: the checkout and the carried bundle together
MINILM_MATMULS = 6 * (4 * 384 * 384 + 2 * 384 * 1536)  # weights in the encoder's matrix products (6 layers)
GPU_TESTS = 6  # tests/test_gpu.py's `gpu`-marked tests (the autocast one twice)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    if not SHARED_DATA.is_dir() and os.environ.get("CI"):
        pytest.fail(f"CI must build the bundle from the real data, but {SHARED_DATA} does not exist")
    out = tmp_path_factory.mktemp("bundle") / "gpu_bundle"
    _, rebuilt = build_bundle(out, SHARED_DATA if SHARED_DATA.is_dir() else None)
    assert rebuilt == ["backbone", "data", "wheels"]
    return out


def safetensors_dtypes(path: Path) -> set[str]:
    header = path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")]
    return {entry["dtype"] for name, entry in json.loads(header).items() if name != "__metadata__"}


def test_bundle_is_complete_verified_and_within_the_limits(bundle):
    manifest = read_manifest(bundle)
    assert verify_bundle(bundle) == []
    assert manifest["total_bytes"] <= LIMIT_BYTES == 60 * 2**20
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    checkout = sum((REPO_ROOT / name).stat().st_size for name in tracked.decode().split("\0") if name)
    assert checkout + manifest["total_bytes"] < CARRY_LIMIT, f"checkout {checkout / 2**20:.1f} MiB + bundle"
    assert safetensors_dtypes(bundle / "backbone/model.safetensors") == {"F16", "I64"}
    backbone = manifest["sections"]["backbone"]["info"]
    assert backbone["embedding_min_cosine"] >= 0.99999 and backbone["max_relative_error"] <= 2.0**-11
    for name in ("tokenizer.json", "vocab.txt", "config.json", "modules.json", "1_Pooling/config.json"):
        assert (bundle / "backbone" / name).is_file()
    wheels = manifest["sections"]["wheels"]["info"]["wheels"]
    assert any(w.startswith("pydantic_core-") and "-cp312-" in w and "manylinux" in w for w in wheels)
    assert {w.split("-")[0] for w in wheels} == {
        "pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions", "seqeval",
    }  # fmt: skip
    assert all(w.endswith("-py3-none-any.whl") for w in wheels if not w.startswith("pydantic_core-"))


def test_bundle_holds_the_real_three_task_data(bundle, shared_data):
    data = read_manifest(bundle)["sections"]["data"]["info"]
    assert data["source"] == "real"
    assert data["lines"]["sst2/train.tsv"] == 67_350 and data["lines"]["ag_news/test.csv"] == 7_600
    assert data["lines"]["conll2003/train.txt"] == (shared_data / "conll2003/train.txt").read_text().count("\n")


def test_rebuild_keeps_intact_sections_and_redoes_a_damaged_one(bundle):
    started = time.perf_counter()
    _, rebuilt = build_bundle(bundle, SHARED_DATA if SHARED_DATA.is_dir() else None)
    assert rebuilt == [] and time.perf_counter() - started < 15
    damaged = bundle / "data/sst2/dev.tsv.gz"
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-1] + b"x")
    recorded = read_manifest(bundle)["files"]["data/sst2/dev.tsv.gz"]["sha256"][:12]
    assert verify_bundle(bundle) == [f"data/sst2/dev.tsv.gz: differs from the manifest (sha256 {recorded}…)"]
    _, rebuilt = build_bundle(bundle, SHARED_DATA if SHARED_DATA.is_dir() else None)
    assert rebuilt == ["data"] and damaged.read_bytes() == original and verify_bundle(bundle) == []


def test_a_failing_or_hanging_part_is_recorded(tmp_path):
    log_path = tmp_path / "log"
    with open(log_path, "w") as log:
        failed = run_part([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 30, log, dict(os.environ))
        started = time.monotonic()
        sleeper = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])"
        hung = run_part([sys.executable, "-c", sleeper], 2, log, dict(os.environ))
    assert failed == ("failed", 3, "boom")
    assert hung[:2] == ("timeout", None) and time.monotonic() - started < 15  # the grandchild was killed too


def test_flops_per_example_counts_matmuls_and_attention(bundle):
    import numpy as np

    from benchmarks.gpu_parts import flops_per_example

    attention = 12 * 6 * 384  # per token and token of context: QKᵀ and AV, forward and backward
    expected = (10 * (6 * MINILM_MATMULS + attention * 10) + 30 * (6 * MINILM_MATMULS + attention * 30)) / 2
    assert flops_per_example(bundle / "backbone", np.array([10, 30])) == expected


def test_goals_read_off_the_parts():
    parts = {"train": {"ratio": 2.5, "ours": {"mfu": 0.12}}, "embed": {"ratio": 3.0}, "tests": {"cuda_passed": True}}
    assert goals(parts) == {
        "train_ratio_vs_hf_trainer": 2.5,
        "train_goal_2x": True,
        "train_moonshot_3x_and_10pct_mfu": False,
        "embed_ratio_vs_encode": 3.0,
        "embed_goal_4x": False,
        "cuda_tests_passed": True,
        "quality_full_epoch": None,
    }


def test_smoke_check_runs_on_the_bundle_alone_without_prefect(bundle, tmp_path):
    """Prefect is hidden by a package of that name that refuses to import, first on every child's path."""
    blocker = tmp_path / "hide" / "prefect"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('prefect is not installed on the GPU machine')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO_ROOT)])}
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--bundle", str(bundle), "--out", str(tmp_path / "out")]
    command += ["--device", "cpu", "--smoke", "--work", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1000)
    report = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0, json.dumps(report, indent=1)[-3000:]
    assert json.loads((tmp_path / "out/gpu_check.json").read_text()) == report
    assert "===== quality" in (tmp_path / "out/gpu_check.log").read_text()
    parts = report["parts"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(
        ("prepare", "tests", "train", "embed", "quality"), "ok"
    )
    environment = parts["prepare"]["environment"]
    assert environment["device"] == "cpu" and environment["prefect_importable"] is False
    assert parts["tests"]["counts"] == {"passed": 0, "failed": 0, "error": 0, "skipped": GPU_TESTS}
    assert all("needs a CUDA GPU" in case["message"] for case in parts["tests"]["cases"])
    train = parts["train"]
    assert train["steps"] == 2 and train["ours"]["samples_per_second"] > 0 and train["hf"]["samples_per_second"] > 0
    assert train["ratio"] > 0 and train["ours"]["mfu"] is None and train["flops_per_example"] > 6 * MINILM_MATMULS * 5
    assert parts["embed"]["min_cosine_vs_encode"] >= 0.9999 and parts["embed"]["sentences"] == 32
    quality = parts["quality"]
    assert quality["steps"] == 2 and set(quality["metrics"]) == {"topic", "sentiment", "ner"}
    assert 0 <= quality["metrics"]["ner"]["f1"] <= 1
