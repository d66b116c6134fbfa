"""Typed configuration, one model per pipeline step, validated at the boundary.

Every field has a docstring (pydantic turns it into the field's description, which Prefect shows in
its parameter form). Cross-field checks raise errors that name the offending field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from mtl_model.backbone import SCRATCH_BACKBONE, resolve_backbone
from mtl_model.base import StrictModel
from mtl_model.decoding import TokenDecoding
from mtl_model.errors import ConfigError
from mtl_model.freeze import POLICY_PATTERN, VALID_POLICIES, parse_freeze_policy
from mtl_model.io import is_hub_source
from mtl_model.model import TAGS_SUFFIX
from mtl_model.modules.scratch import SCRATCH_LORA_TARGETS, ScratchArchitecture
from mtl_model.vocab import VocabConfig

if TYPE_CHECKING:
    from mtl_model.options import RunOptions

SplitName = Literal["train", "validation", "test"]
BUNDLED_BACKBONE = "bundled:all-MiniLM-L6-v2"

# Flow parameter types: Prefect turns them into the deployment's parameter schema, so the UI shows a form and
# the server rejects a bad value when the run is created, before any worker starts it.
DeviceChoice = Literal["auto", "cpu", "cuda"]
GpuMode = Literal["auto", "require", "never"]
_KEY = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+"
FreezePolicyText = Annotated[
    str,
    Field(
        pattern=f"^{POLICY_PATTERN}$",
        description=" | ".join(VALID_POLICIES) + " (several head:<task> joined by commas)",
    ),
]
Override = Annotated[
    str,
    Field(
        pattern=f"^{_KEY}=.*$",
        description="`section.field=value`, the value parsed as YAML, e.g. `train.max_steps=500`",
    ),
]
ComparisonEntry = Annotated[
    str,
    Field(
        pattern=f"^{POLICY_PATTERN}(\\|train\\.[A-Za-z_][A-Za-z0-9_.]*=[^|]*)*$",
        description="a freeze policy, optionally with `|train.field=value` settings for this entry only",
    ),
]


class SplitSpec(StrictModel):
    """How a dataset with one labelled file is divided (seeded and stratified by label)."""

    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of rows for the validation split."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of rows for the test split."""
    seed: int = 0
    """Seed of the split, so every run sees the same partition."""

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitSpec:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "split.validation_fraction + split.test_fraction must be < 0.9, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        return self


