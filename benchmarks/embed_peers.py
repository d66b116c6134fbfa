"""The peer table of issue 17: our embed path against sentence-transformers' CPU backends, reproducibly.

    python benchmarks/embed_peers.py [--data-dir ../shared/data] [--sentences 4000] [--rounds 3] [--smoke]

Contenders, each in its own fresh process, interleaved for `--rounds` rounds on the same real-sentence mix
(SST-2 train, AG News test, CoNLL-2003 train, a third each; data/sample when ../shared is absent):

- `SentenceTransformer.encode`, torch fp32 (the baseline), and its `backend="openvino"` (defaults) and
  `backend="onnx"`, plus ONNX Runtime dynamic int8 and OpenVINO static int8 (NNCF): these run in a peer venv
  (`.peer-venv/venv`, from `benchmarks/requirements-peers.txt`; rebuilt when that file changes), because
  optimum-intel / optimum-onnx need transformers < 4.58 and this project runs 5.x.
- every tier of ours: `mtl_model.embed.embed_texts` (the embed step's tokenize + sorted batches + forward) in
  fp32, and bf16 where the CPU computes it natively (`mtl_model.device.cpu_has_bf16`).

Speed is steady state: model load and a 64-sentence warm-up are excluded, tokenization is included on both
sides. Quality is judged against fp32 `encode` with the tier gates (`mtl_model.embed.tiers`). The matmul
ceiling is measured at the model's feed-forward shapes (64 rows × the mix's mean tokens) in fresh processes:
fp32 and bf16 in torch, int8 as ONNX Runtime's MatMulInteger (what its int8 peer runs); each
contender's speed is shown as a share of the ceiling of its precision, FLOPs per sentence counted from the
model config and each sentence's tokens. Prints the CPU, the table, then one JSON line last.

Cached in `.peer-venv/` (git-ignored): `venv/` (about 1.8 GB; ~3 min to build cold) and `models/<key>/`, the
bundled model exported to ONNX and OpenVINO and quantized once (~1.5 min). `--smoke`: 128 sentences, 1 round.

A sibling of `embed_throughput.py` rather than part of it: that one times the whole step (load, Parquet,
precision check) and peak RSS in the main venv; this one needs a second interpreter and a process per run.
Only the standard library is imported at module level, so the peer venv can run this file as a worker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "benchmarks" / "requirements-peers.txt"
CACHE = REPO_ROOT / ".peer-venv"
ISA_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512f", "avx512_vnni", "avx_vnni", "avx2")
BACKBONE = "bundled:all-MiniLM-L6-v2"
WARMUP = 64
CALIBRATION_PER_SOURCE = 100  # OpenVINO int8 calibration texts, taken from the end of each source
WORKER_TIMEOUT_S = 900
OV_INT8_FILE = "openvino_model_qint8_static.xml"
PEER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Contender:
    """One row of the table: who runs it (`peer` venv or `ours`), how, and what precision it computes in."""

    name: str
    label: str
    side: str  # "peer" or "ours"
    precision: str  # fp32, bf16, int8, or "ov-default" (bf16 where the CPU has it natively, else fp32)
    backend: str = "torch"
    file_name: str | None = None


def contenders(has_bf16: bool, int8_config: str) -> list[Contender]:
    """The table's rows on this CPU: bf16 tiers of ours only where bf16 is native (emulated bf16 says nothing)."""
    rows = [
        Contender("encode", "`encode`, torch fp32 (baseline)", "peer", "fp32"),
        Contender(
            "st-openvino", 'sentence-transformers `backend="openvino"`, defaults', "peer", "ov-default", "openvino"
        ),
        Contender("st-onnx", 'sentence-transformers `backend="onnx"`', "peer", "fp32", "onnx"),
        Contender(
            "ort-int8",
            f"ONNX Runtime dynamic int8 ({int8_config})",
            "peer",
            "int8",
            "onnx",
            f"onnx/model_int8_{int8_config}.onnx",
        ),
        Contender("ov-int8", "OpenVINO static int8 (NNCF)", "peer", "int8", "openvino", f"openvino/{OV_INT8_FILE}"),
        Contender("ours-fp32", "this project's embed path, tier fp32", "ours", "fp32"),
    ]
    if has_bf16:
        rows.append(Contender("ours-bf16", "this project's embed path, tier bf16", "ours", "bf16"))
    return rows


