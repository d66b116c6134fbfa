"""What the pipeline's steps hand each other: typed, frozen, JSON-serialisable records with paths inside.

Each step (`mtl_model/steps.py`) takes and returns these; the Prefect tasks persist them as results and key
their caches on them, and nothing between steps is a loose dict, a tensor or a model. The embedding step's
records (`EmbedPlan`, `ShardRecord`, `EmbeddingResult`) live with it in `mtl_model/embed/`.

    validate        → ValidationReport
    vocab-build     → Vocabulary                (scratch encoder only)
    tokenize        → EncodedTask               (one per task)
    pad             → TokenizedTask             (one per task)
    train           TrainRequest → TrainedModel
    evaluate        TrainedModel + TokenizedTask… → Metrics
    embed           EmbedPlan → ShardRecord… → EmbeddingResult
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtl_model.backbone import backbone_input_paths
from mtl_model.base import StrictModel
from mtl_model.config import ModelConfig, TrainConfig
from mtl_model.model import TAGS_SUFFIX, HeadSpec

TaskKind = Literal["sentence", "token", "joint"]


class FileReport(StrictModel):
    """What reading one input file found: every row is accepted or rejected, and every rule used is counted."""

    path: str
    """The file read (or the `hf:` source)."""
    rows_read: int
    """Data rows seen (header and blank lines excluded)."""
    rows_accepted: int
    """Rows that became examples."""
    rows_rejected: int
    """Rows dropped under `tokenize.on_invalid: skip` (0 under `fail`, where they are errors instead)."""
    problems: int
    """Problems found in the file (each names its line)."""
    notes: dict[str, int] = Field(default_factory=dict)
    """How often each documented repair rule fired (byte-order mark, AG News escapes, BIO repair, …)."""


class ValidationReport(StrictModel):
    """The validate step's result: per task, one report per file read."""

    tasks: dict[str, list[FileReport]]
    """Task name → its files' reports, in split order."""


class Vocabulary(StrictModel):
    """A vocabulary built for the from-scratch encoder (`<out>/vocab/tokenizer.json`)."""

    tokenizer_dir: str
    """Folder holding `tokenizer.json` (a tokenizer `load_tokenizer` reads like any backbone's)."""
    vocab_size: int
    """Tokens in the vocabulary, special tokens included."""
    kind: Literal["wordpiece", "word_level"]
    """How words are split."""
    texts: int
    """Training texts it was learnt from."""


class SplitStats(StrictModel):
    """Counts from tokenizing one split."""

    rows: int
    """Examples tokenized."""
    truncated: int
    """Examples longer than `tokenize.max_seq_length` (cut)."""
    words_cut_by_truncation: int
    """Words of token tasks that lost their tokens to truncation (scored as predicted `O`)."""
    words_without_tokens: int
    """Words the tokenizer produced no token for (e.g. stray control characters)."""
    context_words: int = 0
    """Words of neighbouring sentences fed as unlabelled context, summed over rows (`document_context_words`)."""


class TaskLabels(StrictModel):
    """A task's identity and label space, as the tokenize step found it and every later step carries it."""

    task: str
    """Task name (a joint task `x` trains heads `x` and `x_tags`)."""
    kind: TaskKind
    """Sentence labels, token tags, or both (`joint`)."""
    labels: list[str]
    """Sentence labels (for a token task: its tags) in class-id order."""
    tag_labels: list[str] | None = None
    """A joint task's token tags in class-id order."""
    label_names: dict[str, str] | None = None
    """Human-readable names of the sentence labels (`TaskSpec.label_names`)."""

    def label_space(self) -> dict[str, object]:
        """These fields as keyword arguments, to build the next step's record of the same task."""
        return self.model_dump(include=set(TaskLabels.model_fields))


class EncodedTask(TaskLabels):
    """The tokenize step's result: one task's splits as ragged token ids (`<out>/encoded/<task>/<split>.parquet`)."""

    encoded: dict[str, str]
    """Split name → ragged Parquet file."""
    stats: dict[str, SplitStats]
    """Split name → tokenisation counts."""
    reads: list[FileReport]
    """What reading the task's files found."""


class TokenizedTask(TaskLabels):
    """The pad step's result: one task's splits padded to `max_seq_length`
    (`<out>/tokenized/<task>/<split>.parquet`)."""

    files: dict[str, str]
    """Split name → padded Parquet file."""
    truncated: dict[str, int] = Field(default_factory=dict)
    """Split name → examples cut to `max_seq_length`."""

    def heads(self) -> list[HeadSpec]:
        """The heads this task trains: a joint task `x` has a sentence head `x` and a token head `x_tags`."""
        if self.kind == "joint":
            return [
                HeadSpec(name=self.task, kind="sentence", labels=self.labels, label_names=self.label_names),
                HeadSpec(name=self.task + TAGS_SUFFIX, kind="token", labels=self.tag_labels or []),
            ]
        names = self.label_names if self.kind == "sentence" else None
        return [HeadSpec(name=self.task, kind=self.kind, labels=self.labels, label_names=names)]


