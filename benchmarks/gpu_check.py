"""The GPU path in one time-boxed run: CUDA tests, training and embedding against their peers, time to quality.

    python -m benchmarks.gpu_check --bundle gpu_bundle --out "$OUT"       # on a GPU machine (docs/GPU.md)
    python -m benchmarks.gpu_check --bundle gpu_bundle --out /tmp/check --device cpu --smoke

It reads only the bundle (`make gpu-bundle`) and the checkout: no `../shared`, no network, no Prefect. Each part
runs in its own process group under its own time limit (`PARTS`), all within `--budget` seconds (default 530:
a 15-minute device lease less start-up and transfers), so a part that hangs, crashes or runs out of GPU memory
is recorded and the rest still run:

- prepare:  verify the bundle's sha256, expand the fp16 backbone to fp32 and the gzip'd data, record versions;
- tests:    `pytest -m gpu tests/test_gpu.py` (bf16/fp16 steps vs fp32, SIGKILL-resume, embedding vs CPU, memory);
- train:    our engine vs the HF `Trainer` on SST-2, same precision (bf16 on a GPU), batch and data: ratio, MFU;
- embed:    the embed step vs `SentenceTransformer.encode` on SST-2 train: ratio, min cosine, bare-forward rate;
- quality:  `python -m mtl_model` on data/configs/three_task.yaml, full epoch if it fits, else the largest slice.

Writes `<out>/gpu_check.json` and `<out>/gpu_check.log` (every part's output), and prints the JSON last.
This file is stdlib-only, so a broken torch install is itself reported; the parts are in `gpu_parts.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from benchmarks.gpu_bundle import verify_bundle

REPO_ROOT = Path(__file__).resolve().parent.parent
# (part, time box in seconds on a GPU, in smoke runs); quality takes what is left of the budget.
PARTS = (("prepare", 90, 120), ("tests", 150, 150), ("train", 150, 150), ("embed", 75, 120), ("quality", None, 180))
RESERVE_S = 10  # kept back for writing the report
MIN_BOX_S = 20  # a part with less time than this left is skipped rather than started


def part_command(name: str, args: argparse.Namespace, work: Path, context: dict) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.gpu_parts", name, "--work", str(work), "--out", str(args.out)]
    command += ["--device", context.get("device", args.device), "--bundle", str(args.bundle)]
    command += ["--context", json.dumps(context)]
    return command + (["--smoke"] if args.smoke else [])


def child_env(work: Path) -> dict[str, str]:
    """Offline, quiet, unbuffered; the tests find the expanded backbone through MTL_GPU_BACKBONE."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return env | {"PYTHONUNBUFFERED": "1", "MTL_GPU_BACKBONE": str(work / "backbone"), "PYTHONHASHSEED": "0"}


def run_part(command: list[str], timeout: float, log: IO[str], env: dict[str, str]) -> tuple[str, int | None, str]:
    """Run one part in its own process group: (status, exit code, the last lines it printed). On timeout the
    whole group is killed (pytest's and the CLI's children too)."""
    log.flush()
    start = log.tell()
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True
    )
    try:
        code: int | None = process.wait(timeout=timeout)
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code, status = None, "timeout"
    log.flush()
    with open(log.name, encoding="utf-8", errors="replace") as reread:
        reread.seek(start)
        tail = reread.read().splitlines()[-15:]
    return status, code, "\n".join(tail)


def box_for(gpu_box: int | None, smoke_box: int, args: argparse.Namespace, deadline: float) -> float:
    """The part's own limit, cut to what is left of the budget (quality's is all that is left)."""
    left = deadline - time.monotonic() - RESERVE_S
    box = smoke_box if args.smoke else (gpu_box or left)
    return min(box, left)


