"""Real-data quality runs that survive the end of a session: the shipped recipe over several seeds, each task alone
at the same compute, then one table (mean ± std over seeds).

    python benchmarks/quality_runs.py --data-dir ../shared/data --seeds 1,2,3 [--config data/configs/three_task.yaml]
    python benchmarks/quality_runs.py --table-only         # the table from what has finished so far
    python benchmarks/quality_runs.py --table-only --curves   # and each multi-task run's validation curve
    python benchmarks/quality_runs.py --multi-only --set train.ema_decay=0.999 --results docs/results/ablate-ema
                                                           # an ablation: one multi-task run per seed, no singles

Every run is `python -m mtl_model` with `train.checkpoint_every`, output under `--out` (default `runs/quality`).
A run whose result `<name>.json` exists under `--results` is done and skipped; a run cut off (say, by the session's
end) resumes from its last checkpoint when the same command runs again on the same machine. The results default to
`docs/results/quality/`, a tracked folder, because a new session may start on a new machine with `runs/` empty:
commit each result as it lands. Single-task runs match the multi-task run of the same seed in
compute: each task trains for as many examples as that task contributed to the multi-task run
(`training.examples_per_task`), at the same batch size.

Each result keeps its run's validation curve (`mtl_model.training_log.validation_curve`), so convergence at the
kept step can be read from the committed JSON after `runs/` is gone. The table compares each task's test metric
(entity F1 for token tasks, accuracy otherwise) multi vs single. Prints the table, then one JSON line (last).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the sibling benchmarks import as a package
    sys.path.insert(0, str(REPO))

from benchmarks.process_stats import run_measured  # noqa: E402
from mtl_model.evaluate import primary_metrics  # noqa: E402
from mtl_model.io import write_json_atomic  # noqa: E402
from mtl_model.training_log import validation_curve  # noqa: E402


def run_name(kind: str, seed: int, task: str | None = None) -> str:
    return f"{kind}-seed{seed}" if task is None else f"{kind}-{task}-seed{seed}"


def run(name: str, args: argparse.Namespace, extra: list[str]) -> dict:
    """One pipeline run (or its finished result): resumes from checkpoints, logs to `<out>/<name>.log`."""
    out = Path(args.out)
    result_path = Path(args.results) / f"{name}.json"
    recipe = recipe_key(args.config, extra)
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("recipe_sha256") != recipe:  # a finished run of another recipe must not enter the table
            raise SystemExit(f"{result_path} was run with another recipe (config contents or settings): move it away")
        return with_curve(result, result_path, out / name)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mtl_model", "--config", args.config, "--data-dir", args.data_dir,
        "--out", str(out / name), "--device", args.device, "--json",
        "--set", f"train.checkpoint_every={args.checkpoint_every}", "--set", "embed.corpus=null", *extra,
    ]  # fmt: skip
    print(f"== {name}: {' '.join(command[2:])}", flush=True)
    with open(out / f"{name}.log", "a") as log:
        stats = run_measured(command, stderr=log, capture_stdout=True, cwd=REPO)
    if stats.returncode != 0:
        raise SystemExit(f"{name} failed (exit {stats.returncode}); see {out / f'{name}.log'}")
    result = json.loads(stats.stdout or "")
    # Wall time and peak RSS of this invocation: a run resumed from a checkpoint (`training.resumed_from`) reports
    # only its last part.
    result["wall_seconds"] = round(stats.seconds, 1)
    result["peak_rss_mib"] = round(stats.peak_rss_bytes / 2**20, 1)
    result["recipe_sha256"] = recipe
    result["validation_curve"] = curve_from_log(out / name)
    write_json_atomic(result_path, result)  # the run counts as done only once its whole result is on disk
    return result


def curve_from_log(run_dir: Path) -> list[dict] | None:
    """The run's validation curve (`validation_curve`) from its `train_log.parquet`; None without one."""
    log = run_dir / "train_log.parquet"
    return validation_curve(pq.read_table(log).to_pylist()) if log.is_file() else None


def with_curve(result: dict, result_path: Path, run_dir: Path) -> dict:
    """A kept result, with its validation curve added when an older runner left it out and the log is still here:
    the curve then survives a new session's empty `runs/` in the committed JSON."""
    if result.get("validation_curve") is None and (curve := curve_from_log(run_dir)) is not None:
        result["validation_curve"] = curve
        write_json_atomic(result_path, result)
    return result


def show_curves(results: Path, names: list[str]) -> None:
    """Each finished run's validation curve as a Markdown table (headline metric ×100 per task, selection value)."""
    for name in names:
        path = results / f"{name}.json"
        result = json.loads(path.read_text()) if path.is_file() else {}
        curve, kept = result.get("validation_curve"), result.get("training", {}).get("best_step")
        if not curve:
            continue
        columns = [*sorted(set(curve[0]) - {"step", "selection"}), "selection"]  # the JSON's keys come sorted
        print(f"\n{name} (kept step {kept})\n| step | {' | '.join(columns)} |\n|---:|{'---:|' * len(columns)}")
        for row in curve:
            cells = ["–" if row.get(key) is None else f"{100 * row[key]:.2f}" for key in columns]
            print(f"| {row['step']} | {' | '.join(cells)} |")


