"""Speed inside the container against the same command on the host, side by side in one run.

    CONTAINERS_CONF=/var/cache/mtl-container/containers.conf \
        python benchmarks/container_speed.py --image localhost/mtl-pipeline:cpu [--steps 6] [--rounds 3] [--threads N]

Two measurements, each the project's own command, run on the host (this checkout, this interpreter) and in the
image (`podman run --network none`, the work folder mounted at the same path, so the command lines are identical):

- **training step**: `python -m mtl_model --set train.max_steps=S --out …` on the bundled default config;
  seconds per step is the train step's own clock (`training.json`: seconds / steps), so tokenization,
  evaluation and process start are left out;
- **embed step**: `python -m mtl_model embed --model … --corpus …` of the sample corpus repeated to
  `--corpus-rows` rows with the model the host's first run trained; timed inside the environment (a
  `date` before and after), so `podman run`'s own start is left out but Python's imports are in.

Host and container alternate (host first in odd rounds, container first in even ones) so a load that comes and goes
on a shared machine hits both alike; the medians are compared. `--threads N` sets OMP_NUM_THREADS=N on both sides
(default: unset, as a user would run it). Prints a table and, on the last line, JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_corpus(path: Path, rows: int) -> None:
    """The sample corpus repeated to `rows` rows with unique ids (a bigger batch than the 200 bundled rows)."""
    with open(REPO_ROOT / "data/sample/corpus.csv", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for index in range(rows):
            writer.writerow([f"row-{index:06d}", texts[index % len(texts)]])


def timed_shell(command: list[str]) -> str:
    """`sh -c` that prints the command's wall time (inside whatever environment runs it) on its last line."""
    quoted = " ".join(shlex.quote(word) for word in command)
    return f't0=$(date +%s.%N); {quoted} >/dev/null; rc=$?; t1=$(date +%s.%N); echo "wall $t0 $t1"; exit $rc'


def run(where: str, command: list[str], *, image: str, work: Path, threads: int | None, timeout: int) -> float:
    """Run `command` on the host or in the image; returns its wall seconds as measured inside."""
    environment = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    if where == "host":
        argv = ["sh", "-c", timed_shell(command)]
        env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **environment}
        cwd = REPO_ROOT
    else:
        argv = ["podman", "run", "--rm", "--network", "none", "--timeout", str(timeout), "-v", f"{work}:{work}"]
        argv += [f"--env={name}={value}" for name, value in environment.items()]
        argv += [image, "sh", "-c", timed_shell(command)]
        env, cwd = dict(os.environ), None
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout + 60)
    if result.returncode != 0:
        raise SystemExit(f"{where}: {shlex.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    _, start, end = result.stdout.strip().splitlines()[-1].split()
    return float(end) - float(start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/mtl-pipeline:cpu")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus-rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS on both sides (default: unset)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one command may take")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mtl-container-speed-"))
    work.chmod(0o777)  # the image runs as uid 10001
    corpus = work / "corpus.csv"
    write_corpus(corpus, args.corpus_rows)
    corpus.chmod(0o644)
    seconds: dict[str, dict[str, list[float]]] = {"host": {"train": [], "embed": []}, "container": {}}
    seconds["container"] = {"train": [], "embed": []}
    precision: dict[str, dict[str, str]] = {"host": {}, "container": {}}  # what `auto` chose on each side
    model_dir: Path | None = None
    py = {"host": sys.executable, "container": "python"}
    for round_index in range(args.rounds):
        order = ["host", "container"] if round_index % 2 == 0 else ["container", "host"]
        for where in order:
            out = work / f"train-{where}-{round_index}"
            command = [py[where], "-m", "mtl_model", "--set", f"train.max_steps={args.steps}", "--out", str(out)]
            run(where, command, image=args.image, work=work, threads=args.threads, timeout=args.timeout)
            training = json.loads((out / "training.json").read_text())
            assert training["steps"] == args.steps, training
            seconds[where]["train"].append(training["seconds"] / training["steps"])
            precision[where]["train"] = training["precision"]
            model_dir = model_dir or out / "model"
            print(f"round {round_index + 1} {where:9s} train {seconds[where]['train'][-1]:.2f} s/step", flush=True)
        for where in order:
            out = work / f"embed-{where}-{round_index}"
            command = [py[where], "-m", "mtl_model", "embed", "--model", str(model_dir), "--corpus", str(corpus)]
            command += ["--out", str(out)]
            wall = run(where, command, image=args.image, work=work, threads=args.threads, timeout=args.timeout)
            assert (out / "embeddings" / "_SUCCESS").exists(), out
            seconds[where]["embed"].append(wall)
            precision[where]["embed"] = json.loads((out / "embeddings" / "_manifest.json").read_text())["precision"]
            print(f"round {round_index + 1} {where:9s} embed {wall:.2f} s", flush=True)

    medians = {
        where: {step: statistics.median(values) for step, values in steps.items()} for where, steps in seconds.items()
    }
    ratios = {step: medians["container"][step] / medians["host"][step] for step in ("train", "embed")}
    # Each round's container/host pair ran back to back, so its ratio sees nearly the same load on a shared machine.
    paired = {
        step: [c / h for c, h in zip(seconds["container"][step], seconds["host"][step])] for step in ("train", "embed")
    }
    print()
    print(f"{'step':28s} {'host':>10s} {'container':>10s} {'container/host':>15s}")
    labels = {"train": "training step (s/step)", "embed": f"embed {args.corpus_rows} rows (s)"}
    for step in ("train", "embed"):
        print(
            f"{labels[step]:28s} {medians['host'][step]:10.2f} {medians['container'][step]:10.2f} {ratios[step]:15.2f}"
        )
    for step in ("train", "embed"):
        print(f"{labels[step]:28s} per-round container/host: {', '.join(f'{r:.2f}' for r in paired[step])}")
    load = os.getloadavg()
    print(f"precision chosen by `auto`: host {precision['host']}, container {precision['container']}")
    print(f"medians of {args.rounds} rounds; load average at the end {load[0]:.1f}; OMP_NUM_THREADS={args.threads}")
    summary = {
        "image": args.image,
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": args.threads,
        "corpus_rows": args.corpus_rows,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average": load,
        "seconds": seconds,
        "median": medians,
        "ratio": ratios,
        "paired_ratios": paired,
        "precision": precision,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
