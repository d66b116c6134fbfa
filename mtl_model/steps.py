"""The pipeline's steps as plain functions: typed records in, typed records out (`mtl_model/contracts.py`).

Each step has one name, used everywhere: `steps.tokenize` here, the Prefect task `tasks.data.tokenize` that
wraps it (adding only caching, retries, logging and artifacts), and the `tokenize` field of `pipeline.Steps`.
Everything here runs and is tested without Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from mtl_model import embed as embedding
from mtl_model.backbone import backbone_fingerprint, load_tokenizer
from mtl_model.callbacks import TrainerCallback
from mtl_model.compare import write_comparison
from mtl_model.config import EmbedConfig, EvaluateConfig, TaskSpec, TokenizeConfig
from mtl_model.contracts import (
    ComparisonReport,
    EncodedTask,
    FileReport,
    Metrics,
    PolicyResult,
    SplitStats,
    TokenizedTask,
    TrainedModel,
    TrainingFacts,
    TrainRequest,
    ValidationReport,
    Vocabulary,
)
from mtl_model.error_analysis import HeadReport, plot_confusion, report_splits
from mtl_model.errors import DataValidationError
from mtl_model.io import (
    atomic_dir,
    json_sha256,
    source_fingerprint,
    tree_sha256,
    write_json_atomic,
    write_parquet_atomic,
)
from mtl_model.memory import PeakMemory
from mtl_model.model import TAGS_SUFFIX, MultiTaskModel, build_model
from mtl_model.readers import TextExample
from mtl_model.task_data import load_task_data
from mtl_model.tokenization import encode_examples, load_tokenized, pad_encoded, read_metadata, write_encoded
from mtl_model.train import Checkpointer, train_multitask
from mtl_model.training_log import write_training_log
from mtl_model.vocab import build_tokenizer, save_tokenizer

log = logging.getLogger(__name__)


def validate(tasks: list[TaskSpec], files: dict[str, dict[str, str]], config: TokenizeConfig) -> ValidationReport:
    """Read and validate every file of every task before anything is written.

    Problems from all files are reported together in one DataValidationError (when `config.on_invalid` is
    `fail`). Each file's report counts rows read = accepted + rejected.
    """
    problems = []
    reports: dict[str, list[FileReport]] = {}
    for task in tasks:
        try:
            data = load_task_data(task, files[task.name], on_invalid=config.on_invalid)
        except DataValidationError as exc:
            problems.extend(exc.problems)
            continue
        reports[task.name] = [FileReport.model_validate(report) for report in data.reports]
    if problems:
        raise DataValidationError(problems)
    return ValidationReport(tasks=reports)


def build_vocab(
    tasks: list[TaskSpec], files: dict[str, dict[str, str]], config: TokenizeConfig, out_dir: str
) -> Vocabulary:
    """Build a from-scratch encoder's vocabulary from the *training* splits of all tasks; `<out>/vocab/tokenizer.json`.

    Texts stream into the `tokenizers` trainer; token tasks contribute their words joined by spaces (the
    pre-tokenizer splits them again exactly as it will at tokenisation time).
    """
    counted = {"texts": 0}

    def training_texts() -> Iterator[str]:
        for task in tasks:
            data = load_task_data(task, files[task.name], on_invalid=config.on_invalid)
            for example in data.splits.get("train", []):
                counted["texts"] += 1
                yield example.text if isinstance(example, TextExample) else " ".join(example.tokens)

    tokenizer = build_tokenizer(training_texts(), config.vocab, model_max_length=config.max_seq_length)
    target = Path(out_dir) / "vocab"
    with atomic_dir(target) as temp:
        save_tokenizer(tokenizer, temp)
    return Vocabulary(
        tokenizer_dir=str(target), vocab_size=len(tokenizer), kind=config.vocab.kind, texts=counted["texts"]
    )


def tokenize(
    task: TaskSpec, files: dict[str, str], config: TokenizeConfig, backbone: str, out_dir: str
) -> EncodedTask:
    """Read, validate and tokenize one task's splits; write ragged Parquet to `<out>/encoded/<task>/`.

    `backbone` is where the tokenizer comes from: the pretrained backbone, or a built vocabulary folder.
    """
    data = load_task_data(task, files, on_invalid=config.on_invalid)
    tokenizer = load_tokenizer(backbone)
    digests = {split: {"path": path, "sha256": source_fingerprint(path)} for split, path in files.items()}
    written, stats = {}, {}
    for split, examples in data.splits.items():
        if not examples:
            continue
        table, split_stats = encode_examples(
            tokenizer,
            examples,
            kind=task.kind,
            labels=data.labels,
            max_seq_length=config.max_seq_length,
            tag_labels=data.tag_labels,
        )
        target = Path(out_dir) / "encoded" / task.name / f"{split}.parquet"
        write_encoded(
            target,
            table,
            {
                "task": task.name,
                "kind": task.kind,
                "split": split,
                "labels": data.labels,
                "tag_labels": data.tag_labels,
                "tokenizer": backbone,
                "max_seq_length": config.max_seq_length,
                "pad_token_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
                "source": digests.get(split) or digests.get("all") or digests["train"],  # its file (carved: train's)
                "stats": split_stats.as_dict(),
            },
        )
        written[split] = str(target)
        stats[split] = SplitStats.model_validate(split_stats.as_dict())
    return EncodedTask(
        task=task.name,
        kind=task.kind,
        labels=data.labels,
        tag_labels=data.tag_labels,
        label_names=task.label_names,
        encoded=written,
        stats=stats,
        reads=[FileReport.model_validate(report) for report in data.reports],
    )


def pad(encoded: EncodedTask, max_seq_length: int, out_dir: str) -> TokenizedTask:
    """Pad each encoded split to max_seq_length; write `<out>/tokenized/<task>/<split>.parquet`."""
    files = {}
    for split, source in encoded.encoded.items():
        pad_id = read_metadata(source)["pad_token_id"]
        target = Path(out_dir) / "tokenized" / encoded.task / f"{split}.parquet"
        pad_encoded(source, target, max_seq_length=max_seq_length, pad_token_id=pad_id)
        files[split] = str(target)
    return TokenizedTask(
        **encoded.label_space(),
        files=files,
        truncated={split: stats.truncated for split, stats in encoded.stats.items()},
    )


def training_fingerprint(request: TrainRequest, precision: str) -> str:
    """What a checkpoint must match to be resumed: settings, backbone contents and training data (not paths)."""
    return json_sha256(
        {
            "model": request.model.model_dump(mode="json"),
            "backbone": backbone_fingerprint(request.model.backbone),  # contents: a retrained backbone is a new start
            "train": request.train.model_dump(mode="json", exclude={"checkpoint_every", "keep_checkpoints"}),
            "max_seq_length": request.max_seq_length,
            "loss_weights": request.loss_weights,
            "precision": precision,
            "data": {t.task: source_fingerprint(t.files["train"]) for t in request.tokenized},
        }
    )


def _build(request: TrainRequest, device: str) -> tuple[MultiTaskModel, object]:
    """The model on the backbone, with every task's head, and the tokenizer the data was tokenized with."""
    sources = {read_metadata(t.files["train"])["tokenizer"] for t in request.tokenized}
    if len(sources) != 1:
        raise ValueError(f"the tasks were tokenized with different tokenizers: {sorted(sources)}")
    tokenizer = load_tokenizer(request.tokenizer_dir or sources.pop())  # the backbone's, or a built vocabulary
    torch.manual_seed(request.train.seed)  # initialisation is part of the seeded run
    model_config = request.model
    model = build_model(
        backbone=model_config.backbone,
        heads=request.heads(),
        pooling=model_config.pooling,
        projection_dim=model_config.projection_dim,
        normalize=model_config.normalize,
        head_dropout=model_config.head_dropout,
        max_seq_length=request.max_seq_length,
        scratch=model_config.scratch,
        tokenizer=tokenizer,
        token_decoding=model_config.token_decoding,
        casing_dim=model_config.casing_dim,
    ).to(device)
    return model, tokenizer