def effective_precision(contender: Contender, has_bf16: bool) -> str:
    """The precision whose ceiling a contender is compared with (OpenVINO's default runs bf16 where native)."""
    if contender.precision == "ov-default":
        return "bf16" if has_bf16 else "fp32"
    return contender.precision


# --- CPU, model arithmetic and the matmul ceiling -------------------------------------------------------------


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """Model name, logical cores and the ISA flags that decide bf16/int8 speed: the table is only read with these."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in ISA_FLAGS},
    }


def int8_quantization_config(flags: dict[str, bool]) -> str:
    """sentence-transformers' ONNX dynamic int8 preset for this CPU."""
    if flags.get("avx512_vnni"):
        return "avx512_vnni"
    return "avx512" if flags.get("avx512f") else "avx2"


def flops_per_sentence(config: dict[str, Any], tokens: int) -> float:
    """Forward FLOPs of one unpadded sentence of `tokens` tokens through a BERT encoder (2 FLOPs per multiply-add).

    Per token and layer: Q, K, V and output projections 4·H², feed-forward 2·H·I, attention scores and
    weighted values 2·T·H multiply-adds. Embeddings, LayerNorm, softmax and pooling are not matmuls: left out."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_token = 4 * hidden * hidden + 2 * hidden * inter + 2 * tokens * hidden
    return 2.0 * layers * tokens * per_token


def mean_gflop(config: dict[str, Any], lengths: list[int]) -> float:
    """Mean GFLOP per sentence of a mix with these token counts (the attention term grows with each length)."""
    return sum(flops_per_sentence(config, n) for n in lengths) / len(lengths) / 1e9


def gflops(step: Any, flops_per_step: float, seconds: float) -> float:
    """GFLOP/s of `step` after a warm-up, timed for at least `seconds` and 5 calls."""
    for _ in range(3):
        step()
    done, started = 0, time.perf_counter()
    while done < 5 or time.perf_counter() - started < seconds:
        step()
        done += 1
    return done * flops_per_step / (time.perf_counter() - started) / 1e9


def matmul_gflops(dtype_name: str, rows: int, hidden: int, inter: int, seconds: float) -> float:
    """torch GFLOP/s of the feed-forward pair (rows×H)·(H×I) and (rows×I)·(I×H) in fp32 or bf16."""
    import torch

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, w1 = torch.randn(rows, hidden, dtype=dtype), torch.randn(inter, hidden, dtype=dtype)
    h, w2 = torch.randn(rows, inter, dtype=dtype), torch.randn(hidden, inter, dtype=dtype)

    def step() -> None:
        torch.nn.functional.linear(a, w1)
        torch.nn.functional.linear(h, w2)

    with torch.inference_mode():
        return gflops(step, 2 * (2 * rows * hidden * inter), seconds)


def int8_matmul_gflops(rows: int, hidden: int, inter: int, seconds: float) -> float:
    """GFLOP/s (int8 ops) of the same pair as ONNX Runtime's MatMulInteger, u8 activations × s8 weights: the
    kernel its dynamic int8 runs, in the peer venv. torch's `_int_mm` is CPU-dependent: slow on the AVX2 CPU of
    docs/RESULTS.md §8, ~1.6× this kernel on a Zen 4 with VNNI (`benchmarks/int8_gate.py`, §11)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.integers(-64, 64, shape, dtype=np.int8), name)
        for name, shape in (("w1", (hidden, inter)), ("w2", (inter, hidden)))
    ]
    nodes = [
        helper.make_node("MatMulInteger", ["a", "w1"], ["y1"]),
        helper.make_node("MatMulInteger", ["h", "w2"], ["y2"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.UINT8, [rows, k]) for n, k in (("a", hidden), ("h", inter))]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.INT32, [rows, k]) for n, k in (("y1", inter), ("y2", hidden))
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "ffn", inputs, outputs, weights), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "a": rng.integers(0, 255, (rows, hidden), dtype=np.uint8),
        "h": rng.integers(0, 255, (rows, inter), dtype=np.uint8),
    }
    return gflops(lambda: session.run(None, feeds), 2 * (2 * rows * hidden * inter), seconds)


