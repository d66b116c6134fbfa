"""Freeze-policy comparison: several policies trained on the same tokenized data, one table.

An entry is a freeze policy, optionally followed by `|train.<field>=<value>` settings that apply to
that entry only, e.g. `none|train.layerwise_lr_decay=0.8` or `gradual|train.unfreeze_every=200`.
"""

from __future__ import annotations

from pathlib import Path

from mtl_model.contracts import ComparisonReport, PolicyResult
from mtl_model.errors import ConfigError
from mtl_model.evaluate import primary_metrics
from mtl_model.freeze import parse_freeze_policy, policy_slug
from mtl_model.io import atomic_path, write_json_atomic

DEFAULT_POLICIES = ["none", "backbone", "top:2", "gradual", "lora", "none|train.layerwise_lr_decay=0.8", "all"]


def parse_entry(entry: str) -> tuple[str, list[str]]:
    """`policy|train.x=1|train.y=2` → (`policy`, [`train.x=1`, `train.y=2`]); only `train.*` may vary."""
    policy, *settings = [part.strip() for part in entry.split("|")]
    try:
        parse_freeze_policy(policy)
    except ValueError as exc:
        raise ConfigError(f"comparison entry {entry!r}: {exc}") from exc
    for item in settings:
        if not item.startswith("train.") or "=" not in item:
            raise ConfigError(
                f"comparison entry {entry!r}: {item!r} must be `train.<field>=<value>` "
                "(entries share the tokenized data, so only training settings may differ)"
            )
    return policy, settings


def entry_folders(entries: list[str]) -> dict[str, str]:
    """A distinct folder name per entry; two entries that would share one are an error."""
    folders = {entry: policy_slug(entry.replace("|", "_").replace("train.", "")) for entry in entries}
    seen: dict[str, str] = {}
    for entry, folder in folders.items():
        if folder in seen:
            raise ConfigError(f"comparison entries {seen[folder]!r} and {entry!r} are the same (folder {folder!r})")
        seen[folder] = entry
    if len(set(entries)) != len(entries):
        raise ConfigError(f"comparison entries repeat: {entries}")
    return folders


def comparison_rows(results: list[PolicyResult]) -> list[dict]:
    """One row per entry: policy, parameters, time, memory and each task's metric."""
    rows = []
    for result in results:
        training, metrics = result.training, result.metrics
        trainable, total = training.trainable_params, training.total_params
        rows.append(
            {
                "policy": result.entry,
                "trainable_params": trainable,
                "trainable_percent": round(100.0 * trainable / total, 2) if total else 0.0,
                "train_seconds": round(float(training.seconds), 1),
                "peak_memory_mb": training.peak_memory_mb,
                **{task: round(value, 4) for task, value in primary_metrics(metrics.tasks).items()},
            }
        )
    return rows


def markdown_table(rows: list[dict], memory_kind: str, device: str) -> str:
    """The table as Markdown, with a header line saying what the columns measure."""
    tasks = [
        key
        for key in rows[0]
        if key not in ("policy", "trainable_params", "trainable_percent", "train_seconds", "peak_memory_mb")
    ]
    header = [
        "policy",
        "trainable params",
        "% trainable",
        "train time (s)",
        f"peak memory (MB, {memory_kind})",
        *tasks,
    ]
    lines = [
        f"Freeze-policy comparison on {device}; task columns: accuracy (sentence tasks) or entity F1 (token tasks) "
        "on the evaluation split.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in rows:
        cells = [
            "`" + row["policy"].replace("|", "\\|") + "`",
            f"{row['trainable_params']:,}",
            f"{row['trainable_percent']:.2f}",
            f"{row['train_seconds']:.1f}",
            "" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}",
            *[f"{row[t]:.4f}" for t in tasks],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict], path: Path) -> None:
    """Each task's metric against trainable parameters (log scale), one point per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [
        key
        for key in rows[0]
        if key not in ("policy", "trainable_params", "trainable_percent", "train_seconds", "peak_memory_mb")
    ]
    figure, axis = plt.subplots(figsize=(8, 5))
    for task in tasks:
        xs = [max(row["trainable_params"], 1) for row in rows]  # `all` (0 trainable) sits at 1 on the log axis
        ys = [row[task] for row in rows]
        axis.scatter(xs, ys, label=task)
        for x, y, row in zip(xs, ys, rows):
            axis.annotate(row["policy"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set(
        xscale="log",
        xlabel="trainable parameters (log; 0 shown at 1)",
        ylabel="metric (accuracy / entity F1)",
        title="Freeze policies: metric vs trainable parameters",
    )
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    plt.close(figure)


def write_comparison(results: list[PolicyResult], out_dir: str, *, device: str) -> ComparisonReport:
    """`comparison.json`, `comparison.md` and `comparison.png` in `out_dir`; returns the rows and paths."""
    rows = comparison_rows(results)
    memory_kind = next((r.training.peak_memory_kind for r in results if r.training.peak_memory_kind), "RSS growth")
    out = Path(out_dir)
    markdown = markdown_table(rows, memory_kind, device)
    with atomic_path(out / "comparison.md") as temp:
        temp.write_text(markdown)
    write_json_atomic(out / "comparison.json", {"device": device, "memory": memory_kind, "rows": rows})
    plot_comparison(rows, out / "comparison.png")
    return ComparisonReport(
        rows=rows, markdown=markdown, files={name: str(out / f"comparison.{name}") for name in ("md", "json", "png")}
    )