def run_parts(args: argparse.Namespace, work: Path, log: IO[str]) -> dict[str, dict]:
    """Every selected part in order; a part's result JSON (`<work>/results/<part>.json`) merged into its record."""
    deadline, results, context = time.monotonic() + args.budget, {}, {}
    for name, gpu_box, smoke_box in PARTS:
        if name not in args.parts:
            continue
        box = box_for(gpu_box, smoke_box, args, deadline)
        if name != "prepare" and results.get("prepare", {}).get("status") != "ok":
            results[name] = {"status": "skipped", "reason": "prepare failed: no expanded backbone or data"}
        elif box < MIN_BOX_S:
            results[name] = {"status": "skipped", "reason": f"only {box:.0f}s of the budget left"}
        else:
            results[name] = run_one(name, box, args, work, log, context)
        print(f"[gpu_check] {name}: {results[name]['status']} ({results[name].get('seconds', 0):.0f}s)", flush=True)
        context = context_after(name, results[name], context)
    return results


def run_one(name: str, box: float, args: argparse.Namespace, work: Path, log: IO[str], context: dict) -> dict:
    log.write(f"\n===== {name} (time box {box:.0f}s) =====\n")
    started = time.monotonic()
    context = context | {"box_s": round(box, 1)}
    result_file = work / "results" / f"{name}.json"
    result_file.unlink(missing_ok=True)  # a reused --work folder: never report an earlier run's result
    status, code, tail = run_part(part_command(name, args, work, context), box, log, child_env(work))
    record: dict = {"status": status, "seconds": round(time.monotonic() - started, 1), "time_box_s": round(box)}
    if result_file.is_file():
        record |= json.loads(result_file.read_text())
        record["status"] = status if status != "ok" else record.get("status", "ok")
    if record["status"] != "ok":
        record |= {"exit_code": code, "output_tail": tail}
    return record


def context_after(name: str, record: dict, context: dict) -> dict:
    """What later parts need from earlier ones: the resolved device, our training rate (sizes the quality run)."""
    if name == "prepare" and record.get("status") == "ok":
        return context | {"device": record["environment"]["device"]}
    if name == "train" and record.get("status") == "ok":
        return context | {"train_samples_per_s": record["ours"]["samples_per_second"]}
    return context


def goals(results: dict[str, dict]) -> dict:
    """The issue's targets, read off the parts (None where a part did not produce the number)."""
    train, embed, tests = results.get("train", {}), results.get("embed", {}), results.get("tests", {})
    ratio, mfu, embed_ratio = train.get("ratio"), train.get("ours", {}).get("mfu"), embed.get("ratio")
    return {
        "train_ratio_vs_hf_trainer": ratio,
        "train_goal_2x": None if ratio is None else ratio >= 2,
        "train_moonshot_3x_and_10pct_mfu": None if ratio is None or mfu is None else ratio >= 3 and mfu >= 0.10,
        "embed_ratio_vs_encode": embed_ratio,
        "embed_goal_4x": None if embed_ratio is None else embed_ratio >= 4,
        "cuda_tests_passed": tests.get("cuda_passed"),
        "quality_full_epoch": results.get("quality", {}).get("full_epoch"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "gpu_bundle")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO_ROOT / "runs/gpu_check"))
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--smoke", action="store_true", help="a few steps and rows per part: checks the plumbing")
    parser.add_argument("--budget", type=float, help="seconds for everything (default 530; smoke runs: 900)")
    parser.add_argument("--parts", default=",".join(name for name, *_ in PARTS), help="comma-separated subset")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    args.parts, args.bundle, args.out = set(args.parts.split(",")), args.bundle.resolve(), args.out.resolve()
    args.budget = args.budget or (900.0 if args.smoke else 530.0)
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    (work / "results").mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(args.out / "gpu_check.log", "w", encoding="utf-8") as log:
        log.write(f"gpu_check {' '.join(sys.argv[1:] if argv is None else argv)}\nwork: {work}\n")
        problems = verify_bundle(args.bundle)
        log.write("bundle: " + ("intact" if not problems else "; ".join(problems)) + "\n")
        results = (
            run_parts(args, work, log) if not problems else {"prepare": {"status": "failed", "problems": problems}}
        )
    report = {
        "device_requested": args.device,
        "smoke": args.smoke,
        "bundle": {"path": str(args.bundle), "problems": problems},
        "seconds": round(time.time() - started, 1),
        "budget_s": args.budget,
        "parts": results,
        "goals": goals(results),
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
