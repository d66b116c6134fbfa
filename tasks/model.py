"""Steps 3–4 as Prefect tasks: train, evaluate; and the freeze-policy comparison report (embed: tasks/embed.py)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from mtl_model import steps
from mtl_model.config import EvaluateConfig, ModelConfig, TrainConfig
from tasks.policies import IO_TASK, backbone_inputs, content_key, recompute_if_missing, retry_unless_bad_input


def _tokenized_files(tokenized: list[dict]) -> list[str]:
    return [path for t in tokenized for _, path in sorted(t["files"].items())]


@task(
    name="train",
    cache_key_fn=lambda ctx, p: content_key(
        "train",
        inputs=[t["files"]["train"] for t in p["tokenized"]] + backbone_inputs(p["model_config"].backbone)
        + ([p["tokenizer_dir"]] if p.get("tokenizer_dir") else []),
        config=[p["model_config"], p["train_config"], p["max_seq_length"], p["loss_weights"], p["device"], p["precision"], p["out_dir"]],
    ),
    retries=1,
    retry_condition_fn=retry_unless_bad_input,
    persist_result=True,
)
def train_task(
    tokenized: list[dict],
    model_config: ModelConfig,
    train_config: TrainConfig,
    max_seq_length: int,
    loss_weights: dict[str, float],
    device: str,
    precision: str,
    out_dir: str,
    tokenizer_dir: str | None = None,
) -> dict:
    """Train the multi-task model under the freeze policy and save it with its tokenizer and label maps."""
    logger = get_run_logger()
    progress_id = create_progress_artifact(0.0, key="training-progress", description="Training steps done (%)")
    reported = {"percent": 0}

    def on_step(step: int, total: int, loss: float) -> None:
        percent = int(100 * step / total)
        if percent > reported["percent"] or step == total:
            reported["percent"] = percent
            update_progress_artifact(progress_id, float(percent), description=f"step {step}/{total}, loss {loss:.4f}")
        if step == 1 or step % max(1, total // 20) == 0 or step == total:
            logger.info("step %d/%d loss %.4f", step, total, loss)

    result = steps.train_step(
        tokenized, model_config, train_config, max_seq_length=max_seq_length, loss_weights=loss_weights,
        device=device, precision=precision, out_dir=out_dir, on_step=on_step, tokenizer_dir=tokenizer_dir,
    )
    logger.info(
        "freeze policy %s: %d of %d parameters trainable; %s",
        result["freeze_policy"], result["trainable_params"], result["total_params"],
        f"{result['steps']} steps in {result['seconds']}s on {device} ({precision})" if result["trained"] else "nothing trained (evaluating the model as it is)",
    )
    return result


@task(
    name="evaluate",
    cache_key_fn=lambda ctx, p: content_key(
        "evaluate",
        inputs=[p["model_dir"], *_tokenized_files(p["tokenized"])],
        config=[p["config"], p["out_dir"], p["training"]],
    ),
    **IO_TASK,
)
def evaluate_task(model_dir: str, tokenized: list[dict], config: EvaluateConfig, device: str, out_dir: str, training: dict) -> dict:
    """Per-task metrics on the evaluation split, as metrics.json and a table artifact."""
    metrics = steps.evaluate_step(model_dir, tokenized, config, device=device, out_dir=out_dir, training=training)
    rows = [{"task": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}} for name, values in metrics["tasks"].items()]
    create_table_artifact(rows, key="metrics", description=f"Metrics on the {config.split} split")
    for row in rows:
        get_run_logger().info("%s", row)
    return metrics


@task(
    name="compare-freeze-policies",
    cache_key_fn=lambda ctx, p: content_key(
        "compare", inputs=[r["out_dir"] + "/metrics.json" for r in p["results"]], config=[p["results"], p["out_dir"], p["device"]],
    ),
    **IO_TASK,
)
def compare_task(results: list[dict], out_dir: str, device: str) -> dict:
    """The comparison table as comparison.md/.json/.png and as a Prefect table artifact."""
    report = steps.compare_step(results, out_dir=out_dir, device=device)
    create_table_artifact(report["rows"], key="freeze-comparison", description=report["markdown"].splitlines()[0])
    create_markdown_artifact(report["markdown"], key="freeze-comparison-markdown")
    get_run_logger().info("comparison of %d policies → %s", len(report["rows"]), report["files"]["md"])
    return report


def train_model(tokenized: list[dict], model_config: ModelConfig, train_config: TrainConfig, max_seq_length: int,
                loss_weights: dict[str, float], device: str, precision: str, out_dir: str, tokenizer_dir: str | None = None) -> dict:
    """Run (or reuse) training in this process; recompute when the saved model is gone."""
    outputs = [Path(out_dir) / "model" / "mtl_model.json"]
    return recompute_if_missing(train_task, outputs)(
        tokenized, model_config, train_config, max_seq_length, loss_weights, device, precision, out_dir, tokenizer_dir
    )


def evaluate_model(model_dir: str, tokenized: list[dict], config: EvaluateConfig, device: str, out_dir: str, training: dict) -> dict:
    """Run (or reuse) evaluation; recompute when metrics.json is gone."""
    outputs = [Path(out_dir) / "metrics.json"]
    return recompute_if_missing(evaluate_task, outputs)(model_dir, tokenized, config, device, out_dir, training)


def compare_policies(results: list[dict], out_dir: str, device: str) -> dict:
    """Run (or reuse) the comparison report; recompute when comparison.md is gone."""
    return recompute_if_missing(compare_task, [Path(out_dir) / "comparison.md", Path(out_dir) / "comparison.png"])(results, out_dir, device)