class TaskSpec(StrictModel):
    """One supervised task: where its data is, how to read it, and what kind of head it gets."""

    name: str
    """Identifier of the task; names its head, its Parquet folder and its metrics."""
    kind: Literal["sentence", "token", "joint"]
    """`sentence`: one label per text (topic, sentiment). `token`: one BIO tag per word (NER).
    `joint`: both on the same sentence (rows of words, tags and a label); its two losses are summed."""
    format: Literal["ag_news", "glue_tsv", "conll", "csv", "jsonl", "parquet", "hf"]
    """File format of the data files; `hf` reads Hugging Face hub datasets named `hf:<name>[/<config>][:<split>]`."""
    files: dict[Literal["train", "validation", "test", "all"], str]
    """Data files per split, relative to the data directory. `all` alone means: split it (see `split`)."""
    text_column: str = "text"
    """Column with the text (`glue_tsv`, `csv`, `jsonl`, `parquet`)."""
    label_column: str = "label"
    """Column with the label (`glue_tsv`, `csv`, `jsonl`, `parquet`)."""
    id_column: str | None = None
    """Optional column with a row id, used in error messages (`csv`, `jsonl`, `parquet`)."""
    tag_column: int = -1
    """Column index of the tag in CoNLL files (-1: the last column)."""
    tag_scheme: Literal["bio", "iob1"] = "bio"
    """Tag scheme of the CoNLL files; IOB1 is converted to BIO on read."""
    invalid_bio: Literal["error", "repair"] = "error"
    """An I-X continuing no X entity: `error` rejects the sentence; `repair` reads it as B-X (counted)."""
    tokens_column: str = "tokens"
    """Column with the list of words (token tasks in `jsonl`, `parquet`, `hf`)."""
    tags_column: str = "tags"
    """Column with the list of BIO tags (token tasks in `jsonl`, `parquet`, `hf`)."""
    labels: list[str] | None = None
    """The label set, in head order. When absent it is the sorted set of training labels."""
    label_names: dict[str, str] | None = None
    """Human-readable names of sentence labels as they appear in the data, e.g. AG News `{"1": "World", ...}`,
    SST-2 `{"0": "negative", "1": "positive"}`: saved with the model and used wherever labels are shown or
    written (metrics per class, predictions). A label without a name is shown as it is."""
    min_label_count: int = Field(2, ge=1)
    """Only when `labels` (or a joint task's `tag_labels`) is absent: a label, or an entity type of the tags, found in
    fewer training examples than this is reported as a probable typo (with its file and line) instead of becoming a
    class of its own. Declare `labels:` to accept rare classes; 1 turns the check off. Formats that know their labels
    (`ag_news`: 1–4 or the classes of a `classes.txt` beside the file; `glue_tsv`: SST-2's 0/1) report any other
    label instead, however frequent."""
    tag_labels: list[str] | None = None
    """The tag set of a `joint` task's token head; when absent, every B-/I- pair of the training tags plus O."""
    split: SplitSpec = SplitSpec()
    """How to split a dataset given as one `all` file."""
    validation_from_train: float = Field(0.0, ge=0.0, lt=0.5)
    """Share of the `train` file set aside (seeded by `split.seed`, stratified by label) as the validation split,
    for a task without a `validation` file: model selection then never looks at the test split (e.g. SST-2, whose
    dev set is its test split). 0 keeps every training row."""
    validation_whole_texts: bool = False
    """With `validation_from_train`: hold out whole texts only (rows no other row contains) and drop from training
    every row that is a word span of one of them, until held-out plus dropped rows reach that share. For
    phrase-level training files such as SST-2's (67k phrases cut from ~6.9k sentences), where a random hold-out
    shares most of its phrases with training and reads optimistic, so selecting on it says little about sentence-level
    accuracy. The validation split is smaller (SST-2 at 0.1: 547 sentences); training loses the same share."""
    loss_weight: float = Field(1.0, gt=0.0)
    """Weight of this task's loss in the summed multi-task loss."""
    document_context_words: int = Field(0, ge=0)
    """Token tasks in CoNLL files with `-DOCSTART-` lines: feed the encoder up to this many words of the same
    document's neighbouring sentences on each side of every sentence, as context only (no labels, no loss, not
    scored); nearest words first, only as many as fit in `tokenize.max_seq_length` beside the sentence's own
    tokens, which are never cut for context. Applies to every split, test included, as BERT's CoNLL-2003 recipe
    does; a sentence given to `predict` alone has none. Costs encoder time in proportion to the longer rows.
    0: each sentence alone."""

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value):
            raise ValueError(f"task name must match [A-Za-z][A-Za-z0-9_-]*, got {value!r}")
        return value

    @model_validator(mode="after")
    def _files_and_format_agree(self) -> TaskSpec:
        keys = set(self.files)
        if "all" in keys and keys != {"all"}:
            raise ValueError(f"task {self.name!r}: files.all cannot be combined with {sorted(keys - {'all'})}")
        if "all" not in keys and not {"train", "test"} <= keys:
            raise ValueError(f"task {self.name!r}: files needs `train` and `test` (or a single `all`)")
        if self.validation_from_train > 0 and ("validation" in keys or "all" in keys):
            raise ValueError(
                f"task {self.name!r}: validation_from_train carves a validation split from `train`; this task "
                f"already has one ({'files.validation' if 'validation' in keys else 'split.validation_fraction'})"
            )
        if self.validation_whole_texts and self.validation_from_train == 0:
            raise ValueError(
                f"task {self.name!r}: validation_whole_texts shapes the split that validation_from_train carves; "
                "set validation_from_train > 0 (e.g. 0.1) or drop validation_whole_texts"
            )
        if self.document_context_words > 0 and (self.kind != "token" or self.format != "conll"):
            raise ValueError(
                f"task {self.name!r}: document_context_words needs documents, which only `conll` files of a "
                f"`token` task mark (-DOCSTART- lines); this task is kind {self.kind!r}, format {self.format!r}"
            )
        sentence_formats = {"ag_news", "glue_tsv", "csv", "jsonl", "parquet", "hf"}
        token_formats = {"conll", "jsonl", "parquet", "hf"}
        allowed = {"sentence": sentence_formats, "token": token_formats, "joint": {"jsonl", "parquet", "hf"}}[
            self.kind
        ]
        if self.format not in allowed:
            raise ValueError(
                f"task {self.name!r}: kind {self.kind!r} does not fit format {self.format!r} "
                f"(it reads {sorted(allowed)})"
            )
        hf_files = [is_hub_source(path) for path in self.files.values()]
        if any(hf_files) != (self.format == "hf") or (self.format == "hf" and not all(hf_files)):
            raise ValueError(f"task {self.name!r}: format 'hf' and files named 'hf:<name>[/<config>]' go together")
        if self.label_names and self.labels is not None and set(self.label_names) - set(self.labels):
            raise ValueError(
                f"task {self.name!r}: label_names names labels that are not in labels: "
                f"{sorted(set(self.label_names) - set(self.labels))}"
            )
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: labels has duplicates: {self.labels}")
        return self


