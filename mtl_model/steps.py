"""The pipeline's steps as plain functions: paths and small dicts in, paths and small dicts out.

Prefect tasks in `tasks/` wrap these one to one and add only caching, retries, logging and
artifacts, so everything here runs and is tested without Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mtl_model.backbone import backbone_fingerprint, load_tokenizer
from mtl_model.compare import write_comparison
from mtl_model.config import TAGS_SUFFIX, EmbedConfig, EvaluateConfig, ModelConfig, TaskSpec, TokenizeConfig, TrainConfig
from mtl_model.datasets import load_task_data
from mtl_model.embed import EmbedPlan, embed_corpus, embed_shard, plan_embedding
from mtl_model.errors import DataValidationError
from mtl_model.evaluate import evaluate_splits
from mtl_model.io import atomic_dir, atomic_path, json_sha256, source_fingerprint, tree_sha256, write_json_atomic, write_parquet_atomic
from mtl_model.memory import PeakMemory
from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from mtl_model.readers import TextExample
from mtl_model.tokenization import encode_examples, load_tokenized, pad_encoded, read_metadata, write_encoded
from mtl_model.train import Checkpointer, train_multitask
from mtl_model.vocab import build_tokenizer, save_tokenizer

log = logging.getLogger(__name__)


def validate_step(tasks: list[TaskSpec], files: dict[str, dict[str, str]], tokenize: TokenizeConfig) -> dict:
    """Read and validate every file of every task before anything is written.

    Problems from all files are reported together in one DataValidationError (when
    `tokenize.on_invalid` is `fail`). Returns per-file counts: rows read = accepted + rejected.
    """
    problems = []
    reports: dict[str, list[dict]] = {}
    for task in tasks:
        try:
            data = load_task_data(task, files[task.name], on_invalid=tokenize.on_invalid)
        except DataValidationError as exc:
            problems.extend(exc.problems)
            continue
        reports[task.name] = data.reports
    if problems:
        raise DataValidationError(problems)
    return reports


def vocab_step(tasks: list[TaskSpec], files: dict[str, dict[str, str]], tokenize: TokenizeConfig, out_dir: str) -> dict:
    """Build a from-scratch encoder's vocabulary from the *training* splits of all tasks; `<out>/vocab/tokenizer.json`.

    Texts stream into the `tokenizers` trainer; token tasks contribute their words joined by spaces
    (the pre-tokenizer splits them again exactly as it will at tokenisation time).
    """
    counted = {"texts": 0}

    def training_texts():
        for task in tasks:
            data = load_task_data(task, files[task.name], on_invalid=tokenize.on_invalid)
            for example in data.splits.get("train", []):
                counted["texts"] += 1
                yield example.text if isinstance(example, TextExample) else " ".join(example.tokens)

    tokenizer = build_tokenizer(training_texts(), tokenize.vocab, model_max_length=tokenize.max_seq_length)
    target = Path(out_dir) / "vocab"
    with atomic_dir(target) as temp:
        save_tokenizer(tokenizer, temp)
    return {"tokenizer_dir": str(target), "vocab_size": len(tokenizer), "kind": tokenize.vocab.kind, "texts": counted["texts"]}


def tokenize_step(task: TaskSpec, files: dict[str, str], tokenize: TokenizeConfig, backbone: str, out_dir: str) -> dict:
    """Read, validate and tokenize one task's splits; write ragged Parquet to `<out>/encoded/<task>/`.

    `backbone` is where the tokenizer comes from: the pretrained backbone, or a built vocabulary folder.
    """
    data = load_task_data(task, files, on_invalid=tokenize.on_invalid)
    tokenizer = load_tokenizer(backbone)
    digests = {split: {"path": path, "sha256": source_fingerprint(path)} for split, path in files.items()}
    written, stats = {}, {}
    for split, examples in data.splits.items():
        if not examples:
            continue
        table, split_stats = encode_examples(
            tokenizer, examples, kind=task.kind, labels=data.labels, max_seq_length=tokenize.max_seq_length,
            tag_labels=data.tag_labels,
        )
        target = Path(out_dir) / "encoded" / task.name / f"{split}.parquet"
        write_encoded(target, table, {
            "task": task.name,
            "kind": task.kind,
            "split": split,
            "labels": data.labels,
            "tag_labels": data.tag_labels,
            "tokenizer": backbone,
            "max_seq_length": tokenize.max_seq_length,
            "pad_token_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
            "source": digests["all" if "all" in digests else split],  # each split records only its own file
            "stats": split_stats.as_dict(),
        })
        written[split] = str(target)
        stats[split] = split_stats.as_dict()
    return {
        "task": task.name, "kind": task.kind, "labels": data.labels, "tag_labels": data.tag_labels,
        "encoded": written, "stats": stats, "reads": data.reports,
    }


def pad_step(encoded: dict, max_seq_length: int, out_dir: str) -> dict:
    """Pad each encoded split to max_seq_length; write `<out>/tokenized/<task>/<split>.parquet`."""
    files = {}
    for split, source in encoded["encoded"].items():
        pad_id = read_metadata(source)["pad_token_id"]
        target = Path(out_dir) / "tokenized" / encoded["task"] / f"{split}.parquet"
        pad_encoded(source, target, max_seq_length=max_seq_length, pad_token_id=pad_id)
        files[split] = str(target)
    truncated = {split: s["truncated"] for split, s in encoded["stats"].items()}
    return {
        "task": encoded["task"], "kind": encoded["kind"], "labels": encoded["labels"], "tag_labels": encoded.get("tag_labels"),
        "files": files, "truncated": truncated,
    }


def head_specs(tokenized: list[dict]) -> list[HeadSpec]:
    """One head per task; a joint task `x` gets a sentence head `x` and a token head `x_tags`."""
    heads = []
    for t in tokenized:
        if t["kind"] == "joint":
            heads.append(HeadSpec(name=t["task"], kind="sentence", labels=t["labels"]))
            heads.append(HeadSpec(name=t["task"] + TAGS_SUFFIX, kind="token", labels=t["tag_labels"]))
        else:
            heads.append(HeadSpec(name=t["task"], kind=t["kind"], labels=t["labels"]))
    return heads


def train_step(
    tokenized: list[dict],
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    max_seq_length: int,
    loss_weights: dict[str, float],
    device: str,
    precision: str,
    out_dir: str,
    on_step: Callable[[int, int, float], None] | None = None,
    progress: bool | None = None,
    tokenizer_dir: str | None = None,
) -> dict:
    """Build the model on the backbone, train it on every task's train split, save to `<out>/model/`.

    The tokenizer is the one the data was tokenized with (named in its metadata), unless `tokenizer_dir`
    gives its folder (a copy on a GPU worker's shared storage).

    Resumes from `<out>/checkpoints/` when an earlier run of the same setup was interrupted; writes
    `<out>/train_log.parquet` and `<out>/training_curve.png`.
    """
    sources = {read_metadata(t["files"]["train"])["tokenizer"] for t in tokenized}
    if len(sources) != 1:
        raise ValueError(f"the tasks were tokenized with different tokenizers: {sorted(sources)}")
    tokenizer = load_tokenizer(tokenizer_dir or sources.pop())  # the backbone's, or the vocabulary built for a scratch encoder
    torch.manual_seed(train_config.seed)  # initialisation is part of the seeded run
    heads = head_specs(tokenized)
    model = build_model(
        backbone=model_config.backbone,
        heads=heads,
        pooling=model_config.pooling,
        projection_dim=model_config.projection_dim,
        normalize=model_config.normalize,
        head_dropout=model_config.head_dropout,
        max_seq_length=max_seq_length,
        scratch=model_config.scratch,
        tokenizer=tokenizer,
    ).to(device)
    splits = {t["task"]: load_tokenized(t["files"]["train"]) for t in tokenized}
    validation = {t["task"]: load_tokenized(t["files"]["validation"]) for t in tokenized if "validation" in t["files"]}
    out = Path(out_dir)
    fingerprint = json_sha256({
        "model": model_config.model_dump(mode="json"),
        "backbone": backbone_fingerprint(model_config.backbone),  # contents: a retrained backbone is a new start
        "train": train_config.model_dump(mode="json", exclude={"checkpoint_every", "keep_checkpoints"}),
        "max_seq_length": max_seq_length,
        "loss_weights": loss_weights,
        "precision": precision,
        "data": {t["task"]: source_fingerprint(t["files"]["train"]) for t in tokenized},
    })
    checkpointer = Checkpointer(out / "checkpoints", fingerprint, keep=train_config.keep_checkpoints)
    with PeakMemory(device) as memory:
        result = train_multitask(
            model, splits, train_config, device=device, precision=precision, loss_weights=loss_weights,
            validation_splits=validation, checkpointer=checkpointer, on_step=on_step, progress=progress,
        )
    if not result.trained:
        log.info("freeze policy %s: nothing trains; the model is evaluated as it is", train_config.freeze_policy)
    model_dir = out / "model"
    model.save(model_dir, tokenizer, sentence_transformer=True)
    summary = {**result.summary(), "peak_memory_mb": memory.peak_mb, "peak_memory_kind": memory.kind}
    write_json_atomic(out / "training.json", summary)
    if result.log:
        write_training_log(result.log, out / "train_log.parquet", out / "training_curve.png")
    checkpointer.clear()  # the finished model supersedes them
    return {"model_dir": str(model_dir), "device": device, **summary}


def write_training_log(rows: list[dict], parquet_path: Path, png_path: Path) -> None:
    """Per-step losses and per-evaluation metrics as Parquet, and a loss/metric curve as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa

    write_parquet_atomic(parquet_path, pa.Table.from_pylist(rows, schema=pa.schema([
        ("step", pa.int64()), ("kind", pa.string()), ("task", pa.string()), ("name", pa.string()), ("value", pa.float64()),
    ])))
    figure, (loss_axis, eval_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for task in sorted({r["task"] for r in rows if r["kind"] == "train" and r["name"] == "loss"}):
        points = [(r["step"], r["value"]) for r in rows if r["kind"] == "train" and r["name"] == "loss" and r["task"] == task]
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


TRAINING_FIELDS = ("freeze_policy", "trainable_params", "total_params", "steps", "seconds", "peak_memory_mb", "peak_memory_kind", "final_loss")


def evaluate_step(model_dir: str, tokenized: list[dict], config: EvaluateConfig, *, device: str, out_dir: str, training: dict) -> dict:
    """Metrics of every task on its `config.split`; writes `<out>/metrics.json`."""
    model, _ = MultiTaskModel.load(model_dir, map_location=device)
    missing = [t["task"] for t in tokenized if config.split not in t["files"]]
    if missing:
        raise ValueError(f"task(s) {missing} have no {config.split!r} split to evaluate")
    started = time.perf_counter()
    splits = {t["task"]: load_tokenized(t["files"][config.split]) for t in tokenized}
    results = evaluate_splits(model, splits, batch_size=config.batch_size, device=device)
    log.info("evaluated %s in %.1fs", sorted(results), time.perf_counter() - started)
    metrics = {
        "tasks": results,
        "split": config.split,
        "model": model_dir,
        "training": {k: training.get(k) for k in TRAINING_FIELDS},
    }
    write_json_atomic(Path(out_dir) / "metrics.json", metrics)
    return metrics


def compare_step(results: list[dict], *, out_dir: str, device: str) -> dict:
    """The freeze-policy comparison table: `<out>/comparison.{md,json,png}`."""
    return write_comparison(results, out_dir, device=device)


def embed_plan_step(model_dir: str, corpus_path: str, config: EmbedConfig, *, device: str, out_dir: str) -> dict:
    """Validate the corpus, fix its shards and decide the precision; the plan as a plain dict."""
    plan = plan_embedding(
        model_dir, corpus_path, str(Path(out_dir) / "embeddings"), id_column=config.id_column, text_column=config.text_column,
        rows_per_shard=config.rows_per_shard, batch_size=config.batch_size, sort_window=config.sort_window,
        include_text=config.include_text, precision=config.precision, device=device, model_fingerprint=tree_sha256(model_dir)[:16],
    )
    return plan.to_dict()


def embed_shard_step(plan: dict, index: int, *, device: str) -> dict:
    """One shard (skipped when a finished copy is there)."""
    return embed_shard(EmbedPlan.from_dict(plan), index, device=device)


def embed_step(model_dir: str, corpus_path: str, config: EmbedConfig, *, device: str, out_dir: str) -> dict:
    """Embed `corpus_path` with the trained model into `<out>/embeddings/` (resumable, shard by shard)."""
    plan = EmbedPlan.from_dict(embed_plan_step(model_dir, corpus_path, config, device=device, out_dir=out_dir))
    return embed_corpus(plan, device=device)
