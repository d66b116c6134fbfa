"""The CUDA paths, marked `gpu` and skipped (with the reason, under `-ra`) where PyTorch sees no GPU, and the CPU
variants of their harnesses, which run everywhere. `benchmarks/gpu_check.py` runs `pytest -m gpu` on a GPU machine
with MTL_GPU_BACKBONE set to all-MiniLM-L6-v2 (elsewhere these use the tiny random BERT).

Tolerances, and why:
- a training step under autocast: the first step's loss (same weights, same batch) within rtol 5e-3 of fp32 in bf16
  (8 significant bits) and 1e-3 in fp16 (11 bits); the loss on a held-out batch after `AMP_STEPS` steps within
  rtol 1e-2 of fp32's, and lower than before them (it trained). Measured on the CPU (tiny BERT; MiniLM): first
  step 1.7e-4 / 5.1e-5 (bf16) and 1.0e-5 / 2.8e-5 (fp16), after 6 steps at most 5e-4; no fp16 step skipped;
- resume after SIGKILL: bitwise equal weights. On CUDA only with deterministic algorithms
  (`torch.use_deterministic_algorithms(True)`, `CUBLAS_WORKSPACE_CONFIG=:4096:8`), as the harness runs it: without
  them the embedding backward's atomic adds and cuBLAS's split reductions may sum in another order each run;
- embedding on CUDA in the embed step's `auto` precision vs CPU fp32: every row at cosine ≥ MIN_COSINE (0.9999),
  and CUDA fp32 vs CPU fp32 at ≥ 0.99999 (TF32 is off by default).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from mtl_model.config import TrainConfig
from mtl_model.train import TrainingRun, task_loss, train_multitask
from tests.conftest import REPO_ROOT, SAMPLE_DIR
from tests.helpers import one_batch_split, splits, tiny_model

CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: run `python -m benchmarks.gpu_check` there")
AMP_FIRST_RTOL = {"bf16": 5e-3, "fp16": 1e-3}
AMP_AFTER_RTOL = 1e-2
AMP_STEPS = 6
DETERMINISTIC_MAIN = (
    "import sys, torch; torch.use_deterministic_algorithms(True, warn_only=True); "
    "from mtl_model.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> Path:
    """all-MiniLM-L6-v2 expanded by gpu_check (MTL_GPU_BACKBONE), else the tiny random BERT."""
    expanded = os.environ.get("MTL_GPU_BACKBONE")
    return Path(expanded) if expanded and Path(expanded, "config.json").is_file() else tiny_backbone


# ----------------------------------------------------------------------------- autocast training steps


def without_dropout(model: nn.Module) -> nn.Module:
    """Dropout off everywhere, so precision is the only difference between two runs (masks are drawn per dtype)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def held_out_loss(model: nn.Module, device: str) -> float:
    """fp32 topic loss on a batch never trained on."""
    held = one_batch_split(seed=9, rows=16)
    ids, mask = torch.from_numpy(held.input_ids).to(device), torch.from_numpy(held.attention_mask).to(device)
    model.eval()
    with torch.inference_mode():
        logits = model(ids, mask, task="topic")["logits"]  # (16, 4)
    return float(task_loss(logits, torch.from_numpy(held.labels).to(device)))


def amp_run(backbone: Path, device: str, precision: str) -> dict:
    """`AMP_STEPS` optimizer steps of the training engine in `precision` on fixed data: step losses, held-out loss
    before and after, and the steps the fp16 gradient scaler skipped (overflow)."""
    model = without_dropout(tiny_model(backbone).to(device))
    before = held_out_loss(model, device)
    config = TrainConfig(max_steps=AMP_STEPS, batch_size=8, learning_rate=1e-4, head_learning_rate=1e-3, seed=0)
    run = TrainingRun(config, device=device, precision=precision)
    run.setup(model, splits(rows=16))
    run.begin()
    losses, skipped = [], 0
    for _ in range(AMP_STEPS):
        scale = run.scaler.get_scale() if run.scaler.is_enabled() else 1.0
        losses.append(run.step())
        skipped += run.scaler.is_enabled() and run.scaler.get_scale() < scale
    run.finish()
    return {"losses": losses, "before": before, "after": held_out_loss(model, device), "skipped": skipped}


def check_amp_matches_fp32(backbone: Path, device: str, precision: str) -> dict:
    reference, amp = amp_run(backbone, device, "fp32"), amp_run(backbone, device, precision)
    assert amp["losses"][0] == pytest.approx(reference["losses"][0], rel=AMP_FIRST_RTOL[precision])
    assert amp["losses"][0] != reference["losses"][0]  # autocast really computed in the lower precision
    assert amp["skipped"] <= 2, amp  # the scaler backs off from 2^16 at most twice on this model
    assert amp["after"] == pytest.approx(reference["after"], rel=AMP_AFTER_RTOL)
    assert amp["after"] < amp["before"]
    return {"fp32": reference, precision: amp}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_step_matches_fp32_on_cpu(tiny_backbone, precision):
    """The harness of the CUDA test below, on the CPU (autocast and GradScaler run there too)."""
    check_amp_matches_fp32(tiny_backbone, "cpu", precision)


@gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_step_matches_fp32_on_cuda(backbone, precision, record_property):
    runs = check_amp_matches_fp32(backbone, "cuda", precision)
    record_property(f"{precision}_losses", json.dumps(runs[precision]["losses"]))
    record_property("fp32_losses", json.dumps(runs["fp32"]["losses"]))


# ------------------------------------------------------------------------------- SIGKILL and resume