class TrainRequest(StrictModel):
    """Everything training needs, by value or by path: the train step's one argument, and the training flow's one
    parameter on a GPU worker (where every path lies under the shared folder)."""

    tokenized: list[TokenizedTask] = Field(min_length=1)
    """Each task's padded Parquet splits (train, and validation when there is one)."""
    model: ModelConfig
    """Backbone, pooling, projection and heads' dropout."""
    train: TrainConfig
    """Optimisation, freeze policy and precision."""
    max_seq_length: int = Field(ge=8)
    """Sequence length the data was padded to."""
    loss_weights: dict[str, float]
    """Task name → loss weight."""
    tokenizer_dir: str | None = None
    """The tokenizer folder when it is not the one named in the data (a copy on a GPU worker's shared storage)."""

    def heads(self) -> list[HeadSpec]:
        """Every head the model gets, in task order."""
        return [head for task in self.tokenized for head in task.heads()]

    def input_paths(self) -> list[str]:
        """What training reads, for content-hashed cache keys: each train split, the backbone's files (a local
        folder, a built vocabulary or a trained model) and the tokenizer folder when one is given."""
        paths = [task.files["train"] for task in self.tokenized] + backbone_input_paths(self.model.backbone)
        return paths + ([self.tokenizer_dir] if self.tokenizer_dir else [])


class TrainedModel(StrictModel):
    """The train step's result: the saved model folder and what training did (`<out>/training.json`)."""

    model_dir: str
    """The saved model (`MultiTaskModel.load(model_dir)`)."""
    device: str
    """Device that trained (`remote` when a GPU worker's record is missing)."""
    trained: bool
    """False under freeze policy `all` (nothing trains)."""
    steps: int
    """Optimizer steps taken."""
    freeze_policy: str
    """The freeze policy trained under."""
    precision: str
    """Autocast precision (`fp32`, `bf16`, `fp16`)."""
    trainable_params: int
    """Parameters that trained."""
    total_params: int
    """All parameters of the model."""
    seconds: float
    """Wall time of the training loop."""
    examples_per_second: float | None = None
    """Training examples per second of loop time."""
    examples_per_task: dict[str, int] = Field(default_factory=dict)
    """Training examples each task contributed (the compute a single-task run must match to be compared)."""
    first_loss: float | None = None
    """Summed task loss of the first step."""
    final_loss: float | None = None
    """Mean summed loss of the last ten steps."""
    best_step: int | None = None
    """Step whose validation value was best (with evaluation)."""
    best_value: float | None = None
    """That best validation value."""
    stopped_early: bool = False
    """Whether early stopping ended training."""
    resumed_from: int | None = None
    """Step of the checkpoint training resumed from, if any."""
    loss_weights: dict[str, float] = Field(default_factory=dict)
    """Loss weight per task as trained (learned ones under uncertainty weighting)."""
    peak_memory_mb: float | None = None
    """Peak memory while training (see `peak_memory_kind`)."""
    peak_memory_kind: str | None = None
    """What `peak_memory_mb` measures (CUDA allocator peak, or process RSS growth)."""
    worker: dict[str, str | int | None] | None = None
    """Which machine and process trained, when a GPU worker did (`worker.json`)."""


class TrainingFacts(StrictModel):
    """The few facts about training that `metrics.json` repeats, so a metrics file says what produced it."""

    freeze_policy: str | None = None
    """The freeze policy trained under."""
    trainable_params: int | None = None
    """Parameters that trained."""
    total_params: int | None = None
    """All parameters of the model."""
    steps: int | None = None
    """Optimizer steps taken."""
    seconds: float | None = None
    """Wall time of the training loop."""
    peak_memory_mb: float | None = None
    """Peak memory while training."""
    peak_memory_kind: str | None = None
    """What `peak_memory_mb` measures."""
    final_loss: float | None = None
    """Mean summed loss of the last ten steps."""

    @classmethod
    def of(cls, trained: TrainedModel) -> TrainingFacts:
        return cls(**trained.model_dump(include=set(cls.model_fields)))


class Metrics(StrictModel):
    """The evaluate step's result, written as `<out>/metrics.json`."""

    tasks: dict[str, dict[str, float | int]]
    """Head name → metric name → value (accuracy, precision, recall, f1, support; token heads: token_accuracy)."""
    split: str
    """The split evaluated."""
    model: str
    """The model folder evaluated."""
    training: TrainingFacts
    """How that model was trained."""
    per_class: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    """Head → class (sentence heads, by label name) or entity type (token heads) → precision, recall, f1, support:
    scikit-learn's and seqeval's `classification_report`."""
    entity_errors: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)
    """Token head → entity type → correct, wrong_type, boundary, missed, spurious (`error_analysis.entity_errors`)."""
    files: dict[str, str] = Field(default_factory=dict)
    """What else evaluation wrote: `predictions/<head>.parquet` and `confusion/<head>.png` per head."""


def tokenized_paths(tokenized: list[TokenizedTask]) -> list[str]:
    """Every padded split file, in a stable order (for cache keys)."""
    return [path for task in tokenized for _, path in sorted(task.files.items())]


class PolicyResult(StrictModel):
    """One entry of the freeze-policy comparison: where it ran, how it trained, what it scored."""

    entry: str
    """The comparison entry (`policy[|train.field=value…]`)."""
    out_dir: str
    """Its output folder (`<out>/policies/<entry>/`)."""
    training: TrainedModel
    """Its training result."""
    metrics: Metrics
    """Its evaluation result."""


class ComparisonReport(StrictModel):
    """The comparison step's result: one row per entry, the Markdown table and the files written."""

    rows: list[dict[str, str | int | float | None]]
    """Per entry: policy, trainable_params, trainable_percent, train_seconds, peak_memory_mb, then one column
    per task (accuracy or entity F1)."""
    markdown: str
    """The table as Markdown (`comparison.md`)."""
    files: dict[str, str]
    """`md`, `json`, `png` → path."""