# --- the text mix ---------------------------------------------------------------------------------------------


def source_sentences(data_dir: Path) -> tuple[dict[str, list[str]], str]:
    """SST-2 train, AG News test and CoNLL-2003 train sentences from `data_dir`; the bundled sample when absent."""
    from mtl_model.readers import read_ag_news, read_conll, read_glue_tsv

    if (data_dir / "sst2").is_dir():
        paths = (data_dir / "sst2/train.tsv", data_dir / "ag_news/test.csv", data_dir / "conll2003/train.txt")
        where = str(data_dir)
    else:
        sample = REPO_ROOT / "data" / "sample"
        paths = (sample / "sentiment/train.tsv", sample / "topic/news.csv", sample / "ner/train.txt")
        where = f"{sample} (no {data_dir})"
    sst = [e.text for e in read_glue_tsv(paths[0]).examples]
    news = [e.text for e in read_ag_news(paths[1]).examples]
    conll = [" ".join(e.tokens) for e in read_conll(paths[2], invalid_bio="repair").examples]
    return {"sst2": sst, "ag_news": news, "conll2003": [s for s in conll if s != "-DOCSTART-"]}, where


def interleave(sources: dict[str, list[str]], count: int, from_end: bool = False) -> list[str]:
    """Up to `count` texts taken round-robin from each source (from their ends for calibration, away from the mix)."""
    lists = [list(reversed(texts)) if from_end else texts for texts in sources.values()]
    mixed: list[str] = []
    for index in range(max(len(texts) for texts in lists)):
        mixed.extend(texts[index] for texts in lists if index < len(texts))
        if len(mixed) >= count:
            break
    return mixed[:count]


# --- the peer venv and its exported models ---------------------------------------------------------------------


def file_digest(*parts: bytes) -> str:
    """sha256 of the parts: the cache key of the venv (its requirements) and of the exported models."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def requirement_pins(text: str) -> dict[str, str]:
    """`name -> version` of a pinned requirements file; a line that is not `name==version` is an error."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version or any(c in version for c in "<>=!~,;* "):
            raise ValueError(f"not an exact pin: {line!r}")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def ensure_peer_venv(requirements: Path, venv: Path) -> tuple[Path, float | None]:
    """The peer venv's python, built from `requirements` unless a venv with the same requirements hash exists.

    Returns its python and the seconds a rebuild took (None: reused). `--only-binary` so no sdist builds, and
    torch is pinned exactly so pip takes the local CPU wheel instead of downloading a CUDA build."""
    stamp, python = venv / ".requirements-sha256", venv / "bin" / "python"
    wanted = file_digest(requirements.read_bytes())
    if python.exists() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return python, None
    requirement_pins(requirements.read_text())  # refuse a loose pin before downloading anything
    log(f"building the peer venv {venv} from {requirements.name} (a few minutes, once)")
    started = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "--quiet", "--only-binary=:all:", "-r", str(requirements)]
    done = subprocess.run(install, capture_output=True, text=True)  # pip's chatter only when it fails
    if done.returncode:
        raise SystemExit(f"building the peer venv failed:\n{(done.stdout + done.stderr)[-3000:]}")
    stamp.write_text(wanted + "\n")
    log(f"peer venv built in {time.perf_counter() - started:.0f}s")
    return python, time.perf_counter() - started


def missing_exports(model_dir: Path, rows: list[Contender]) -> list[str]:
    """The backend files the peer rows need that the cached model folder does not have yet."""
    wanted = {"onnx/model.onnx", "openvino/openvino_model.xml"}
    wanted |= {row.file_name for row in rows if row.side == "peer" and row.file_name}
    return sorted(name for name in wanted if not (model_dir / name).is_file())


# --- workers: one contender, one fresh process ------------------------------------------------------------------