class TokenizeConfig(StrictModel):
    """Step 1–2: reading, validation, tokenisation and padding."""

    max_seq_length: int = Field(128, ge=8, le=8192)
    """Sequences are truncated and padded to this many tokens (special tokens included)."""
    on_invalid: Literal["fail", "skip"] = "fail"
    """`fail`: any bad row stops the run, listing every problem. `skip`: bad rows are dropped and counted."""
    vocab: VocabConfig = VocabConfig()
    """With `model.backbone: scratch`: how the vocabulary is built from the training splits of all tasks."""


class ModelConfig(StrictModel):
    """Step 3: the multi-task model's architecture."""

    backbone: str = BUNDLED_BACKBONE
    """Encoder: `bundled:all-MiniLM-L6-v2` (offline, sha256-verified), a Hugging Face model id, a local directory,
    or `scratch` (our own transformer encoder from random initialisation, shaped by `scratch`, with a vocabulary
    built from the training texts, see `tokenize.vocab`)."""
    scratch: ScratchArchitecture = ScratchArchitecture()
    """With `backbone: scratch`: the encoder's shape (d_model, heads, layers, feed-forward, positions, norm)."""
    pooling: Literal["mean", "cls", "max"] = "mean"
    """How token states become one sentence vector (`mean` ignores padding)."""
    projection_dim: int | None = Field(256, ge=1)
    """Size of the Linear+Tanh projection after pooling; `null` keeps the encoder's size."""
    normalize: bool = True
    """L2-normalise the sentence embedding (cosine similarity becomes a dot product)."""
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout before every task head during training."""
    token_decoding: TokenDecoding = "bio_viterbi"
    """How token heads turn word scores into tags: `bio_viterbi` finds the best sequence that BIO allows (never an
    entity opened by I-), `argmax` takes each word's best tag on its own. Saved with the model."""
    casing_dim: int = Field(0, ge=0, le=64)
    """Token heads join a learned embedding of this size of each word's shape (lower, Title, UPPER, digit, other:
    `mtl_model.casing`) to the token states, giving back the capitalisation an uncased backbone discards (the
    strongest NER cue); 0: off. Saved with the model; `predict` and the embed step compute it from raw text."""


