"""The parts of `benchmarks/gpu_check.py`, one process each: `python -m benchmarks.gpu_parts PART --work DIR ...`.

Each writes `<work>/results/<part>.json`; `gpu_check` runs them under time limits and merges the results. They read
the expanded bundle in `<work>` (backbone in fp32, plain data files) and never `../shared` or the network.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_SENTENCES = 32_768  # SST-2 train sentences per side on a GPU: 1,024 steps of 32, so start-up costs ~1 %
EMBED_SENTENCES = 0  # 0: all 67,349 SST-2 train sentences (the issue's `encode` reference: ~10.7k/s on an H100)
# Dense bf16 peak by device name (NVIDIA data sheets, SXM parts); MFU is None for devices not listed.
PEAK_BF16_FLOPS = {"H200": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12, "A100": 312.0e12, "L40S": 362.0e12}
SMOKE_ROWS = {"ag_news/test.csv": 80, "sst2/train.tsv": 64, "sst2/dev.tsv": 32}
SMOKE_SENTENCES = {"conll2003/train.txt": 40, "conll2003/dev.txt": 16, "conll2003/test.txt": 16}
QUALITY_OVERHEAD_S = 90  # start-up, tokenizing ~90k rows, evaluation, saving: measured on 2 CPU cores, less there
MULTITASK_STEP_COST = 1.5  # a three-task step (NER's longer rows and token head) vs three SST-2 batches
FALLBACK_RATE = {"cuda": 1_000.0, "cpu": 20.0}  # samples/s when the train part produced none


def save_result(work: Path, name: str, result: dict) -> None:
    (work / "results" / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")


# ------------------------------------------------------------------------------------------ prepare


def smoke_cut(name: str, text: str) -> str:
    """A smoke run's slice of a data file: rows spread over the file (every class present), or whole sentences."""
    lines = text.splitlines(keepends=True)
    if name in SMOKE_ROWS:
        header, rows = (lines[:1], lines[1:]) if name.endswith(".tsv") else ([], lines)
        return "".join(header + rows[:: max(1, len(rows) // SMOKE_ROWS[name])][: SMOKE_ROWS[name]])
    kept, sentences = [], 0
    for line in lines:
        kept.append(line)
        sentences += not line.strip()
        if sentences > SMOKE_SENTENCES[name]:
            break
    return "".join(kept)


def unpack_data(source: Path, target: Path, smoke: bool) -> dict[str, int]:
    """The bundle's gzip'd files as plain files in the layout of data/configs/three_task.yaml; lines per file."""
    lines = {}
    for packed in sorted(source.rglob("*.gz")):
        name = packed.relative_to(source).as_posix()[: -len(".gz")]
        text = gzip.decompress(packed.read_bytes()).decode("utf-8")
        text = smoke_cut(name, text) if smoke else text
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text, encoding="utf-8")
        lines[name] = text.count("\n")
    return lines


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors", "accelerate", "pydantic")
    found = {}
    for name in (*names, "seqeval", "pyarrow", "pandas", "scikit-learn", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def environment(requested: str) -> dict:
    """Versions, the accelerator, what `device: auto` resolves to, and whether the library pulled in Prefect."""
    import platform

    import torch

    import mtl_model.cli  # noqa: F401  (the `python -m mtl_model` path and what it imports)
    import mtl_model.pipeline  # noqa: F401
    from mtl_model.device import resolve_device, resolve_precision

    device = resolve_device(requested)
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "gpu_capability": list(torch.cuda.get_device_capability()) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "device": device,
        "auto_device": resolve_device("auto"),
        "auto_precision": resolve_precision(device, "auto"),
        "mtl_model_imported_prefect": "prefect" in sys.modules,
        "prefect_importable": importable("prefect"),
    }


def importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def part_prepare(args: argparse.Namespace, context: dict) -> dict:
    from benchmarks.gpu_bundle import expand_backbone, read_manifest

    expand_backbone(args.bundle / "backbone", args.work / "backbone")
    lines = unpack_data(args.bundle / "data", args.work / "data", args.smoke)
    sections = read_manifest(args.bundle)["sections"]
    return {
        "environment": environment(args.device),
        "data_source": sections["data"]["info"]["source"],
        "data_lines": lines,
        "backbone_check": sections["backbone"]["info"],
    }


# -------------------------------------------------------------------------------------------- tests


def junit_cases(path: Path) -> list[dict]:
    """Per test: name, outcome, seconds, skip/failure message, recorded properties (peak memory, losses)."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome, message = {"failure": "failed"}.get(kind, kind), element.get("message")
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        cases.append(
            {"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0))}
            | ({"message": message} if message else {})
            | ({"properties": properties} if properties else {})
        )
    return cases


def part_tests(args: argparse.Namespace, context: dict) -> dict:
    """The CUDA tests. On a CUDA machine a skipped one is a failure: it would hide an untested path."""
    import pytest
    import torch

    junit = args.work / "gpu_tests.xml"
    code = pytest.main(
        ["-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}", "tests/test_gpu.py"]
    )
    cases = junit_cases(junit) if junit.is_file() else []
    counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    cuda = torch.cuda.is_available()
    cuda_passed = cuda and bool(cases) and counts["passed"] == len(cases)
    ok = int(code) == 0 and (cuda_passed or not cuda)
    status = "ok" if ok else "failed"
    return {"status": status, "pytest_exit": int(code), "counts": counts, "cuda_passed": cuda_passed, "cases": cases}


# -------------------------------------------------------------------------------------------- train


def flops_per_example(backbone: Path, lengths) -> float:
    """Model FLOPs of one training example (forward + backward = 3 × forward), averaged over the real token
    counts `lengths` (N,): 6·N_matmul per token, plus attention's QKᵀ and AV, 12·L·d·T per token."""
    config = json.loads((backbone / "config.json").read_text())
    layers, width, inner = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    matmul_params = layers * (4 * width * width + 2 * width * inner)
    per_example = [t * (6 * matmul_params + 12 * layers * width * t) for t in lengths.tolist()]
    return float(sum(per_example) / len(per_example))


def peak_flops(device: str) -> tuple[float | None, str | None]:
    import torch

    if device != "cuda":
        return None, None
    name = torch.cuda.get_device_name()
    return next(((peak, name) for key, peak in PEAK_BF16_FLOPS.items() if key in name), (None, name))


def part_train(args: argparse.Namespace, context: dict) -> dict:
    """Ours vs HF `Trainer`: the same SST-2 sentences, batch, steps and precision (bf16 on a GPU)."""
    import numpy as np

    from benchmarks import train_throughput as bench
    from mtl_model.backbone import load_tokenizer
    from mtl_model.readers import read_glue_tsv

    backbone = args.work / "backbone"
    bench.BACKBONE = str(backbone)  # train_throughput's functions read their backbone from this constant
    precision = "bf16" if args.device == "cuda" else "fp32"
    train_all = read_glue_tsv(args.work / "data/sst2/train.tsv").examples
    dev = read_glue_tsv(args.work / "data/sst2/dev.tsv").examples
    count, batch = (16, 8) if args.smoke else (min(TRAIN_SENTENCES, len(train_all)), 32)
    train = [train_all[i] for i in np.random.default_rng(0).permutation(len(train_all))[:count]]
    steps, tokenizer = count // batch, load_tokenizer(str(backbone))
    common = {"batch_size": batch, "lr": 5e-5, "device": args.device}
    with tempfile.TemporaryDirectory() as tmp:
        train_split = bench.tokenized_split(train, tokenizer, Path(tmp) / "train.parquet")
        dev_split = bench.tokenized_split(dev, tokenizer, Path(tmp) / "dev.parquet")
        if args.device == "cuda":  # kernels, cuBLAS handles and the allocator warm, for both sides
            bench.run_ours(train_split, dev_split, steps=20, precision=precision, group=True, **common)
        hf = bench.run_hf(train, dev, steps=steps, bf16=precision == "bf16", **common)
        ours = bench.run_ours(train_split, dev_split, steps=steps, precision=precision, group=True, **common)
    flops = flops_per_example(backbone, train_split.attention_mask.sum(axis=1))
    peak, gpu = peak_flops(args.device)
    for side in (ours, hf):
        side["mfu"] = flops * side["samples_per_second"] / peak if peak else None
    return {
        "precision": precision,
        "sentences": count,
        "batch_size": batch,
        "steps": steps,
        "ours": ours,
        "hf": hf,
        "ratio": ours["samples_per_second"] / hf["samples_per_second"],
        "flops_per_example": flops,
        "peak_flops": peak,
        "gpu": gpu,
    }


# -------------------------------------------------------------------------------------------- embed


def bare_forward_rate(backbone: Path, device: str, smoke: bool) -> float:
    """Sentences/s of the bare encoder forward (bf16 on a GPU, batch 1,024 of 32 tokens): the ceiling."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(backbone, dtype=torch.float32).to(device).eval()
    batch, repeats = (8, 2) if smoke else (1024, 30)
    ids = torch.randint(1000, 20000, (batch, 32), device=device)  # (B, 32)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
        model(input_ids=ids)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids)
        if device == "cuda":
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - started)


def timed_embed(model_dir: Path, corpus: Path, out_dir: Path, device: str) -> tuple[float, object, str]:
    """(seconds, (N, D) vectors, precision) of the whole embed step with its defaults (precision auto)."""
    import numpy as np
    import pyarrow.parquet as pq

    from mtl_model.config import EmbedConfig
    from mtl_model.steps import embed

    started = time.perf_counter()
    summary = embed(str(model_dir), str(corpus), EmbedConfig(), device=device, out_dir=str(out_dir))
    seconds = time.perf_counter() - started
    vectors = np.stack(pq.read_table(out_dir / "embeddings").column("embedding").to_numpy(zero_copy_only=False))
    return seconds, vectors, summary.precision


def part_embed(args: argparse.Namespace, context: dict) -> dict:
    """The embed step vs `SentenceTransformer.encode` (its defaults: batch 32, fp32) on the same sentences."""
    from sentence_transformers import SentenceTransformer

    from benchmarks import embed_throughput as bench
    from mtl_model.embed import min_cosine
    from mtl_model.readers import read_glue_tsv

    backbone, scratch = args.work / "backbone", args.work / "embed"
    bench.BACKBONE = str(backbone)  # embed_throughput's functions read their backbone from this constant
    texts = [e.text for e in read_glue_tsv(args.work / "data/sst2/train.tsv").examples]
    texts = texts[: 32 if args.smoke else EMBED_SENTENCES or None]
    model_dir = bench.build_model_dir(scratch / "model")
    bench.write_corpus(scratch / "corpus.parquet", texts)
    bench.write_corpus(scratch / "warm.parquet", texts[:512])
    peer = SentenceTransformer(str(backbone), device=args.device)
    if not args.smoke:  # warm-up (kernels, allocator) for both sides
        peer.encode(texts[:256])
        timed_embed(model_dir, scratch / "warm.parquet", scratch / "warm", args.device)
    seconds, ours, precision = timed_embed(model_dir, scratch / "corpus.parquet", scratch / "ours", args.device)
    started = time.perf_counter()
    reference = peer.encode(texts)  # numpy: waits for the GPU
    peer_seconds = time.perf_counter() - started
    return {
        "sentences": len(texts),
        "ours": {"sentences_per_s": len(texts) / seconds, "seconds": seconds, "precision": precision},
        "encode": {"sentences_per_s": len(texts) / peer_seconds, "seconds": peer_seconds, "precision": "fp32"},
        "ratio": peer_seconds / seconds,
        "min_cosine_vs_encode": min_cosine(ours, reference),
        "bare_forward_sentences_per_s_32_tokens": bare_forward_rate(backbone, args.device, args.smoke),
    }


# ------------------------------------------------------------------------------------------ quality


SMOKE_OVERRIDES = {"train.batch_size": 8, "tokenize.max_seq_length": 64}


def full_epoch_steps(config_path: Path, data: Path, overrides: dict) -> tuple[int, int]:
    """(optimizer steps of the config's epochs on the bundled data, examples per step)."""
    import yaml

    from mtl_model.config import TrainConfig
    from mtl_model.train import total_steps

    settings = yaml.safe_load(config_path.read_text())["train"]
    train = TrainConfig(**settings | {k.split(".")[1]: v for k, v in overrides.items() if k.startswith("train.")})
    sst = (data / "sst2/train.tsv").read_text().count("\n") - 1
    conll = sum(1 for block in (data / "conll2003/train.txt").read_text().split("\n\n") if block.strip())
    topic = math.floor(0.7 * (data / "ag_news/test.csv").read_text().count("\n"))
    sizes = {"topic": topic, "sentiment": sst, "ner": conll}
    per_step = train.batch_size * (len(sizes) if train.task_sampling == "all" else 1)
    return total_steps(train, sizes), per_step * train.gradient_accumulation_steps


def planned_steps(args: argparse.Namespace, context: dict, full: int, per_step: int) -> int:
    """The largest number of steps that fits the time box at the measured training rate (the full epoch if it does)."""
    if args.smoke:
        return min(full, 2)
    rate = context.get("train_samples_per_s") or FALLBACK_RATE[args.device]
    seconds_per_step = per_step / rate * MULTITASK_STEP_COST
    return max(1, min(full, int((context["box_s"] - QUALITY_OVERHEAD_S) / seconds_per_step)))


def quality_command(args: argparse.Namespace, overrides: dict) -> list[str]:
    config, data, out = REPO_ROOT / "data/configs/three_task.yaml", args.work / "data", args.work / "quality"
    command = [sys.executable, "-m", "mtl_model", "--config", str(config), "--data-dir", str(data), "--out", str(out)]
    command += ["--device", args.device, "--json", "--set", f"model.backbone={args.work / 'backbone'}"]
    return command + [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


def part_quality(args: argparse.Namespace, context: dict) -> dict:
    """The three-task real config through `python -m mtl_model` (the Prefect-free path), timed end to end."""
    overrides = dict(SMOKE_OVERRIDES) if args.smoke else {}
    full, per_step = full_epoch_steps(REPO_ROOT / "data/configs/three_task.yaml", args.work / "data", overrides)
    steps = planned_steps(args, context, full, per_step)
    command = quality_command(args, overrides | ({} if steps == full else {"train.max_steps": steps}))
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=context["box_s"] - 10, cwd=REPO_ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python -m mtl_model exited {done.returncode}: {done.stdout[-2000:]}")
    result = json.loads(done.stdout)
    if result["training"]["steps"] != steps:
        raise RuntimeError(f"planned {steps} steps, the run made {result['training']['steps']}")
    return {
        "full_epoch": steps == full,
        "steps": steps,
        "full_epoch_steps": full,
        "examples_per_step": per_step,
        "planned_from_samples_per_s": context.get("train_samples_per_s"),
        "wall_s": wall,
        "training": result["training"],
        "metrics": result["metrics"],
    }


PARTS = {
    "prepare": part_prepare,
    "tests": part_tests,
    "train": part_train,
    "embed": part_embed,
    "quality": part_quality,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--context", type=json.loads, default={})
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    from mtl_model.runtime import quiet_third_party

    quiet_third_party()
    started = time.perf_counter()
    result = PARTS[args.part](args, args.context)
    save_result(args.work, args.part, {"part_seconds": round(time.perf_counter() - started, 1)} | result)
    return 0 if result.get("status", "ok") == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