def resume_config(tmp_path: Path, backbone: Path, steps: int) -> Path:
    """The default config on the sample data with `backbone`, `steps` steps and 8 checkpoints on the way, no corpus."""
    config = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())
    config.update(name="resume", data_dir=str(SAMPLE_DIR))
    config["model"].update(backbone=str(backbone), projection_dim=16)
    config["embed"]["corpus"] = None
    config["train"].update(max_steps=steps, batch_size=8, checkpoint_every=steps // 8)
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(config: Path, out: Path, device: str) -> list[str]:
    """`python -m mtl_model` with deterministic algorithms switched on first."""
    return [sys.executable, "-c", DETERMINISTIC_MAIN, "--config", str(config), "--out", str(out), "--device", device]


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def saved_weights(out: Path) -> dict[str, torch.Tensor]:
    return {
        **load_file(str(out / "model/heads.safetensors")),
        **load_file(str(out / "model/encoder/model.safetensors")),
    }


def kill_at_first_checkpoint(command: list[str], out: Path) -> None:
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=run_env(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("step-*.pt")):
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


def check_killed_run_resumes_bitwise(tmp_path: Path, backbone: Path, device: str, steps: int) -> int:
    """An uninterrupted run, then one SIGKILLed after its first checkpoint and started again: the same weights."""
    config = resume_config(tmp_path, backbone, steps)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(cli(config, straight, device), check=True, cwd=REPO_ROOT, env=run_env(), stdout=subprocess.DEVNULL)
    kill_at_first_checkpoint(cli(config, killed, device), killed)
    assert not (killed / "model").exists()
    subprocess.run(cli(config, killed, device), check=True, cwd=REPO_ROOT, env=run_env(), stdout=subprocess.DEVNULL)
    resumed_from = json.loads((killed / "training.json").read_text())["resumed_from"]
    assert resumed_from is not None and steps // 8 <= resumed_from < steps
    a, b = saved_weights(straight), saved_weights(killed)
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []
    return resumed_from


def test_killed_run_resumes_bitwise_on_cpu(tmp_path, tiny_backbone):
    check_killed_run_resumes_bitwise(tmp_path, tiny_backbone, "cpu", steps=40)  # 3 runs: ~1 min on 2 busy cores


@gpu
@needs_cuda
def test_killed_run_resumes_bitwise_on_cuda(tmp_path, tiny_backbone, record_property):
    record_property("resumed_from", check_killed_run_resumes_bitwise(tmp_path, tiny_backbone, "cuda", steps=200))


# ---------------------------------------------------------------------------- embedding, device, memory


def sample_texts() -> list[str]:
    """The 420 sample SST-2-style sentences (train and dev)."""
    files = ("sentiment/train.tsv", "sentiment/dev.tsv")
    return [line.split("\t")[0] for name in files for line in (SAMPLE_DIR / name).read_text().splitlines()[1:]]


@gpu
@needs_cuda
def test_embedding_on_cuda_matches_cpu_fp32(backbone, record_property):
    from mtl_model.backbone import load_tokenizer
    from mtl_model.embed import decide_precision, embed_texts, min_cosine
    from mtl_model.embed.tiers import MIN_COSINE
    from mtl_model.model import HeadSpec, build_model

    heads = [HeadSpec(name="none", kind="sentence", labels=["x"])]
    model = build_model(
        backbone=str(backbone), heads=heads, pooling="mean", projection_dim=None, normalize=True, head_dropout=0.0,
        max_seq_length=128,
    ).eval()  # fmt: skip
    tokenizer, texts = load_tokenizer(str(backbone)), sample_texts()
    cpu, _ = embed_texts(model, tokenizer, texts, batch_size=64, device="cpu", precision="fp32")
    model.to("cuda")
    precision, _ = decide_precision(model, tokenizer, texts[:64], device="cuda", requested="auto", batch_size=64)
    reduced, _ = embed_texts(model, tokenizer, texts, batch_size=64, device="cuda", precision=precision)
    full, _ = embed_texts(model, tokenizer, texts, batch_size=64, device="cuda", precision="fp32")
    assert precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert min_cosine(reduced, cpu) >= MIN_COSINE
    assert min_cosine(full, cpu) >= 0.99999
    record_property("min_cosine_auto_vs_cpu_fp32", min_cosine(reduced, cpu))
    record_property("min_cosine_fp32_vs_cpu_fp32", min_cosine(full, cpu))


@gpu
@needs_cuda
def test_device_auto_picks_cuda(tmp_path, tiny_backbone):
    from mtl_model.device import resolve_device, resolve_precision
    from mtl_model.options import PipelineOptions
    from mtl_model.pipeline import prepare_run

    assert resolve_device("auto") == "cuda"
    assert resolve_precision("cuda", "auto") == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    options = PipelineOptions(
        config_path=str(REPO_ROOT / "data/configs/default.yaml"),
        out=str(tmp_path / "run"),
        data_dir=str(SAMPLE_DIR),
        device="auto",
        overrides=[f"model.backbone={tiny_backbone}"],
    )
    _, device, precision = prepare_run(options)  # what every entry point decides first
    assert (device, precision) == ("cuda", resolve_precision("cuda", "auto"))


@gpu
@needs_cuda
def test_peak_gpu_memory_of_training_is_reported(backbone, record_property):
    from mtl_model.memory import PeakMemory

    model = tiny_model(backbone).to("cuda")
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    with PeakMemory("cuda") as memory:
        config = TrainConfig(max_steps=5, batch_size=32)
        train_multitask(model, splits(rows=64), config, device="cuda", precision="bf16", progress=False)
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    assert memory.kind == "cuda peak allocated"
    assert 3 * weights_mb <= memory.peak_mb < total_mb  # weights, gradients and AdamW's two moments at least
    record_property("peak_gpu_mb", memory.peak_mb)
    print(f"peak GPU memory, 5 training steps of batch 32: {memory.peak_mb} MiB ({weights_mb:.1f} MiB of weights)")