class LoraSettings(StrictModel):
    """LoRA adapters for `freeze_policy: lora` (the `peft` library); merged into the weights when saving."""

    rank: int = Field(8, ge=1)
    """Rank r of each adapter's low-rank update B·A."""
    alpha: float = Field(16.0, gt=0.0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter's input during training."""
    target_modules: list[str] | None = None
    """Names of the encoder's linear layers that get adapters. `null`: peft's default for the backbone's architecture
    (BERT/MiniLM: `query`, `value`); for `backbone: scratch`, the feed-forward layers `linear1`, `linear2`."""


class TrainConfig(StrictModel):
    """Step 3: optimisation, task mixing, evaluation during training and checkpoints."""

    epochs: float = Field(3.0, gt=0.0)
    """Passes over the largest task's training split (smaller tasks cycle)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides `epochs` when set)."""
    batch_size: int = Field(16, ge=1)
    """Examples per batch; a batch holds one task."""
    task_sampling: Literal["all", "round_robin", "proportional", "temperature"] = "all"
    """Which task each batch comes from. `all`: every micro-step sums one batch of every task.
    `round_robin`: tasks in turn. `proportional`: by training-set size. `temperature`: ∝ size^(1/T)."""
    sampling_temperature: float = Field(2.0, ge=1.0)
    """T for `temperature` sampling (1 = proportional; larger flattens towards uniform)."""
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    """`fixed`: each task's `loss_weight`. `uncertainty`: learned per-task weights (Kendall et al. 2018)."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches whose gradients are summed into one optimizer step."""
    learning_rate: float = Field(5e-5, gt=0.0)
    """Peak AdamW learning rate of the encoder."""
    head_learning_rate: float | None = Field(1e-3, gt=0.0)
    """Peak learning rate of projection, heads and loss weights; `null`: same as the encoder."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of steps with linearly increasing learning rate; then linear decay to zero."""
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    """Clip the global gradient norm to this value; `null` disables clipping."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute precision of forward/backward (weights stay fp32). `auto`: bf16 where the device computes it
    natively, fp16 (with a gradient scaler) on GPUs without bf16, else fp32."""
    group_by_length: bool = True
    """Batch rows of similar length together (shuffled in windows of 50 batches) so batches carry little padding."""
    eval_every: int | None = Field(None, ge=1)
    """Evaluate on the validation splits every this many steps (and at the end);
    `null`: no evaluation during training."""
    early_stopping_metric: str = "mean"
    """Metric that picks the best checkpoint: `<task>.<metric>` (e.g. `ner.f1`) or `mean` (mean of each task's
    accuracy, or F1 for token tasks)."""
    early_stopping_patience: int | None = Field(None, ge=1)
    """Stop after this many evaluations without improvement; `null`: never stop early (the best step is still kept)."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Write a resumable checkpoint every this many steps; a re-run of the same command resumes from the last one."""
    keep_checkpoints: int = Field(2, ge=1)
    """How many of the newest checkpoints to keep on disk."""
    freeze_policy: str = "none"
    """Which parameters train. `none`: all. `all`: nothing (the model is evaluated as it is). `backbone`: projection
    and heads only. `head:<task>` (comma-separated for several): that head is frozen. `top:<k>`: the top k encoder
    layers, projection and heads. `gradual`: heads first, then one more encoder layer group from the top every
    `unfreeze_every` steps (ULMFiT). `lora`: LoRA adapters on the encoder (see `lora`), projection and heads."""
    unfreeze_every: int | None = Field(None, ge=1)
    """`gradual` only (ignored by other policies, so one config serves a comparison): steps between unfreezing the
    next layer group; `null`: one epoch of the largest task."""
    layerwise_lr_decay: float | None = Field(None, gt=0.0, le=1.0)
    """Discriminative learning rates (any policy): encoder layer l of L gets `learning_rate · decay^(L−l)`, the
    embeddings `learning_rate · decay^L`; `null` or 1: one rate for the whole encoder."""
    lora: LoraSettings = LoraSettings()
    """Adapter settings for `freeze_policy: lora`."""
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    """Keep an exponential moving average of the weights, updated after every optimizer step with this decay
    (0.999 averages over roughly the last 1,000 steps; early steps use `min(decay, (1+t)/(10+t))`), and evaluate,
    select and save the averaged weights instead of the raw ones. Late in training the raw weights wander from
    batch to batch, so a step chosen on a small validation split is partly luck; the average is steadier.
    `null`: off."""
    seed: int = 42
    """Seed of initialisation, dropout, batch order and task sampling."""

    @field_validator("freeze_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        parse_freeze_policy(value)  # raises with the list of valid policies
        return value

    @model_validator(mode="after")
    def _early_stopping_needs_evaluation(self) -> TrainConfig:
        if self.early_stopping_patience is not None and self.eval_every is None:
            raise ValueError("train.early_stopping_patience needs train.eval_every (evaluations to compare)")
        if self.early_stopping_metric != "mean" and self.early_stopping_metric.count(".") != 1:
            raise ValueError(
                f"train.early_stopping_metric must be `mean` or `<task>.<metric>`, got {self.early_stopping_metric!r}"
            )
        return self


class EvaluateConfig(StrictModel):
    """Step 4: metrics."""

    split: SplitName = "test"
    """Which split the metrics are computed on."""
    batch_size: int = Field(64, ge=1)
    """Examples per forward pass."""


class EmbedConfig(StrictModel):
    """Step 5: embedding a corpus for downstream consumers."""

    corpus: str | None = None
    """Rows with an id and a text: a CSV, JSONL or Parquet file, a folder of them, or `hf:<name>[/<config>][:<split>]`;
    relative to the data directory. `null` skips the step."""
    id_column: str = "id"
    """Column with the row id, copied unchanged (value and Arrow type) to the output."""
    text_column: str = "text"
    """Column with the text to embed. A Parquet corpus that also has an `input_ids` column (token ids from this
    model's tokenizer) is embedded from those ids without tokenizing again."""
    batch_size: int = Field(64, ge=1)
    """Texts per forward pass at most (rows are sorted by length within a window so batches carry little padding)."""
    batch_tokens: int | None = Field(None, ge=1)
    """Padded tokens (rows × longest row) per forward pass at most, so a batch of long texts is cut to fewer rows and
    peak memory does not depend on how long the corpus's longest texts are. None: 2,048 on a CPU (same speed as
    uncapped there, an eighth of the activation memory), no cap on a GPU."""
    sort_window: int = Field(4096, ge=1)
    """Rows read, tokenized and length-sorted together; bounds memory, whatever the corpus size."""
    rows_per_shard: int = Field(100_000, ge=1)
    """Rows per output file `part-NNNNN.parquet`; a shard is the unit of resumption and of fan-out to workers."""
    include_text: bool = False
    """Also write the text column next to the embedding."""
    outputs: list[str] = Field(default_factory=lambda: ["embedding"], min_length=1)
    """What each output row carries, from one forward pass: `embedding` and/or the name of any head of the model.
    A sentence head `topic` adds `topic` (the label's name) and `topic_score` (its probability); a token head `ner`
    adds `ner`, the entities as `list<struct<start, end, label, text, score>>` with character offsets into the
    text. Default: the embedding only (what consumers of earlier versions read, at full speed); the bundled
    configs ask for every head."""
    include_probs: bool = False
    """With sentence heads in `outputs`: also `<head>_probs`, every class's probability (`fixed_size_list<float32>`,
    class order in the shard metadata and the manifest under `heads`)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 where the device computes it natively (fp16 on GPUs without bf16) when, on the corpus's first rows,
    it passes the tier's gates against fp32 (every cosine ≥ 0.9999, top-10 neighbour overlap ≥ 0.99:
    `mtl_model.embed.tiers`); otherwise fp32. The choice and the measured gates are in the manifest."""
    allow_duplicate_ids: bool = False
    """Accept a corpus in which an id occurs on more than one row. By default every duplicated id is reported (with
    the file and row of each occurrence) and nothing is written, since consumers join embeddings on the id."""


class RemoteTrainingConfig(StrictModel):
    """Where training goes when a GPU worker is online (`--gpu auto|require`; see README "GPU worker")."""

    work_pool: str = "gpu"
    """Prefect work pool whose workers have GPUs. Training goes there when the pool has an ONLINE worker."""
    deployment: str = "mtl-train/train-gpu"
    """`<flow name>/<deployment name>` of the training flow deployed to that pool (see prefect.yaml)."""
    shared_dir: str | None = None
    """Folder that this process and the GPU workers both see (a shared volume, NFS, the same disk): tokenized
    data goes in, the trained model comes back. Without it, training stays in-process."""
    start_timeout_s: float = Field(600.0, gt=0.0)
    """How long the training run may stay Scheduled or Late before it is cancelled and training runs in-process
    (with `--gpu require`: before the pipeline fails)."""
    run_timeout_s: float | None = Field(21_600.0, gt=0.0)
    """How long a started training run may take before it is cancelled (its worker stops it) and the pipeline
    fails; `null`: no limit. Also bounds the wait on a worker that died mid-run."""
    poll_interval_s: float = Field(5.0, gt=0.0)
    """Seconds between state checks of the training run."""

    @field_validator("deployment")
    @classmethod
    def _flow_slash_deployment(cls, value: str) -> str:
        if value.count("/") != 1 or not all(value.split("/")):
            raise ValueError(f"remote_training.deployment must be `<flow name>/<deployment name>`, got {value!r}")
        return value


class PipelineConfig(StrictModel):
    """The whole pipeline: data, model, and one section per step."""

    name: str = "default"
    """Name of the run; the default output folder is `runs/<name>`."""
    data_dir: str | None = None
    """Folder that relative data paths start from; relative to this config file. Default: the config's folder."""
    tasks: list[TaskSpec]
    """The tasks the model learns, each with its own head."""
    tokenize: TokenizeConfig = TokenizeConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    embed: EmbedConfig = EmbedConfig()
    remote_training: RemoteTrainingConfig = RemoteTrainingConfig()

    @model_validator(mode="after")
    def _cross_field_checks(self) -> PipelineConfig:
        names = [task.name for task in self.tasks]
        if not names:
            raise ValueError("tasks: at least one task is required")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tasks: duplicate task names {duplicates}")
        head_names = names + [f"{task.name}{TAGS_SUFFIX}" for task in self.tasks if task.kind == "joint"]
        if len(set(head_names)) != len(head_names):
            raise ValueError(
                f"tasks: a joint task's token head `<name>{TAGS_SUFFIX}` collides with a task name: {head_names}"
            )
        policy = parse_freeze_policy(self.train.freeze_policy)
        unknown = sorted(set(policy.frozen_heads) - set(head_names))
        if unknown:
            raise ValueError(f"train.freeze_policy: head(s) {unknown} name no task; heads are {head_names}")
        if self.model.backbone == SCRATCH_BACKBONE and self.tokenize.max_seq_length > self.model.scratch.max_positions:
            raise ValueError(
                f"tokenize.max_seq_length {self.tokenize.max_seq_length} exceeds model.scratch.max_positions "
                f"{self.model.scratch.max_positions} (the encoder's position table)"
            )
        targets = set(self.train.lora.target_modules or [])
        if self.model.backbone == SCRATCH_BACKBONE and targets - set(SCRATCH_LORA_TARGETS):
            raise ValueError(
                f"train.lora.target_modules {sorted(targets)}: the scratch encoder's adaptable layers are "
                f"{sorted(SCRATCH_LORA_TARGETS)} (PyTorch's attention uses its projection weights directly, "
                "so LoRA cannot wrap them)"
            )
        if self.train.eval_every is not None and not any(
            "validation" in task.files
            or ("all" in task.files and task.split.validation_fraction > 0)
            or task.validation_from_train > 0
            for task in self.tasks
        ):
            raise ValueError(
                "train.eval_every: no task has a validation split (give a task a `validation` file, or an `all` file "
                "with split.validation_fraction > 0), or leave train.eval_every unset"
            )
        if self.model.backbone == SCRATCH_BACKBONE:
            check_encoder_fits(self, layers=self.model.scratch.num_layers, positions=None, source="model.scratch")
        metric_task = self.train.early_stopping_metric.split(".")[0]
        if self.train.early_stopping_metric != "mean" and metric_task not in head_names:
            raise ValueError(f"train.early_stopping_metric: task {metric_task!r} is not one of {head_names}")
        return self

    def resolve_data_path(self, relative: str, config_dir: Path) -> Path | str:
        """A data path as the user means it: absolute, or under `data_dir` (itself relative to the config).
        Hugging Face sources (`hf:…`) pass through unchanged."""
        if is_hub_source(relative):
            return relative
        path = Path(relative).expanduser()
        if path.is_absolute():
            return path
        base = Path(self.data_dir).expanduser() if self.data_dir else Path(".")
        if not base.is_absolute():
            base = config_dir / base
        return (base / path).resolve()


def check_encoder_fits(config: PipelineConfig, *, layers: int | None, positions: int | None, source: str) -> None:
    """Settings that depend on the encoder's shape, checked before anything is written: `top:<k>` needs k layers,
    `tokenize.max_seq_length` must fit the position table."""
    policy = parse_freeze_policy(config.train.freeze_policy)
    if policy.kind == "top" and layers is not None and policy.top_layers > layers:
        raise ValueError(
            f"train.freeze_policy top:{policy.top_layers} asks for more layers than the encoder's {layers} ({source})"
        )
    if positions is not None and config.tokenize.max_seq_length > positions:
        raise ValueError(
            f"tokenize.max_seq_length {config.tokenize.max_seq_length} exceeds the encoder's {positions} positions "
            f"({source}); use at most {positions}"
        )


def check_backbone_fits(config: PipelineConfig) -> None:
    """`check_encoder_fits` for a pretrained backbone, from its `config.json` (read only; a hub id that is not
    available locally is checked when it loads)."""
    if config.model.backbone == SCRATCH_BACKBONE:
        return
    folder = Path(resolve_backbone(config.model.backbone))
    if not (folder / "config.json").is_file():
        return
    encoder = json.loads((folder / "config.json").read_text())
    layers = encoder.get("num_hidden_layers", encoder.get("num_layers"))
    check_encoder_fits(
        config, layers=layers, positions=encoder.get("max_position_embeddings"), source=str(folder / "config.json")
    )


def default_config_path() -> Path:
    """The bundled default config (sample data, bundled backbone)."""
    return Path(__file__).resolve().parent.parent / "data" / "configs" / "default.yaml"


def load_pipeline_config(path: str | Path | None = None) -> tuple[PipelineConfig, Path]:
    """Read and validate a YAML config; returns it with the folder its relative paths start from."""
    config_path = Path(path) if path else default_config_path()
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    try:
        raw = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping at the top level")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
    return config, config_path.resolve().parent


class RunPlan(StrictModel):
    """A validated config with every path resolved: what one pipeline run will read and write."""

    config: PipelineConfig
    """The config, with overrides applied and validated again."""
    out_dir: str
    """Absolute output folder."""
    files: dict[str, dict[str, str]]
    """Task → split → resolved data file (or `hf:` source)."""
    corpus: str | None
    """The resolved corpus to embed, if any."""


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a config dict; the value is parsed as YAML (numbers, booleans, null, lists)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. train.max_steps=500), got {item!r}")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"--set {item!r}: {key.rsplit('.', 1)[0]!r} is not a config section")
        node = node[part]
    node[leaf] = yaml.safe_load(value)


def plan_run(options: RunOptions, *, freeze_policy: str | None = None, extra_overrides: Sequence[str] = ()) -> RunPlan:
    """Load the options' config, apply its overrides (then `extra_overrides`), re-validate, and resolve all paths.

    Overrides are `section.field=value` strings (value parsed as YAML), e.g. `train.max_steps=500`.
    `options.only_tasks` keeps just the named tasks (e.g. a single-task run of a multi-task config).
    """
    config, config_dir = load_pipeline_config(options.config_path)
    raw = config.model_dump()
    for item in [*options.overrides, *extra_overrides]:
        apply_override(raw, item)
    if options.data_dir is not None:
        raw["data_dir"] = str(Path(options.data_dir).expanduser().resolve())  # a CLI path is relative to the CWD
    if freeze_policy is not None:
        raw["train"]["freeze_policy"] = freeze_policy
    only_tasks = options.only_tasks
    if only_tasks:
        known = [task["name"] for task in raw["tasks"]]
        unknown = sorted(set(only_tasks) - set(known))
        if unknown:
            raise ConfigError(f"--tasks: {unknown} name no task; tasks are {known}")
        raw["tasks"] = [task for task in raw["tasks"] if task["name"] in only_tasks]
    try:
        config = PipelineConfig.model_validate(raw)
        check_backbone_fits(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    files = {
        task.name: {split: str(config.resolve_data_path(path, config_dir)) for split, path in task.files.items()}
        for task in config.tasks
    }
    corpus = str(config.resolve_data_path(config.embed.corpus, config_dir)) if config.embed.corpus else None
    out_dir = Path(options.out).expanduser() if options.out else Path("runs") / config.name
    return RunPlan(config=config, out_dir=str(out_dir.resolve()), files=files, corpus=corpus)
