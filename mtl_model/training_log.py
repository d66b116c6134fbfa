"""The training log on disk: per-step losses and per-evaluation metrics as Parquet, and their curves as PNG."""

from __future__ import annotations

from pathlib import Path

from mtl_model.io import atomic_path, write_parquet_atomic


def loss_curve_rows(rows: list[dict], points: int = 25) -> list[dict]:
    """The loss curve as a short table (about `points` rows: step, then each task's mean loss over the steps
    since the previous row, then validation metrics where training evaluated), for a Prefect table artifact."""
    losses = [r for r in rows if r["kind"] == "train" and r["name"] == "loss"]
    if not losses:
        return []
    last = max(r["step"] for r in losses)
    every = max(1, -(-last // points))
    table: dict[int, dict] = {}
    for r in losses:
        bucket = min(last, -(-r["step"] // every) * every)
        table.setdefault(bucket, {"step": bucket, "_n": {}})
        row = table[bucket]
        row[f"loss {r['task']}"] = row.get(f"loss {r['task']}", 0.0) + r["value"]
        row["_n"][r["task"]] = row["_n"].get(r["task"], 0) + 1
    for r in rows:
        if r["kind"] == "eval" and r["task"] and r["name"] in ("accuracy", "f1"):
            bucket = min(last, -(-r["step"] // every) * every)
            table.setdefault(bucket, {"step": bucket, "_n": {}})[f"val {r['task']} {r['name']}"] = round(r["value"], 4)
    result = []
    for step in sorted(table):
        row = table[step]
        counts = row.pop("_n")
        for task, count in counts.items():
            row[f"loss {task}"] = round(row[f"loss {task}"] / count, 4)
        result.append(row)
    return result


def validation_curve(rows: list[dict]) -> list[dict]:
    """Each evaluation as one row: the step, each task's headline validation metric (`primary_metrics`: accuracy,
    or entity F1 for token heads) and the selection value (`"selection"`) the best step was chosen on. What a reader
    checks to see a curve flat at the kept step, without the plot."""
    from mtl_model.evaluate import primary_metrics  # torch: only where a curve is read

    by_step: dict[int, dict[str, dict[str, float]]] = {}
    selection: dict[int, float] = {}
    for r in rows:
        if r["kind"] != "eval":
            continue
        if r["task"]:
            by_step.setdefault(r["step"], {}).setdefault(r["task"], {})[r["name"]] = r["value"]
        else:
            selection[r["step"]] = r["value"]
    return [
        {"step": step, **primary_metrics(by_step.get(step, {})), "selection": selection.get(step)}
        for step in sorted(by_step.keys() | selection.keys())
    ]


def write_training_log(rows: list[dict], parquet_path: Path, png_path: Path) -> None:
    """Per-step losses and per-evaluation metrics as Parquet, and a loss/metric curve as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa

    write_parquet_atomic(
        parquet_path,
        pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    ("step", pa.int64()),
                    ("kind", pa.string()),
                    ("task", pa.string()),
                    ("name", pa.string()),
                    ("value", pa.float64()),
                ]
            ),
        ),
    )
    evals = [r for r in rows if r["kind"] == "eval" and r["task"] and r["name"] in ("accuracy", "f1")]
    figure, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    loss_axis = axes[0][0]
    for task in sorted({r["task"] for r in rows if r["kind"] == "train" and r["name"] == "loss"}):
        points = [
            (r["step"], r["value"]) for r in rows if r["kind"] == "train" and r["name"] == "loss" and r["task"] == task
        ]
        loss_axis.plot(*zip(*points), label=task, linewidth=0.8)
    loss_axis.set(title="training loss per task", xlabel="step", ylabel="cross-entropy", yscale="log")
    loss_axis.legend()
    if evals:  # the validation panel only when training evaluated (train.eval_every)
        eval_axis = axes[0][1]
        for key in sorted({(r["task"], r["name"]) for r in evals}):
            points = [(r["step"], r["value"]) for r in evals if (r["task"], r["name"]) == key]
            eval_axis.plot(*zip(*points), marker="o", label=".".join(key))
        eval_axis.set(title="validation", xlabel="step", ylabel="metric")
        eval_axis.legend()
    figure.tight_layout()
    with atomic_path(png_path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)