def log(message: str) -> None:
    """Progress on stderr, so stdout is the CPU line, the table and the JSON line only."""
    print(f"[embed_peers] {message}", file=sys.stderr, flush=True)


def timed_encode(encode: Any, texts: list[str]) -> tuple[Any, float]:
    """Warm up on the first texts, then time one pass over all of them: steady state, load excluded."""
    encode(texts[:WARMUP])
    started = time.perf_counter()
    vectors = encode(texts)
    return vectors, time.perf_counter() - started


def peer_worker(contender: Contender, model_dir: str, texts: list[str]) -> tuple[Any, float]:
    """sentence-transformers with its defaults (batch 32, normalised by the model's Normalize module)."""
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"backend": contender.backend, "device": "cpu"}
    if contender.file_name:
        kwargs["model_kwargs"] = {"file_name": contender.file_name}
    model = SentenceTransformer(model_dir, **kwargs)
    return timed_encode(lambda batch: model.encode(batch, convert_to_numpy=True), texts)


def ours_worker(contender: Contender, model_dir: str, texts: list[str]) -> tuple[Any, float]:
    """The embed step's model path: one loaded model, tokenize, length-sorted batches of the configured size and
    token cap."""
    from mtl_model.config import EmbedConfig
    from mtl_model.embed import embed_texts, load_model_once
    from mtl_model.embed.inference import default_batch_tokens

    model, tokenizer = load_model_once(model_dir, "embed-peers", "cpu")
    config = EmbedConfig()
    batching = {"batch_size": config.batch_size, "batch_tokens": default_batch_tokens("cpu", config.batch_tokens)}

    def encode(batch: list[str]) -> Any:
        return embed_texts(model, tokenizer, batch, device="cpu", precision=contender.precision, **batching)[0]

    return timed_encode(encode, texts)


def prepare_worker(model_dir: Path, source_dir: str, calibration: list[str], int8_config: str) -> None:
    """Export the ONNX and OpenVINO models once, then the two int8 variants, into the cached model folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    if not (model_dir / "modules.json").is_file():
        shutil.copytree(source_dir, model_dir, dirs_exist_ok=True)
    for backend, target in (("onnx", "onnx/model.onnx"), ("openvino", "openvino/openvino_model.xml")):
        if not (model_dir / target).is_file():
            SentenceTransformer(str(model_dir), backend=backend, device="cpu").save_pretrained(str(model_dir))
    if not (model_dir / f"onnx/model_int8_{int8_config}.onnx").is_file():  # fixed name: u8 or s8 by preset
        model = SentenceTransformer(str(model_dir), backend="onnx", device="cpu")
        export_dynamic_quantized_onnx_model(model, int8_config, str(model_dir), file_suffix=f"int8_{int8_config}")
    if not (model_dir / "openvino" / OV_INT8_FILE).is_file():
        quantize_openvino(model_dir, calibration)


def quantize_openvino(model_dir: Path, calibration: list[str]) -> None:
    """NNCF post-training static int8 of the OpenVINO model, calibrated on held-out sentences (the hub's
    default calibration set, GLUE SST-2, is not reachable offline)."""
    import nncf
    import openvino as ov
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = ov.Core().read_model(str(model_dir / "openvino" / "openvino_model.xml"))
    names = {port.get_any_name() for port in model.inputs}
    items = [
        {k: v for k, v in tokenizer(text, truncation=True, max_length=256, return_tensors="np").items() if k in names}
        for text in calibration
    ]
    quantized = nncf.quantize(
        model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items)
    )
    ov.save_model(quantized, str(model_dir / "openvino" / OV_INT8_FILE))


def worker_main(args: argparse.Namespace) -> None:
    """Entry of a child process: run one contender (or the ceiling, or the exports) and write its results."""
    job = json.loads(Path(args.worker).read_text())
    if job["kind"] == "prepare":
        prepare_worker(Path(job["model_dir"]), job["source_dir"], job["calibration"], job["int8_config"])
        return
    if job["kind"] == "ceiling":
        shape = (job["rows"], job["hidden"], job["inter"], job["seconds"])
        results = {p: int8_matmul_gflops(*shape) if p == "int8" else matmul_gflops(p, *shape) for p in job["dtypes"]}
        Path(job["out"]).write_text(json.dumps(results))
        return
    import numpy as np

    contender = Contender(**job["contender"])
    texts = json.loads(Path(job["texts"]).read_text())
    run = peer_worker if contender.side == "peer" else ours_worker
    vectors, seconds = run(contender, job["model_dir"], texts)
    np.save(job["out"] + ".npy", np.asarray(vectors, dtype=np.float32))
    Path(job["out"] + ".json").write_text(json.dumps({"seconds": seconds, "sentences": len(texts)}))


def run_worker(python: Path, job: dict[str, Any], work: Path, name: str) -> str | None:
    """Run one job in a fresh `python` process; the last stderr line when it failed, else None."""
    job_file = work / f"{name}.job.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, **PEER_ENV}
    if python != Path(sys.executable):
        env.pop("PYTHONPATH", None)  # nothing of the main venv may leak into the peer venv
    command = [str(python), str(Path(__file__).resolve()), "--worker", str(job_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {WORKER_TIMEOUT_S}s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit {done.returncode}"


# --- the report: pure functions of measured numbers ---------------------------------------------------------------


@dataclass
class Measured:
    """What the rounds and the quality check found for one contender."""

    rates: list[float] = field(default_factory=list)
    """Steady-state sentences/s of each round that ran."""
    errors: list[str] = field(default_factory=list)
    min_cosine: float | None = None
    neighbour_overlap: float | None = None


def passes(measured: Measured, gates: dict[str, float]) -> bool | None:
    """The bf16 tier's gates against fp32 `encode` (None: no vectors to judge)."""
    if measured.min_cosine is None:
        return None
    overlap_ok = measured.neighbour_overlap is None or measured.neighbour_overlap >= gates["neighbour_overlap"]
    return measured.min_cosine >= gates["min_cosine"] and overlap_ok


