"""A task's data as the model sees it: splits of validated examples and the task's label set."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from mtl_model.config import SplitSpec, TaskSpec
from mtl_model.errors import DataValidationError, Problem
from mtl_model.readers import (
    LabelSpace,
    ReadResult,
    TextExample,
    TokenExample,
    format_label_space,
    read_ag_news,
    read_conll,
    read_glue_tsv,
    read_hf_dataset,
    read_table,
)


@dataclass
class TaskData:
    """Validated splits of one task, its label list (head order) and per-file read reports."""

    spec: TaskSpec
    splits: dict[str, list]
    labels: list[str]  # sentence labels, or tags of a token task
    reports: list[dict] = field(default_factory=list)
    tag_labels: list[str] | None = None  # tags of a joint task


def read_task_file(spec: TaskSpec, path: Path | str, split: str = "train") -> ReadResult:
    """Dispatch on the task's configured format."""
    token_columns = (
        {"tokens_column": spec.tokens_column, "tags_column": spec.tags_column} if spec.kind != "sentence" else {}
    )
    label_column = None if spec.kind == "token" else spec.label_column
    if spec.format == "hf":
        return read_hf_dataset(
            str(path), split=split, text_column=spec.text_column, label_column=label_column, **token_columns
        )
    if spec.format == "conll":
        return read_conll(path, tag_column=spec.tag_column, tag_scheme=spec.tag_scheme, invalid_bio=spec.invalid_bio)
    if spec.format == "glue_tsv":
        return read_glue_tsv(path, text_column=spec.text_column, label_column=spec.label_column)
    if spec.format == "ag_news":
        return read_ag_news(path)
    return read_table(
        path,
        fmt=spec.format,
        text_column=spec.text_column,
        label_column=label_column,
        id_column=spec.id_column,
        **token_columns,
    )


def _sentence_labels(example: TextExample | TokenExample) -> list[str]:
    return [] if example.label is None else [example.label]


def _tags(example: TextExample | TokenExample) -> list[str]:
    return example.tags if isinstance(example, TokenExample) else []


def _tag_set(configured: list[str] | None, train: list) -> list[str]:
    """Configured tags, else O plus the B-/I- pair of every entity type seen in training."""
    if configured is not None:
        return list(configured)
    types = {tag[2:] for example in train for tag in _tags(example) if tag != "O"}
    return ["O"] + sorted((f"{prefix}-{kind}" for kind in types for prefix in "BI"), key=lambda tag: (tag[2:], tag[0]))


def _label_set(configured: list[str] | None, train: list) -> list[str]:
    """Configured labels, else the sorted training labels (numerically when they are numbers)."""
    if configured is not None:
        return list(configured)
    seen = {label for example in train for label in _sentence_labels(example)}
    return sorted(seen, key=lambda label: (len(label), label) if label.isdigit() else (0, label))


def _stratum(example: TextExample | TokenExample) -> str:
    """What a split stratifies by: the label, or a token example's first entity type."""
    if example.label is not None:
        return example.label
    return next((tag[2:] for tag in _tags(example) if tag != "O"), "O")


def stratified_split(examples: list[TextExample | TokenExample], spec: SplitSpec) -> dict[str, list]:
    """Seeded split into train/validation/test, stratified by label (token tasks: by first entity type)."""
    from sklearn.model_selection import train_test_split

    keys = [_stratum(example) for example in examples]
    stratify_ok = min(Counter(keys).values()) >= 3
    rest, test = train_test_split(
        examples, test_size=spec.test_fraction, random_state=spec.seed, stratify=keys if stratify_ok else None
    )
    if spec.validation_fraction == 0:
        return {"train": rest, "validation": [], "test": test}
    rest_keys = [_stratum(example) for example in rest]
    train, validation = train_test_split(
        rest,
        test_size=spec.validation_fraction / (1 - spec.test_fraction),
        random_state=spec.seed,
        stratify=rest_keys if stratify_ok else None,
    )
    return {"train": train, "validation": validation, "test": test}