def train(
    request: TrainRequest,
    *,
    device: str,
    precision: str,
    out_dir: str,
    callbacks: Sequence[TrainerCallback] = (),
    progress: bool | None = None,
) -> TrainedModel:
    """Build the model on the backbone, train it on every task's train split, save to `<out>/model/`.

    Resumes from `<out>/checkpoints/` when an earlier run of the same setup was interrupted; writes
    `<out>/training.json`, `<out>/train_log.parquet` and `<out>/training_curve.png`.
    """
    model, tokenizer = _build(request, device)
    splits = {t.task: load_tokenized(t.files["train"]) for t in request.tokenized}
    validation = {t.task: load_tokenized(t.files["validation"]) for t in request.tokenized if "validation" in t.files}
    out = Path(out_dir)
    checkpointer = Checkpointer(
        out / "checkpoints", training_fingerprint(request, precision), keep=request.train.keep_checkpoints
    )
    with PeakMemory(device) as memory:
        result = train_multitask(
            model,
            splits,
            request.train,
            device=device,
            precision=precision,
            loss_weights=request.loss_weights,
            validation_splits=validation,
            checkpointer=checkpointer,
            callbacks=callbacks,
            progress=progress,
        )
    if not result.trained:
        log.info("freeze policy %s: nothing trains; the model is evaluated as it is", request.train.freeze_policy)
    model_dir = out / "model"
    model.save(model_dir, tokenizer, sentence_transformer=True)
    summary = {**result.summary(), "peak_memory_mb": memory.peak_mb, "peak_memory_kind": memory.kind}
    write_json_atomic(out / "training.json", summary)
    if result.log:
        write_training_log(result.log, out / "train_log.parquet", out / "training_curve.png")
    checkpointer.clear()  # the finished model supersedes them
    return TrainedModel(model_dir=str(model_dir), device=device, **summary)


