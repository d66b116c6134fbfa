"""Steps 1–2 as Prefect tasks: validate, vocab-build (scratch encoder), tokenize, pad."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from mtl_model import steps
from mtl_model.config import TaskSpec, TokenizeConfig
from tasks.policies import IO_TASK, backbone_inputs, content_key, recompute_if_missing

@task(
    name="validate",
    cache_key_fn=lambda ctx, p: content_key(
        "validate",
        inputs=[path for files in p["files"].values() for _, path in sorted(files.items())],
        config=[p["tasks"], p["tokenize"]],
    ),
    **IO_TASK,
)
def validate_inputs(tasks: list[TaskSpec], files: dict[str, dict[str, str]], tokenize: TokenizeConfig) -> dict:
    """Every file of every task, checked before anything is written."""
    reports = steps.validate_step(tasks, files, tokenize)
    rows = [
        {"task": name, **{k: v for k, v in report.items() if k != "notes"}, "notes": str(report["notes"])}
        for name, task_reports in reports.items()
        for report in task_reports
    ]
    create_table_artifact(rows, key="input-validation", description="Rows read / accepted / rejected per input file")
    for row in rows:
        get_run_logger().info(
            "%s: %d read = %d accepted + %d rejected %s",
            row["path"], row["rows_read"], row["rows_accepted"], row["rows_rejected"], row["notes"],
        )
    return reports


@task(
    name="vocab-build",
    cache_key_fn=lambda ctx, p: content_key(
        "vocab",
        # the training file of each task (or its `all` file, which the training split is carved from)
        inputs=[files["train"] if "train" in files else files["all"] for files in p["files"].values()],
        config=[p["tasks"], p["tokenize"], p["out_dir"]],
    ),
    **IO_TASK,
)
def vocab_task(tasks: list[TaskSpec], files: dict[str, dict[str, str]], tokenize: TokenizeConfig, out_dir: str) -> dict:
    """Build the from-scratch encoder's vocabulary from the training splits; cached by the data's content."""
    result = steps.vocab_step(tasks, files, tokenize, out_dir)
    get_run_logger().info(
        "%s vocabulary of %d tokens from %d training texts → %s", result["kind"], result["vocab_size"], result["texts"], result["tokenizer_dir"]
    )
    return result


@task(
    name="tokenize",
    task_run_name="tokenize-{task.name}",
    cache_key_fn=lambda ctx, p: content_key(
        "tokenize",
        inputs=[path for _, path in sorted(p["files"].items())] + backbone_inputs(p["backbone"]),
        config=[p["task"], p["tokenize"], p["backbone"], p["out_dir"]],
    ),
    **IO_TASK,
)
def tokenize_task(task: TaskSpec, files: dict[str, str], tokenize: TokenizeConfig, backbone: str, out_dir: str) -> dict:
    """Read, validate and tokenize one task with the backbone's (or the built vocabulary's) fast tokenizer."""
    result = steps.tokenize_step(task, files, tokenize, backbone, out_dir)
    logger = get_run_logger()
    for split, stats in result["stats"].items():
        logger.info("%s/%s: %d rows, %d truncated to %d tokens", task.name, split, stats["rows"], stats["truncated"], tokenize.max_seq_length)
    return result


@task(
    name="pad",
    task_run_name="pad-{encoded[task]}",
    cache_key_fn=lambda ctx, p: content_key(
        "pad",
        inputs=[path for _, path in sorted(p["encoded"]["encoded"].items())],
        config=[p["max_seq_length"], p["out_dir"]],
    ),
    **IO_TASK,
)
def pad_task(encoded: dict, max_seq_length: int, out_dir: str) -> dict:
    """Pad to max_seq_length and write the Parquet the trainer reads."""
    result = steps.pad_step(encoded, max_seq_length, out_dir)
    get_run_logger().info("%s: wrote %s", result["task"], ", ".join(result["files"].values()))
    return result


def build_vocab(tasks: list[TaskSpec], files: dict[str, dict[str, str]], tokenize: TokenizeConfig, out_dir: str) -> dict:
    """Run (or reuse) vocab-build; recompute when tokenizer.json is gone."""
    outputs = [Path(out_dir) / "vocab" / "tokenizer.json"]
    return recompute_if_missing(vocab_task, outputs)(tasks, files, tokenize, out_dir)


def tokenize_data(task: TaskSpec, files: dict[str, str], tokenize: TokenizeConfig, backbone: str, out_dir: str) -> dict:
    """Run (or reuse) the tokenize task; recompute when its output folder is gone."""
    outputs = [Path(out_dir) / "encoded" / task.name]
    return recompute_if_missing(tokenize_task, outputs)(task, files, tokenize, backbone, out_dir)


def pad_data(encoded: dict, max_seq_length: int, out_dir: str) -> dict:
    """Run (or reuse) the pad task; recompute when its output folder is gone."""
    outputs = [Path(out_dir) / "tokenized" / encoded["task"]]
    return recompute_if_missing(pad_task, outputs)(encoded, max_seq_length, out_dir)
