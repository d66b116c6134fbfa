"""Shared fixtures: an isolated Prefect home, one Prefect test server per session, a tiny BERT."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Isolate Prefect before it is imported anywhere: its settings are read from the environment.
_PREFECT_HOME = tempfile.mkdtemp(prefix="mtl-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tests.helpers import build_tiny_backbone  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every test that runs a flow (it takes ~10–20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The bundled all-MiniLM-L6-v2 fast tokenizer, loaded once for every test that tokenizes real words."""
    from mtl_model.backbone import load_tokenizer

    return load_tokenizer("bundled:all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a WordPiece vocabulary built from the sample data."""
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"), SAMPLE_DIR)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tiny_backbone) -> Path:
    """A saved (untrained) model on the tiny BERT: projection 16, max_seq_length 24, for the embed tests."""
    import torch
    from transformers import AutoTokenizer

    from mtl_model.model import HeadSpec, build_model

    torch.manual_seed(0)
    model = build_model(
        backbone=str(tiny_backbone),
        heads=[HeadSpec(name="t", kind="sentence", labels=["a", "b"])],
        pooling="mean",
        projection_dim=16,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=24,
    ).eval()
    target = tmp_path_factory.mktemp("embed-model") / "model"
    model.save(target, AutoTokenizer.from_pretrained(tiny_backbone))
    return target


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the checkout. Optional on a laptop; in CI (CI set) their absence fails."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-data tests, but {SHARED_DATA} does not exist")
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
