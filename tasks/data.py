"""Steps 1–2 as Prefect tasks: validate, build_vocab (scratch encoder), tokenize, pad."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from mtl_model import steps
from mtl_model.backbone import backbone_input_paths
from mtl_model.config import TaskSpec, TokenizeConfig
from mtl_model.contracts import EncodedTask, TokenizedTask, ValidationReport, Vocabulary
from tasks.policies import CacheKey, io_task


def _all_files(files: dict[str, dict[str, str]]) -> list[str]:
    return [path for task_files in files.values() for _, path in sorted(task_files.items())]


def _training_files(files: dict[str, dict[str, str]]) -> list[str]:
    """Each task's training file (or its `all` file, which the training split is carved from)."""
    return [task_files["train"] if "train" in task_files else task_files["all"] for task_files in files.values()]


@io_task(
    "validate",
    key=lambda tasks, files, config: CacheKey(inputs=_all_files(files), config=[tasks, config]),
)
def validate(tasks: list[TaskSpec], files: dict[str, dict[str, str]], config: TokenizeConfig) -> ValidationReport:
    """Every file of every task, checked before anything is written."""
    report = steps.validate(tasks, files, config)
    rows = [
        {"task": name, **file_report.model_dump(exclude={"notes"}), "notes": str(file_report.notes)}
        for name, file_reports in report.tasks.items()
        for file_report in file_reports
    ]
    create_table_artifact(rows, key="input-validation", description="Rows read / accepted / rejected per input file")
    for row in rows:
        get_run_logger().info(
            "%s: %d read = %d accepted + %d rejected %s",
            row["path"],
            row["rows_read"],
            row["rows_accepted"],
            row["rows_rejected"],
            row["notes"],
        )
    return report


@io_task(
    "vocab-build",
    key=lambda tasks, files, config, out_dir: CacheKey(inputs=_training_files(files), config=[tasks, config, out_dir]),
    outputs=lambda out_dir, **_: [Path(out_dir) / "vocab" / "tokenizer.json"],
)
def build_vocab(
    tasks: list[TaskSpec], files: dict[str, dict[str, str]], config: TokenizeConfig, out_dir: str
) -> Vocabulary:
    """Build the from-scratch encoder's vocabulary from the training splits; cached by the data's content."""
    vocabulary = steps.build_vocab(tasks, files, config, out_dir)
    get_run_logger().info(
        "%s vocabulary of %d tokens from %d training texts → %s",
        vocabulary.kind,
        vocabulary.vocab_size,
        vocabulary.texts,
        vocabulary.tokenizer_dir,
    )
    return vocabulary


@io_task(
    "tokenize",
    run_name="tokenize-{task.name}",
    key=lambda task, files, config, backbone, out_dir: CacheKey(
        inputs=[path for _, path in sorted(files.items())] + backbone_input_paths(backbone),
        config=[task, config, backbone, out_dir],
    ),
    outputs=lambda task, out_dir, **_: [Path(out_dir) / "encoded" / task.name],
)
def tokenize(
    task: TaskSpec, files: dict[str, str], config: TokenizeConfig, backbone: str, out_dir: str
) -> EncodedTask:
    """Read, validate and tokenize one task with the backbone's (or the built vocabulary's) fast tokenizer."""
    encoded = steps.tokenize(task, files, config, backbone, out_dir)
    logger = get_run_logger()
    for split, stats in encoded.stats.items():
        logger.info(
            "%s/%s: %d rows, %d truncated to %d tokens, %d words of document context",
            task.name,
            split,
            stats.rows,
            stats.truncated,
            config.max_seq_length,
            stats.context_words,
        )
    return encoded


@io_task(
    "pad",
    run_name="pad-{encoded.task}",
    key=lambda encoded, max_seq_length, out_dir: CacheKey(
        inputs=[path for _, path in sorted(encoded.encoded.items())], config=[max_seq_length, out_dir]
    ),
    outputs=lambda encoded, out_dir, **_: [Path(out_dir) / "tokenized" / encoded.task],
)
def pad(encoded: EncodedTask, max_seq_length: int, out_dir: str) -> TokenizedTask:
    """Pad to max_seq_length and write the Parquet the trainer reads."""
    tokenized = steps.pad(encoded, max_seq_length, out_dir)
    get_run_logger().info("%s: wrote %s", tokenized.task, ", ".join(tokenized.files.values()))
    return tokenized