def recipe_key(config: str, extra: list[str]) -> str:
    """sha256 of the config file's contents and the run's extra settings: what a kept result must match."""
    return hashlib.sha256(Path(config).read_bytes() + json.dumps(extra).encode()).hexdigest()


def single_task_steps(multi: dict, task: str, batch_size: int) -> int:
    """Steps of a single-task run that sees as many `task` examples as the multi-task run did."""
    seen = multi["training"].get("examples_per_task", {}).get(task)
    if not seen:
        raise SystemExit(f"the multi-task result has no examples_per_task for {task!r}: rerun it with this code")
    return math.ceil(seen / batch_size)


def table(results: Path, tasks: list[str], seeds: list[int]) -> dict:
    """Mean ± std of each task's test metric over the seeds that finished, multi vs single."""
    rows = {}
    for task in tasks:
        values = {"multi": [], "single": []}
        for seed in seeds:
            for kind, name in (("multi", run_name("multi", seed)), ("single", run_name("single", seed, task))):
                path = results / f"{name}.json"
                if path.is_file():
                    values[kind].append(100 * primary_metrics(json.loads(path.read_text())["metrics"])[task])
        rows[task] = {kind: summarize(numbers) for kind, numbers in values.items()}
    return rows


def summarize(numbers: list[float]) -> dict:
    if not numbers:
        return {"n": 0}
    std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    return {"n": len(numbers), "mean": round(statistics.fmean(numbers), 2), "std": round(std, 2), "values": numbers}


def show(rows: dict) -> None:
    def cell(summary: dict) -> str:
        return "–" if not summary["n"] else f"{summary['mean']:.2f} ± {summary['std']:.2f} (n={summary['n']})"

    print("| task | multi-task | single-task, same examples | multi − single |\n|---|---:|---:|---:|")
    for task, row in rows.items():
        gap = row["multi"]["mean"] - row["single"]["mean"] if row["multi"]["n"] and row["single"]["n"] else None
        print(f"| {task} | {cell(row['multi'])} | {cell(row['single'])} | {'–' if gap is None else f'{gap:+.2f}'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "data/configs/three_task.yaml"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default=str(REPO / "runs/quality"))
    parser.add_argument("--results", default=str(REPO / "docs/results/quality"), help="finished runs' JSON")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], help="extra `section.field=value` for every run")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--curves", action="store_true", help="also print each multi-task run's validation curve")
    parser.add_argument("--multi-only", action="store_true", help="the multi-task runs only (an ablation's row)")
    parser.add_argument(
        "--single-tasks",
        default=None,
        help="comma-separated: only these tasks' single-task runs (default: every task)",
    )
    args = parser.parse_args(argv)
    args.data_dir = str(Path(args.data_dir).resolve())
    config = yaml.safe_load(Path(args.config).read_text())
    tasks = [task["name"] for task in config["tasks"]]
    singles = tasks if args.single_tasks is None else args.single_tasks.split(",")
    if unknown := sorted(set(singles) - set(tasks)):
        parser.error(f"--single-tasks: {unknown} not among the config's tasks {tasks}")
    batch_size = int(config.get("train", {}).get("batch_size", 16))
    seeds = [int(seed) for seed in args.seeds.split(",")]
    common = [item for value in args.set for item in ("--set", value)]
    seeded = {seed: [*common, "--set", f"train.seed={seed}"] for seed in seeds}
    # Every seed's multi-task run first: the headline (mean of the seeds) lands before the single-task comparisons.
    to_run = [] if args.table_only else seeds
    multis = {seed: run(run_name("multi", seed), args, seeded[seed]) for seed in to_run}
    # A single-task run selects its step on its own metric: a recipe may select on a task (`wnut17.f1`) it drops.
    selection = ["--set", "train.early_stopping_metric=mean"]
    for seed, multi in {} if args.multi_only else multis.items():
        steps = {task: single_task_steps(multi, task, batch_size) for task in singles if len(tasks) > 1}
        for task in sorted(steps, key=steps.get):  # shortest first: a session cut off lands the most rows
            extra = [*seeded[seed], "--tasks", task, "--set", f"train.max_steps={steps[task]}", *selection]
            run(run_name("single", seed, task), args, extra)
    if args.curves:
        show_curves(Path(args.results), [run_name("multi", seed) for seed in seeds])
    rows = table(Path(args.results), tasks, seeds)
    show(rows)
    print(json.dumps({"config": args.config, "seeds": seeds, "tasks": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