def carve_validation(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded share of a training file set aside, stratified like `stratified_split`."""
    from sklearn.model_selection import train_test_split

    keys = [_stratum(example) for example in examples]
    stratify = keys if min(Counter(keys).values()) >= 2 else None
    train, validation = train_test_split(examples, test_size=fraction, random_state=seed, stratify=stratify)
    return train, validation


def carve_whole_texts(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation) with no text shared: validation rows are whole texts (contained in no other row), drawn
    in seeded order; every row that is a word span of a held-out text leaves training, until held-out plus dropped
    rows reach `fraction` of the rows. Rows contain each other as word spans in phrase-level files such as SST-2's."""
    import random

    texts = [_plain_text(example) for example in examples]
    rows_of: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        rows_of.setdefault(text, []).append(index)
    joined = "\n" + "\n".join(texts) + "\n"  # every row between newlines, so a whole-row match is "\n<text>\n"
    budget = round(fraction * len(examples))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    removed: set[int] = set()
    validation: list[int] = []
    for index in order:
        if len(removed) >= budget:
            break
        if index in removed or not texts[index] or _inside_another_row(texts[index], joined):
            continue
        validation.append(index)
        words = texts[index].split(" ")
        spans = {" ".join(words[start:end]) for start in range(len(words)) for end in range(start + 1, len(words) + 1)}
        removed.update(row for span in spans for row in rows_of.get(span, ()))
    train = [example for index, example in enumerate(examples) if index not in removed]
    return train, [examples[index] for index in sorted(validation)]


def attach_document_context(examples: list[TokenExample], words: int) -> list[TokenExample]:
    """Give each sentence up to `words` words of its document's neighbouring sentences on each side, in file order.

    Why: a name's type is often clear only from another sentence of the same article ("Leicestershire" the county
    cricket club vs the place); BERT's CoNLL-2003 results use document context. Sentences of different documents,
    or of a file that marks none (`document` None), never share context.
    """
    with_context: list[TokenExample] = []
    for index, example in enumerate(examples):
        if example.document is None:
            with_context.append(example)
            continue
        before: list[str] = []
        cursor = index - 1
        while len(before) < words and cursor >= 0 and examples[cursor].document == example.document:
            before = examples[cursor].tokens + before
            cursor -= 1
        after: list[str] = []
        cursor = index + 1
        while len(after) < words and cursor < len(examples) and examples[cursor].document == example.document:
            after = after + examples[cursor].tokens
            cursor += 1
        with_context.append(
            replace(example, context_before=tuple(before[-words:]), context_after=tuple(after[:words]))
        )
    return with_context


def _plain_text(example: TextExample | TokenExample) -> str:
    """A row's words joined by single spaces: the form in which one row can be a word span of another."""
    words = example.tokens if isinstance(example, TokenExample) else example.text.split()
    return " ".join(words)


def _inside_another_row(text: str, joined: str) -> bool:
    """Whether `text` occurs in `joined` anywhere but as a whole row of its own."""
    start = joined.find(text)
    while start != -1:
        end = start + len(text)
        if joined[start - 1] != "\n" or joined[end] != "\n":
            return True
        start = joined.find(text, start + 1)
    return False


def _where(example: TextExample | TokenExample, result: ReadResult) -> str:
    """The example's place as its reader named it: `line 12`, `line 3 (id b)`, `row 7`."""
    for prefix in (result.path, Path(result.path).name):
        if example.row_id.startswith(prefix + ":"):
            where = example.row_id[len(prefix) + 1 :]
            break
    else:
        where = example.row_id.split(":", 1)[-1]
    return f"line {where}" if where.isdigit() else where


def _entity_types(example: TextExample | TokenExample) -> set[str]:
    return {tag[2:] for tag in _tags(example) if tag != "O"}


def load_task_data(spec: TaskSpec, paths: dict[str, Path | str], *, on_invalid: str = "fail") -> TaskData:
    """Read every file of a task, check labels against the label set, and split when given one file.

    All problems of all files are collected before failing, so the user sees them at once.
    With `on_invalid="skip"`, bad rows are dropped and counted instead.

    When the config declares no `labels` (a joint task's tags: no `tag_labels`), the label set comes from the
    training split, and a typo there must not become a class of its own:
    - a label outside the format's own label space (`format_label_space`: AG News 1..N, SST-2 0/1) is a problem
      in every split;
    - in formats without one, a training label in fewer than `spec.min_label_count` training examples, or a tag
      whose entity type is in fewer training sentences (B-X and I-X count together, as they make the type's
      classes), is a problem at each occurrence (each entity's first word for tags); it is left out of the label
      set, so the same label in another split is reported there as not in the label set.
    """
    results = {
        split: read_task_file(spec, path, "train" if split == "all" else split) for split, path in paths.items()
    }
    problems = [p for r in results.values() for p in r.problems]
    problems += [
        Problem(r.path, "", "file has no label column; every split of a task must be labelled")
        for r in results.values()
        if not r.labelled
    ]
    rules = _label_rules(spec, results, paths)
    for split, result in results.items():
        problems.extend(_drop_invalid_labels(result, rules, split))
        result.problems = [p for p in problems if p.path == result.path]

    if problems and on_invalid == "fail":
        raise DataValidationError(problems)
    if len(rules.labels) < 2:
        train_path = results[rules.train_key].path
        raise DataValidationError(
            [Problem(train_path, "", f"task {spec.name!r} needs at least 2 labels, found {rules.labels}")]
        )
    return TaskData(
        spec=spec,
        splits=_task_splits(spec, results),
        labels=rules.labels,
        reports=[r.summary() for r in results.values()],
        tag_labels=rules.tag_labels,
    )


@dataclass
class _LabelRules:
    """What a task's labels may be: the label sets (head order) and, when the config declares none, what the
    training split shows to be too rare to be a class (a typo). See `load_task_data`."""

    spec: TaskSpec
    train_key: str  # "all" (one file, split later) or "train"
    labels: list[str]  # sentence labels, or tags of a token task
    tag_labels: list[str] | None  # tags of a joint task
    spaces: dict[str, LabelSpace | None]  # each split's format label space, where that rule applies
    rare_labels: dict[str, int]  # label -> training examples, when fewer than min_label_count
    rare_types: dict[str, int]  # entity type -> training sentences, when fewer than min_label_count

    @property
    def allowed_labels(self) -> set[str]:
        return set() if self.spec.kind == "token" else set(self.labels)

    @property
    def allowed_tags(self) -> set[str]:
        return set(self.labels) if self.spec.kind == "token" else set(self.tag_labels or [])

    def rare_label(self, label: str) -> str:
        return (
            f"label {label!r} is in only {self.rare_labels[label]} training example(s), fewer than min_label_count "
            f"{self.spec.min_label_count}: a typo? If it is a real class, declare the task's labels with `labels:` "
            "in the config"
        )

    def rare_tag(self, tag: str) -> str:
        kind, tags_field = tag[2:], "tag_labels" if self.spec.kind == "joint" else "labels"
        return (
            f"tag {tag!r}: entity type {kind!r} is in only {self.rare_types[kind]} training sentence(s), fewer than "
            f"min_label_count {self.spec.min_label_count}: a typo? If it is a real type, declare the task's tags "
            f"with `{tags_field}:` in the config"
        )


def _label_rules(spec: TaskSpec, results: dict[str, ReadResult], paths: dict[str, Path | str]) -> _LabelRules:
    """The label sets and the too-rare labels, counted on the training examples whose labels fit the format."""
    train_key = "all" if "all" in results else "train"
    sentence_rule = spec.kind != "token" and spec.labels is None
    tag_rule = spec.kind != "sentence" and (spec.tag_labels if spec.kind == "joint" else spec.labels) is None
    spaces = {split: format_label_space(spec.format, paths[split]) if sentence_rule else None for split in results}
    train_space = spaces[train_key]
    train = [
        example
        for example in results[train_key].examples
        if train_space is None or all(label in train_space.labels for label in _sentence_labels(example))
    ]
    minimum = spec.min_label_count
    label_counts = Counter(label for example in train for label in _sentence_labels(example))
    type_counts = Counter(kind for example in train for kind in _entity_types(example))
    rare_labels = {}  # a format's own label space declares its labels: none of them is a typo however rare
    if sentence_rule and train_space is None:
        rare_labels = {label: n for label, n in label_counts.items() if n < minimum}
    rare_types = {kind: n for kind, n in type_counts.items() if n < minimum} if tag_rule else {}

    def common(tags: list[str]) -> list[str]:
        return [tag for tag in tags if tag == "O" or tag[2:] not in rare_types]

    if spec.kind == "token":
        labels = common(_tag_set(spec.labels, train))
    else:
        labels = [label for label in _label_set(spec.labels, train) if label not in rare_labels]
    tag_labels = common(_tag_set(spec.tag_labels, train)) if spec.kind == "joint" else None
    return _LabelRules(spec, train_key, labels, tag_labels, spaces, rare_labels, rare_types)


def _drop_invalid_labels(result: ReadResult, rules: _LabelRules, split: str) -> list[Problem]:
    """Drop (and count as rejected) each example of one file that has a label problem; return the problems."""
    problems: list[Problem] = []
    kept = []
    for example in result.examples:
        found = _label_problems(example, _where(example, result), rules, split)
        if found:
            problems.extend(Problem(result.path, location, message) for location, message in found)
            result.rows_rejected += 1
        else:
            kept.append(example)
    result.examples = kept
    return problems


def _label_problems(
    example: TextExample | TokenExample, where: str, rules: _LabelRules, split: str
) -> list[tuple[str, str]]:
    """(location, message) for each label problem of one example; each label or tag is reported once."""
    space, in_train = rules.spaces[split], split == rules.train_key
    found: list[tuple[str, str]] = []
    flagged: set[str] = set()
    for label in _sentence_labels(example):
        if space is not None and label not in space.labels:
            found.append((where, space.problem(label)))
            flagged.add(label)
        elif in_train and label in rules.rare_labels:
            found.append((where, rules.rare_label(label)))
            flagged.add(label)
    tags = _tags(example)
    for index, tag in enumerate(tags):
        if not in_train or tag == "O" or tag[2:] not in rules.rare_types:
            continue
        flagged.add(tag)
        if tag.startswith("B-") or index == 0 or tags[index - 1][2:] != tag[2:]:  # each entity once
            if example.lines is not None:
                found.append((f"line {example.lines[index]}", rules.rare_tag(tag)))
            else:
                found.append((where, f"word {index + 1}: {rules.rare_tag(tag)}"))
    unknown = {label for label in _sentence_labels(example) if label not in rules.allowed_labels}
    unknown |= {tag for tag in tags if tag not in rules.allowed_tags}
    if unknown - flagged:
        label_set = rules.labels + (rules.tag_labels or [])
        found.append((where, f"label(s) {sorted(unknown - flagged)} not in the label set {label_set}"))
    return found


def _task_splits(spec: TaskSpec, results: dict[str, ReadResult]) -> dict[str, list]:
    """Validated examples by split: one file split, or a validation split carved from training, as configured."""
    if spec.document_context_words > 0:  # before any split or carve: context follows the file's order
        for result in results.values():
            result.examples = attach_document_context(result.examples, spec.document_context_words)
    if "all" in results:
        return stratified_split(results["all"].examples, spec.split)
    splits = {split: result.examples for split, result in results.items()}
    if spec.validation_from_train > 0:
        carve = carve_whole_texts if spec.validation_whole_texts else carve_validation
        splits["train"], splits["validation"] = carve(splits["train"], spec.validation_from_train, spec.split.seed)
    return splits