def build_report(
    *,
    cpu: dict[str, Any],
    rows: list[Contender],
    measured: dict[str, Measured],
    ceiling_gflops: dict[str, float | None],
    gflop_per_sentence: float,
    gates: dict[str, float],
    has_bf16: bool,
    auto_tier: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report: per contender median speed, × encode, quality, gates and % of its precision's ceiling;
    the ceilings; and the issue's ratios for our `auto` tier (vs encode, vs the fastest peer passing the gates)."""
    base = measured.get("encode")
    base_rate = statistics.median(base.rates) if base and base.rates else None
    table: dict[str, Any] = {}
    for row in rows:
        got = measured.get(row.name, Measured())
        rate = statistics.median(got.rates) if got.rates else None
        precision = effective_precision(row, has_bf16)
        ceiling = ceiling_gflops.get(precision)
        table[row.name] = {
            "label": row.label,
            "precision": precision,
            "sentences_per_s": rnd(rate, 1),
            "rounds": [round(r, 1) for r in got.rates],
            "x_encode": rnd(rate / base_rate if rate and base_rate else None, 2),
            "min_cosine": rnd(got.min_cosine, 6),
            "neighbour_overlap": rnd(got.neighbour_overlap, 4),
            "passes_gates": passes(got, gates),
            "pct_of_ceiling": rnd(100 * rate * gflop_per_sentence / ceiling if rate and ceiling else None, 1),
            "errors": got.errors,
        }
    return {
        "cpu": cpu,
        **meta,
        "gflop_per_sentence": round(gflop_per_sentence, 4),
        "ceiling": {
            p: {"gflops": rnd(g, 1), "sentences_per_s": rnd(g / gflop_per_sentence if g else None, 1)}
            for p, g in ceiling_gflops.items()
        },
        "gates": gates,
        "contenders": table,
        "auto_tier": auto_tier,
        "ratios": headline_ratios(table, f"ours-{auto_tier}"),
    }


def headline_ratios(table: dict[str, Any], ours: str) -> dict[str, Any]:
    """Our default tier against `encode` (goal ≥ 3×) and against the fastest peer that passes the gates (≥ 1.5×)."""
    peers = {
        name: row
        for name, row in table.items()
        if not name.startswith("ours-") and row["passes_gates"] and row["sentences_per_s"]
    }
    best = max(peers, key=lambda name: peers[name]["sentences_per_s"], default=None)
    mine = table.get(ours, {}).get("sentences_per_s")
    return {
        "ours": ours,
        "ours_vs_encode": table.get(ours, {}).get("x_encode"),
        "best_gated_peer": best,
        "ours_vs_best_gated_peer": rnd(mine / peers[best]["sentences_per_s"] if best and mine else None, 2),
        "ours_pct_of_ceiling": table.get(ours, {}).get("pct_of_ceiling"),
    }


def rnd(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def cell(value: Any, spec: str = "") -> str:
    """A table cell: `–` for what was not measured."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    return format(value, spec)


def format_table(report: dict[str, Any]) -> str:
    """The peer table in the issue's layout (Markdown), the ceilings and the headline ratios under it."""
    lines = [
        "| contender (steady state, model load excluded) | precision | sent/s (median) | rounds | × encode "
        "| min cos vs fp32 | top-10 overlap | bf16 gates | % of ceiling |",
        "|---|---|---:|---|---:|---:|---:|---|---:|",
    ]
    for row in report["contenders"].values():
        rounds = " / ".join(f"{r:.0f}" for r in row["rounds"]) or "; ".join(row["errors"])[:80] or "–"
        lines.append(
            f"| {row['label']} | {row['precision']} | {cell(row['sentences_per_s'], '.1f')} | {rounds} "
            f"| {cell(row['x_encode'], '.2f')} | {cell(row['min_cosine'], '.5f')} "
            f"| {cell(row['neighbour_overlap'], '.4f')} | {cell(row['passes_gates'])} "
            f"| {cell(row['pct_of_ceiling'], '.1f')} |"
        )
    ceilings = "; ".join(
        f"{p} {cell(c['gflops'], '.1f')} GFLOP/s = {cell(c['sentences_per_s'], '.0f')} sent/s"
        for p, c in report["ceiling"].items()
    )
    ratios = report["ratios"]
    lines += [
        "",
        f"matmul ceiling at the feed-forward shapes ({report['ceiling_rows']} token rows), "
        f"{report['gflop_per_sentence']:.3f} GFLOP/sentence at {report['mean_tokens']:.1f} tokens: {ceilings}",
        f"ours ({ratios['ours']}, what `precision: auto` picks here): "
        f"{cell(ratios['ours_vs_encode'], '.2f')}× encode, "
        f"{cell(ratios['ours_vs_best_gated_peer'], '.2f')}× the fastest gated peer ({ratios['best_gated_peer']}), "
        f"{cell(ratios['ours_pct_of_ceiling'], '.1f')} % of its ceiling",
    ]
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=REPO_ROOT.parent / "shared" / "data", type=Path)
    parser.add_argument("--sentences", type=int, default=None, help="size of the text mix (default 4000; smoke 128)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; smoke 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the whole run works, in minutes")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=14.0,
        help="no round is started that would end the run later than this (one-off venv/exports not counted)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peer venv (ours and the ceiling only)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sentences = args.sentences or (128 if args.smoke else 4000)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    return args


def token_lengths(texts: list[str]) -> list[int]:
    """Token counts as the model sees them (special tokens in, cut at max_seq_length 256)."""
    from mtl_model.backbone import load_tokenizer
    from mtl_model.embed import encode_texts

    encoded, _ = encode_texts(load_tokenizer(BACKBONE), texts, 256)
    return [len(ids) for ids in encoded]


def prepare_peers(
    args: argparse.Namespace, rows: list[Contender], calibration: list[str], int8_config: str, work: Path
) -> tuple[Path | None, Path, dict[str, Any]]:
    """The peer venv (built or reused) and the cached model folder with every export the peer rows need."""
    from mtl_model.backbone import resolve_backbone

    bundled = Path(resolve_backbone(BACKBONE))
    if args.no_peers:
        return None, bundled, {"peer_venv": "skipped"}
    python, built_s = ensure_peer_venv(REQUIREMENTS, CACHE / "venv")
    key = file_digest(
        REQUIREMENTS.read_bytes(), (bundled / "model.safetensors").read_bytes(), "\n".join(calibration).encode()
    )
    model_dir = CACHE / "models" / key[:16]
    missing = missing_exports(model_dir, rows)
    if missing:
        log(f"exporting {', '.join(missing)} into {model_dir} (once)")
        started = time.perf_counter()
        job = {"kind": "prepare", "model_dir": str(model_dir), "source_dir": str(bundled)}
        error = run_worker(python, {**job, "calibration": calibration, "int8_config": int8_config}, work, "prepare")
        log(f"exports {'failed: ' + error if error else 'done'} in {time.perf_counter() - started:.0f}s")
    if not (model_dir / "modules.json").is_file():
        model_dir = bundled
    meta = {"peer_venv": str(CACHE / "venv"), "peer_venv_build_s": rnd(built_s, 1), "peer_models": str(model_dir)}
    return python, model_dir, meta


def measure_ceiling(
    config: dict[str, Any], rows: int, seconds: float, peer_python: Path | None, work: Path
) -> dict[str, float | None]:
    """fp32 and bf16 GFLOP/s at the feed-forward shapes in torch, int8 in ONNX Runtime (peer venv), each in a fresh
    process like every contender."""
    ceiling: dict[str, float | None] = {"fp32": None, "bf16": None, "int8": None}
    job = {"kind": "ceiling", "rows": rows, "hidden": config["hidden_size"], "inter": config["intermediate_size"]}
    for python, dtypes in ((Path(sys.executable), ["fp32", "bf16"]), (peer_python, ["int8"])):
        if python is None:
            continue
        out = work / f"ceiling-{dtypes[0]}.json"
        error = run_worker(python, {**job, "seconds": seconds, "dtypes": dtypes, "out": str(out)}, work, out.stem)
        if error:
            log(f"{'/'.join(dtypes)} ceiling failed: {error}")
            continue
        ceiling |= json.loads(out.read_text())
    return ceiling


def run_one(row: Contender, index: int, python: Path, model_dir: Path, work: Path) -> tuple[float | None, str | None]:
    """One contender in one round, in a fresh process: (sentences/s, None) or (None, why it failed)."""
    out = work / f"{row.name}-r{index}"
    job = {"kind": "run", "contender": row.__dict__, "model_dir": str(model_dir)}
    error = run_worker(python, {**job, "texts": str(work / "texts.json"), "out": str(out)}, work, out.name)
    if error:
        return None, error
    result = json.loads(Path(f"{out}.json").read_text())
    return result["sentences"] / result["seconds"], None


def run_rounds(
    rows: list[Contender],
    rounds: int,
    pythons: dict[str, Path | None],
    model_dirs: dict[str, Path],
    work: Path,
    deadline: float,
) -> tuple[dict[str, Measured], dict[str, Path], int]:
    """Every contender once per round, in a fresh process, the order rotated each round; the first vectors kept.
    A round that would end past `deadline` (judged by the slowest round so far) is not started."""
    measured = {row.name: Measured() for row in rows}
    vectors: dict[str, Path] = {}
    slowest = 0.0
    for index in range(rounds):
        if index and time.perf_counter() + slowest > deadline:
            log(f"stopping after {index} round(s): another would overrun the time budget")
            return measured, vectors, index
        started = time.perf_counter()
        for row in rows[index % len(rows) :] + rows[: index % len(rows)]:
            python = pythons[row.side]
            rate, error = run_one(row, index, python, model_dirs[row.side], work) if python else (None, "no peer venv")
            if rate is None:
                measured[row.name].errors.append(error or "failed")
                log(f"round {index + 1} {row.name}: failed: {error}")
                continue
            measured[row.name].rates.append(rate)
            vectors.setdefault(row.name, work / f"{row.name}-r{index}.npy")
            log(f"round {index + 1} {row.name}: {rate:.1f} sentences/s")
        slowest = max(slowest, time.perf_counter() - started)
    return measured, vectors, rounds


def judge(measured: dict[str, Measured], vectors: dict[str, Path]) -> str:
    """Each contender's min cosine and top-10 overlap vs fp32 `encode`; returns the tier `auto` picks here
    (bf16 only where native and where it passes the gates against our own fp32, as the embed step decides)."""
    import numpy as np

    from mtl_model.device import cpu_has_bf16
    from mtl_model.embed import check_tier, min_cosine, neighbour_overlap

    if "encode" in vectors:
        reference = np.load(vectors["encode"])
        for name, path in vectors.items():
            candidate = np.load(path)
            measured[name].min_cosine = min_cosine(reference, candidate)
            measured[name].neighbour_overlap = neighbour_overlap(reference, candidate)
    if cpu_has_bf16() and {"ours-fp32", "ours-bf16"} <= vectors.keys():
        own = check_tier("bf16", np.load(vectors["ours-fp32"]), np.load(vectors["ours-bf16"]))
        return "bf16" if own.passed else "fp32"
    return "fp32"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    started = time.perf_counter()
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from benchmarks.embed_throughput import build_model_dir
    from mtl_model.backbone import resolve_backbone
    from mtl_model.device import cpu_has_bf16
    from mtl_model.embed.tiers import MIN_COSINE, MIN_NEIGHBOUR_OVERLAP
    from mtl_model.runtime import quiet_third_party

    quiet_third_party()
    cpu, has_bf16 = cpu_info(), cpu_has_bf16()
    print(
        f"CPU: {cpu['model']} ({cpu['cores']} logical cores); "
        + ", ".join(f"{f}={'yes' if v else 'no'}" for f, v in cpu["flags"].items()),
        flush=True,
    )
    int8_config = int8_quantization_config(cpu["flags"])
    rows = contenders(has_bf16, int8_config)
    sources, where = source_sentences(args.data_dir)
    texts = interleave(sources, args.sentences)
    calibration = interleave(sources, 3 * CALIBRATION_PER_SOURCE, from_end=True)
    lengths = token_lengths(texts)
    config = json.loads((Path(resolve_backbone(BACKBONE)) / "config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="embed-peers-"))
    (work / "texts.json").write_text(json.dumps(texts))
    log(f"{len(texts)} sentences from {where}, mean {statistics.mean(lengths):.1f} tokens; work folder {work}")

    setup_s = time.perf_counter() - started
    peer_python, peer_model, meta = prepare_peers(args, rows, calibration, int8_config, work)
    ours_model = build_model_dir(work / "ours-model")
    ceiling_rows = 64 * round(statistics.mean(lengths))
    ceiling = measure_ceiling(config, ceiling_rows, 0.5 if args.smoke else 2.0, peer_python, work)
    pythons = {"peer": peer_python, "ours": Path(sys.executable)}
    # The one-off venv build and exports do not count; a minute is kept for the quality check and the report.
    deadline = time.perf_counter() + args.budget_minutes * 60 - (setup_s + 60)
    model_dirs = {"peer": peer_model, "ours": ours_model}
    measured, vectors, rounds_done = run_rounds(rows, args.rounds, pythons, model_dirs, work, deadline)
    auto_tier = judge(measured, vectors)
    meta |= {
        "sentences": len(texts),
        "source": where,
        "rounds": rounds_done,
        "mean_tokens": round(statistics.mean(lengths), 2),
    }
    meta |= {"ceiling_rows": ceiling_rows, "torch_threads": torch.get_num_threads()}
    meta["ceiling_kernels"] = {"fp32": "torch linear", "bf16": "torch linear", "int8": "onnxruntime MatMulInteger"}
    report = build_report(
        cpu=cpu,
        rows=rows,
        measured=measured,
        ceiling_gflops=ceiling,
        gflop_per_sentence=mean_gflop(config, lengths),
        gates={"min_cosine": MIN_COSINE, "neighbour_overlap": MIN_NEIGHBOUR_OVERLAP},
        has_bf16=has_bf16,
        auto_tier=auto_tier,
        meta=meta,
    )
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(format_table(report))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
