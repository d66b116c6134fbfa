"""Steps 3–4 as Prefect tasks: train, evaluate; and the freeze-policy comparison report (embed: tasks/embed.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from mtl_model import steps
from mtl_model.callbacks import TrainerCallback
from mtl_model.config import EvaluateConfig
from mtl_model.contracts import (
    ComparisonReport,
    Metrics,
    PolicyResult,
    TokenizedTask,
    TrainedModel,
    TrainRequest,
    tokenized_paths,
)
from mtl_model.model import saved_model_problems
from mtl_model.training_log import loss_curve_rows
from tasks.policies import CacheKey, folder_run_name, io_task

MODEL_FILE = Path("model") / "mtl_model.json"


def model_problems(out_dir: str, **_: object) -> list[str]:
    """Why `<out>/model` is no longer the model training saved (none when it is intact, or not there at all)."""
    model_dir = Path(out_dir) / "model"
    return saved_model_problems(model_dir) if model_dir.exists() else []


class PrefectProgress(TrainerCallback):
    """Training progress as a Prefect progress artifact (whole percents) and a log line every 5 % of the steps."""

    def __init__(self) -> None:
        self.artifact_id = create_progress_artifact(
            0.0, key="training-progress", description="Training steps done (%)"
        )
        self.percent = 0
        self.logger = get_run_logger()

    def on_step_end(self, run: object, step: int, total: int, loss: float) -> None:
        percent = int(100 * step / total)
        if percent > self.percent or step == total:
            self.percent = percent
            update_progress_artifact(
                self.artifact_id, float(percent), description=f"step {step}/{total}, loss {loss:.4f}"
            )
        if step == 1 or step % max(1, total // 20) == 0 or step == total:
            self.logger.info("step %d/%d loss %.4f", step, total, loss)


@io_task(
    "train",
    run_name=folder_run_name("train"),
    key=lambda request, device, precision, out_dir: CacheKey(
        inputs=request.input_paths(), config=[request, device, precision, out_dir]
    ),
    outputs=lambda out_dir, **_: [Path(out_dir) / MODEL_FILE],
    problems=model_problems,
    retries=1,
)
def train(request: TrainRequest, device: str, precision: str, out_dir: str) -> TrainedModel:
    """Train the multi-task model under the freeze policy and save it with its tokenizer and label maps."""
    trained = steps.train(request, device=device, precision=precision, out_dir=out_dir, callbacks=[PrefectProgress()])
    done = (
        f"{trained.steps} steps in {trained.seconds}s on {device} ({precision})"
        if trained.trained
        else "nothing trained (evaluating the model as it is)"
    )
    get_run_logger().info(
        "freeze policy %s: %d of %d parameters trainable; %s",
        trained.freeze_policy,
        trained.trainable_params,
        trained.total_params,
        done,
    )
    log_file = Path(out_dir) / "train_log.parquet"
    if log_file.is_file():  # the curve in the UI, not only as a PNG on disk
        curve = loss_curve_rows(pq.read_table(log_file).to_pylist())
        create_table_artifact(
            every_column(curve), key="loss-curve", description="Training loss per task (and validation)"
        )
    return trained


@io_task(
    "evaluate",
    run_name=folder_run_name("evaluate"),
    key=lambda trained, tokenized, config, device, out_dir: CacheKey(
        inputs=[trained.model_dir, *tokenized_paths(tokenized)], config=[config, out_dir, trained]
    ),
    outputs=lambda out_dir, **_: [Path(out_dir) / "metrics.json"],
)
def evaluate(
    trained: TrainedModel, tokenized: list[TokenizedTask], config: EvaluateConfig, device: str, out_dir: str
) -> Metrics:
    """Per-task metrics on the evaluation split, as metrics.json and a table artifact."""
    metrics = steps.evaluate(trained, tokenized, config, device=device, out_dir=out_dir)
    rows = [
        {"task": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}}
        for name, values in metrics.tasks.items()
    ]
    create_table_artifact(every_column(rows), key="metrics", description=f"Metrics on the {config.split} split")
    per_class = [
        {"task": head, "class": name, **{k: round(v, 4) for k, v in values.items()}}
        for head, classes in metrics.per_class.items()
        for name, values in classes.items()
    ]
    create_table_artifact(every_column(per_class), key="metrics-per-class", description="P/R/F1 per class or type")
    links = "\n".join(f"- `{name}`: `{path}`" for name, path in metrics.files.items())
    create_markdown_artifact(f"Error analysis on the {config.split} split:\n\n{links}", key="error-analysis")
    for row in rows:
        get_run_logger().info("%s", row)
    return metrics


def every_column(rows: list[dict]) -> list[dict]:
    """Rows with the union of their keys (a Prefect table takes its columns from the first row only)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [{column: row.get(column) for column in columns} for row in rows]


@io_task(
    "compare-freeze-policies",
    key=lambda results, out_dir, device: CacheKey(
        inputs=[str(Path(r.out_dir) / "metrics.json") for r in results], config=[results, out_dir, device]
    ),
    outputs=lambda out_dir, **_: [Path(out_dir) / "comparison.md", Path(out_dir) / "comparison.png"],
)
def compare(results: list[PolicyResult], out_dir: str, device: str) -> ComparisonReport:
    """The comparison table as comparison.md/.json/.png and as a Prefect table artifact."""
    report = steps.compare(results, out_dir=out_dir, device=device)
    create_table_artifact(report.rows, key="freeze-comparison", description=report.markdown.splitlines()[0])
    create_markdown_artifact(report.markdown, key="freeze-comparison-markdown")
    get_run_logger().info("comparison of %d policies → %s", len(report.rows), report.files["md"])
    return report
