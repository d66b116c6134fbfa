"""The training log on disk: per-step losses and per-evaluation metrics as Parquet, and their curves as PNG."""

from __future__ import annotations

from pathlib import Path

from mtl_model.io import atomic_path, write_parquet_atomic


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
    figure, (loss_axis, eval_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for task in sorted({r["task"] for r in rows if r["kind"] == "train" and r["name"] == "loss"}):
        points = [
            (r["step"], r["value"]) for r in rows if r["kind"] == "train" and r["name"] == "loss" and r["task"] == task
        ]
        loss_axis.plot(*zip(*points), label=task, linewidth=0.8)
    loss_axis.set(title="training loss per task", xlabel="step", ylabel="cross-entropy", yscale="log")
    loss_axis.legend()
    evals = [r for r in rows if r["kind"] == "eval" and r["task"] and r["name"] in ("accuracy", "f1")]
    for key in sorted({(r["task"], r["name"]) for r in evals}):
        points = [(r["step"], r["value"]) for r in evals if (r["task"], r["name"]) == key]
        eval_axis.plot(*zip(*points), marker="o", label=".".join(key))
    eval_axis.set(title="validation", xlabel="step", ylabel="metric")
    if evals:
        eval_axis.legend()
    figure.tight_layout()
    with atomic_path(png_path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)