def evaluate(
    trained: TrainedModel, tokenized: list[TokenizedTask], config: EvaluateConfig, *, device: str, out_dir: str
) -> Metrics:
    """Metrics of every task on its `config.split`; writes `<out>/metrics.json`."""
    missing = [t.task for t in tokenized if config.split not in t.files]
    if missing:
        raise ValueError(f"task(s) {missing} have no {config.split!r} split to evaluate")
    model, _ = MultiTaskModel.load(trained.model_dir, map_location=device)
    started = time.perf_counter()
    splits = {t.task: load_tokenized(t.files[config.split]) for t in tokenized}
    reports = report_splits(model, splits, batch_size=config.batch_size, device=device)
    log.info("evaluated %s in %.1fs", sorted(reports), time.perf_counter() - started)
    sources = {t.task: t.files[config.split] for t in tokenized}
    files = write_error_analysis(reports, sources, Path(out_dir), split=config.split)
    metrics = Metrics(
        tasks={head: report.metrics for head, report in reports.items()},
        split=config.split,
        model=trained.model_dir,
        training=TrainingFacts.of(trained),
        per_class={head: report.per_class for head, report in reports.items()},
        entity_errors={head: r.entity_errors for head, r in reports.items() if r.entity_errors is not None},
        files=files,
    )
    write_json_atomic(Path(out_dir) / "metrics.json", metrics.model_dump(mode="json"))
    return metrics


def write_error_analysis(
    reports: dict[str, HeadReport], sources: dict[str, str], out: Path, *, split: str
) -> dict[str, str]:
    """`predictions/<head>.parquet` (row_id, text, gold, predicted, score) and `confusion/<head>.png` per head."""
    import pyarrow.parquet as pq

    files = {}
    for head, report in reports.items():
        source = sources.get(head) or sources[head.removesuffix(TAGS_SUFFIX)]  # a joint task's `x_tags`: x's file
        names = [name for name in ("row_id", "text") if name in pq.read_schema(source).names]
        context = pq.read_table(source, columns=names)
        table = report.predictions
        for index, name in enumerate(names):
            table = table.add_column(index, name, context.column(name))
        write_parquet_atomic(out / "predictions" / f"{head}.parquet", table)
        files[f"predictions/{head}"] = str(out / "predictions" / f"{head}.parquet")
        if report.confusion is not None:
            path = out / "confusion" / f"{head}.png"
            plot_confusion(report.confusion, report.class_names, f"{head}: confusion on the {split} split", path)
            files[f"confusion/{head}"] = str(path)
    return files


def compare(results: list[PolicyResult], *, out_dir: str, device: str) -> ComparisonReport:
    """The freeze-policy comparison table: `<out>/comparison.{md,json,png}`."""
    return write_comparison(results, out_dir, device=device)


def plan_embedding(
    model_dir: str, corpus: str, config: EmbedConfig, *, device: str, out_dir: str
) -> embedding.EmbedPlan:
    """Validate the corpus, fix its shards and decide the precision (`<out>/embeddings/`)."""
    return embedding.plan_embedding(
        model_dir,
        corpus,
        str(Path(out_dir) / "embeddings"),
        id_column=config.id_column,
        text_column=config.text_column,
        rows_per_shard=config.rows_per_shard,
        batch_size=config.batch_size,
        batch_tokens=config.batch_tokens,
        sort_window=config.sort_window,
        include_text=config.include_text,
        precision=config.precision,
        device=device,
        model_fingerprint=tree_sha256(model_dir)[:16],
        allow_duplicate_ids=config.allow_duplicate_ids,
        outputs=config.outputs,
        include_probs=config.include_probs,
    )


def embed_shard(plan: embedding.EmbedPlan, index: int, *, device: str) -> embedding.ShardRecord:
    """One shard (skipped when a finished copy is there)."""
    return embedding.embed_shard(plan, index, device=device)


def embed(model_dir: str, corpus: str, config: EmbedConfig, *, device: str, out_dir: str) -> embedding.EmbeddingResult:
    """Embed `corpus` with the trained model into `<out>/embeddings/` (resumable, shard by shard)."""
    plan = plan_embedding(model_dir, corpus, config, device=device, out_dir=out_dir)
    return embedding.run_embedding(plan, device=device)
