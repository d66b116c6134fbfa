"""Readers for labelled text in the formats users already have, validating as they read.

Every reader returns all examples it could accept plus every problem it found, each with file and
line (or row id), so one run reports everything wrong with a file. Rules for known quirks of real
files are explicit here and counted in `ReadResult.notes`, never silent:

- U+FEFF (byte-order mark) characters inside a file are removed; a line holding only U+FEFF is a
  blank line (WNUT-17's dev file ends with one, and one of its tokens carries one).
- AG News: a backslash before `$` is an escape and is dropped; any other backslash stands for a line
  break and becomes a space. HTML leftovers (` #39;`, `&lt;`) are unescaped. Text is title + " " +
  description.
- CoNLL `-DOCSTART-` lines are document separators, not sentences.
- Formats that define their labels say so (`format_label_space`): AG News class indices 1..N (N from a
  `classes.txt` beside the file, else 4), GLUE TSV SST-2's 0/1. `task_data` holds labels to them when the
  task config declares no `labels`.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mtl_model.errors import Problem
from mtl_model.io import HF_PREFIX

BOM = "\ufeff"
_TAG_RE = re.compile(r"^(O|[BI]-\S+)$")
_AG_ENTITY_RE = re.compile(r" #(\d+);")
_WHITESPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextExample:
    """A text with one label (or none, for unlabelled files)."""

    row_id: str
    text: str
    label: str | None


@dataclass(frozen=True)
class TokenExample:
    """A sentence as words with one BIO tag per word; joint data also carries a sentence label."""

    row_id: str
    tokens: list[str]
    tags: list[str]
    label: str | None = None
    lines: list[int] | None = field(default=None, compare=False, repr=False)
    """The file line of each word, where the format has one word per line (CoNLL), for problems about one tag."""
    document: int | None = field(default=None, compare=False, repr=False)
    """Which document of its file the sentence belongs to (CoNLL files with `-DOCSTART-` lines count them from
    1); None where the file marks no documents. Only `TaskSpec.document_context_words` uses it."""
    context_before: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Words of the preceding sentences of the same document, nearest last: encoder input only, never labelled."""
    context_after: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Words of the following sentences of the same document, nearest first: encoder input only, never labelled."""


@dataclass
class ReadResult:
    """What a reader accepted, what it found wrong, and counts that reconcile."""

    path: str
    examples: list = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows_read: int = 0
    rows_rejected: int = 0
    labelled: bool = True
    notes: Counter = field(default_factory=Counter)

    @property
    def rows_accepted(self) -> int:
        return len(self.examples)

    def reject(self, location: str, message: str) -> None:
        self.problems.append(Problem(self.path, location, message))

    def summary(self) -> dict:
        return {
            "path": self.path,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "problems": len(self.problems),
            "notes": dict(self.notes),
        }


def _decoded_lines(path: Path, result: ReadResult) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for each line; undecodable lines are reported with their byte offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.reject("", f"cannot read file: {exc.strerror or exc}")
        return
    offset = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file's final newline does not start another line
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.reject(
                f"line {number}", f"not valid UTF-8 (byte offset {offset + exc.start}: 0x{raw[exc.start]:02x})"
            )
            result.rows_read += 1
            result.rows_rejected += 1
        else:
            yield number, text.removesuffix("\r")
        offset += len(raw) + 1


def _strip_bom(text: str, result: ReadResult, note: str) -> str:
    if BOM in text:
        result.notes[note] += 1
        return text.replace(BOM, "")
    return text


def _label_problem(value: object) -> str | None:
    if value is None:
        return "label is missing"
    if isinstance(value, float) and math.isnan(value):
        return "label is NaN"
    if isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null"):
        return f"label is missing or NaN ({value!r})"
    return None


def _label_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ---------------------------------------------------------------------------------------------- CoNLL


def iob1_to_bio(tags: list[str]) -> list[str]:
    """IOB1 uses I- inside entities and B- only between two adjacent same-type entities;
    BIO starts every entity with B-."""
    converted = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            converted.append("B-" + tag[2:])
        else:
            converted.append(tag)
        previous = tag
    return converted


def repair_bio(tags: list[str]) -> tuple[list[str], int]:
    """conlleval's reading of a broken sequence: an I-X that does not continue an X entity starts one (B-X).
    Returns the repaired tags and how many were changed."""
    repaired, changed, previous = [], 0, "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            repaired.append("B-" + tag[2:])
            changed += 1
        else:
            repaired.append(tag)
        previous = tag
    return repaired, changed


def bio_problems(tags: list[str]) -> list[tuple[int, str]]:
    """(index, message) for each tag that breaks BIO: malformed, or I-X not after B-X/I-X."""
    found = []
    previous = "O"
    for index, tag in enumerate(tags):
        if not _TAG_RE.match(tag):
            found.append((index, f"tag {tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)"))
        elif tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            found.append(
                (index, f"tag {tag!r} follows {previous!r}: not valid BIO (IOB1 files need tag_scheme: iob1)")
            )
        previous = tag
    return found


@dataclass
class _ConllSentence:
    """The words of one CoNLL sentence as read so far, with their line numbers and the sentence's problems."""

    tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, token: str, tag: str, line: int) -> None:
        self.tokens.append(token)
        self.tags.append(tag)
        self.lines.append(line)


def read_conll(
    path: str | Path, *, tag_column: int = -1, tag_scheme: str = "bio", invalid_bio: str = "error"
) -> ReadResult:
    """CoNLL column files: one `token ... tag` line per word, blank lines between sentences.

    `invalid_bio="repair"` turns an I-X that continues no X entity into B-X (counted in notes as
    `bio_tags_repaired`) instead of rejecting the sentence.
    """
    path = Path(path)
    result = ReadResult(str(path))
    expected_columns: int | None = None
    sentence = _ConllSentence()
    document: int | None = None  # numbered from -DOCSTART- lines; None in files without them

    def flush() -> None:
        nonlocal sentence
        _finish_conll_sentence(result, path.name, sentence, document, tag_scheme, invalid_bio)
        sentence = _ConllSentence()

    for number, line in _decoded_lines(path, result):
        if line.strip() == BOM:
            result.notes["bom_only_lines_treated_as_blank"] += 1
            line = ""
        if not line.strip():
            flush()
            continue
        columns = line.split()
        if columns[0] == "-DOCSTART-":
            flush()
            result.notes["docstart_lines"] += 1
            document = (document or 0) + 1
            continue
        if expected_columns is None:
            expected_columns = len(columns)
            if expected_columns < 2:
                result.reject(f"line {number}", "expected at least 2 columns (token ... tag), found 1")
        where = f"line {number}"
        if len(columns) != expected_columns:
            sentence.problems.append(
                Problem(result.path, where, f"expected {expected_columns} columns, found {len(columns)}")
            )
            sentence.add(columns[0], "O", number)
            continue
        token = _strip_bom(columns[0], result, "bom_stripped_from_tokens")
        if not token:
            sentence.problems.append(Problem(result.path, where, "token is empty"))
        try:
            tag = columns[tag_column]
        except IndexError:
            tag = "O"
            sentence.problems.append(Problem(result.path, where, f"no column {tag_column} for the tag"))
        sentence.add(token, tag, number)
    flush()
    return result


def _finish_conll_sentence(
    result: ReadResult,
    file_name: str,
    sentence: _ConllSentence,
    document: int | None,
    tag_scheme: str,
    invalid_bio: str,
) -> None:
    """Check a finished sentence's tags (after IOB1 → BIO and any repair) and keep it, or reject it with every
    problem it has. A blank line after a blank line is no sentence."""
    if not sentence.tokens and not sentence.problems:
        return
    result.rows_read += 1
    tags = iob1_to_bio(sentence.tags) if tag_scheme == "iob1" else sentence.tags
    if invalid_bio == "repair" and all(_TAG_RE.match(tag) for tag in tags):
        tags, changed = repair_bio(tags)
        if changed:
            result.notes["bio_tags_repaired"] += changed
    problems = sentence.problems + [
        Problem(result.path, f"line {sentence.lines[index]}", message) for index, message in bio_problems(tags)
    ]
    if problems:
        result.problems.extend(problems)
        result.rows_rejected += 1
        return
    row_id = f"{file_name}:{sentence.lines[0]}"
    result.examples.append(TokenExample(row_id, sentence.tokens, tags, lines=sentence.lines, document=document))


# ------------------------------------------------------------------------------------------ GLUE TSV


def read_glue_tsv(path: str | Path, *, text_column: str = "sentence", label_column: str = "label") -> ReadResult:
    """Tab-separated with a header row (GLUE). A file without the label column is read as unlabelled."""
    path = Path(path)
    result = ReadResult(str(path))
    header: list[str] | None = None
    for number, line in _decoded_lines(path, result):
        line = _strip_bom(line, result, "bom_stripped")
        if header is None:
            header = line.split("\t")
            if text_column not in header:
                result.reject("line 1", f"header has no text column {text_column!r} (columns: {header})")
                return result
            result.labelled = label_column in header
            if not result.labelled:
                result.notes["unlabelled_file"] = 1
            continue
        result.rows_read += 1
        fields = line.split("\t")
        if len(fields) != len(header):
            result.reject(f"line {number}", f"expected {len(header)} tab-separated columns, found {len(fields)}")
            result.rows_rejected += 1
            continue
        row = dict(zip(header, fields))
        text = row[text_column].strip()
        problems = [] if text else ["text is empty"]
        label = None
        if result.labelled:
            issue = _label_problem(row[label_column])
            if issue:
                problems.append(issue)
            else:
                label = _label_text(row[label_column])
        for message in problems:
            result.reject(f"line {number}", message)
        if problems:
            result.rows_rejected += 1
        else:
            result.examples.append(TextExample(f"{path.name}:{number}", text, label))
    if header is None:
        result.reject("", "file is empty (expected a header row)")
    return result


# ----------------------------------------------------------------------------------------- AG News


def clean_ag_news_text(text: str) -> str:
    """Apply the AG News rules from the module docstring."""
    text = text.replace("\\$", "$").replace("\\", " ")
    text = _AG_ENTITY_RE.sub(lambda match: f"&#{match.group(1)};", text)
    return _WHITESPACE_RE.sub(" ", html.unescape(text)).strip()


def read_ag_news(path: str | Path) -> ReadResult:
    """AG News CSV: no header, `"class","title","description"`, one record per line."""
    path = Path(path)
    result = ReadResult(str(path))
    for number, line in _decoded_lines(path, result):
        result.rows_read += 1
        fields = next(csv.reader([_strip_bom(line, result, "bom_stripped")]), [])
        problems = []
        if len(fields) != 3:
            problems.append(f"expected 3 fields (class, title, description), found {len(fields)}")
        else:
            label, title, description = fields
            if not label.strip().isdigit():
                problems.append(f"class index {label!r} is not a positive integer")
            text = " ".join(part for part in (clean_ag_news_text(title), clean_ag_news_text(description)) if part)
            if not text:
                problems.append("text is empty (title and description)")
        for message in problems:
            result.reject(f"line {number}", message)
        if problems:
            result.rows_rejected += 1
        else:
            result.examples.append(TextExample(f"{path.name}:{number}", text, label.strip()))
    return result


# ------------------------------------------------------------------------- labels a format knows

SST2_LABELS = ("0", "1")
AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


@dataclass(frozen=True)
class LabelSpace:
    """The labels a file format defines by itself, and how to say so in a problem message."""

    labels: tuple[str, ...]
    what: str  # "an AG News class index (1–4)"

    def problem(self, label: str) -> str:
        return (
            f"label {label!r} is not {self.what}; if the data really has other labels, declare them with "
            "`labels:` in the task config"
        )


def format_label_space(fmt: str, path: str | Path) -> LabelSpace | None:
    """The label space of `ag_news` (class indices 1..N for the N lines of a `classes.txt` beside the file, else
    AG News's 4 classes) and of `glue_tsv` (SST-2's 0/1); None for formats that take any label. It applies only
    when the task config declares no `labels`."""
    if fmt == "ag_news":
        classes, source = list(AG_NEWS_CLASSES), "AG News's 4 classes"
        try:
            listed = (Path(path).parent / "classes.txt").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            listed = []  # no classes.txt (or an unreadable one): AG News's own classes
        if any(name.strip() for name in listed):
            classes = [name.strip() for name in listed if name.strip()]
            source = f"the {len(classes)} classes in classes.txt beside the file"
        return LabelSpace(
            tuple(str(i) for i in range(1, len(classes) + 1)), f"a class index 1–{len(classes)} ({source})"
        )
    if fmt == "glue_tsv":
        return LabelSpace(SST2_LABELS, "0 or 1 (SST-2's labels)")
    return None


# ------------------------------------------------------------------------------ CSV, JSONL, Parquet


def _rows(path: Path, fmt: str, result: ReadResult) -> Iterator[tuple[str, dict]]:
    """(location, row) pairs from a generic table file."""
    if fmt == "csv":
        decoded = dict(_decoded_lines(path, result))  # undecodable lines become blank, keeping line numbers
        text_lines = [decoded.get(number, "") for number in range(1, max(decoded, default=0) + 1)]
        reader = csv.DictReader(io.StringIO("\n".join(text_lines) + "\n"))
        try:
            for row in reader:
                if None in row:
                    result.reject(
                        f"line {reader.line_num}", f"more fields than the header's {len(reader.fieldnames or [])}"
                    )
                    row = {k: v for k, v in row.items() if k is not None}
                    row["__bad__"] = True
                yield f"line {reader.line_num}", row
        except csv.Error as exc:
            result.reject(f"line {reader.line_num}", f"CSV parse error: {exc}")
    elif fmt == "jsonl":
        for number, line in _decoded_lines(path, result):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                result.reject(f"line {number}", f"not valid JSON: {exc.msg}")
                result.rows_read += 1
                result.rows_rejected += 1
                continue
            if not isinstance(row, dict):
                result.reject(f"line {number}", "expected a JSON object")
                result.rows_read += 1
                result.rows_rejected += 1
                continue
            yield f"line {number}", row
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            result.reject("", f"cannot read Parquet: {exc}")
            return
        for index, row in enumerate(table.to_pylist()):
            yield f"row {index}", row
    else:
        raise ValueError(f"unknown table format {fmt!r}")


def _validate_rows(
    rows: Iterator[tuple[str, dict]],
    result: ReadResult,
    *,
    path_name: str,
    text_column: str,
    label_column: str | None,
    id_column: str | None,
    tokens_column: str | None = None,
    tags_column: str | None = None,
) -> ReadResult:
    """Shared row checks of table-like sources: ids, empty text, missing/NaN labels, token/tag counts."""
    seen_ids: dict[str, str] = {}
    for location, row in rows:
        result.rows_read += 1
        extra_fields = row.pop("__bad__", False)  # already reported by `_rows`; the row is still rejected
        problems: list[str] = []
        if id_column is not None:
            location = _located_by_id(row, id_column, location, seen_ids, problems)
        row_id = f"{path_name}:{location}"
        example: TextExample | TokenExample | None
        if tokens_column is not None:
            example = _token_row(row, row_id, tokens_column, tags_column, label_column, problems)
        else:
            example = _text_row(row, row_id, text_column, label_column, problems)
        for message in problems:
            result.reject(location, message)
        if problems or extra_fields or example is None:
            result.rows_rejected += 1
        else:
            result.examples.append(example)
    return result


def _located_by_id(row: dict, id_column: str, location: str, seen_ids: dict[str, str], problems: list[str]) -> str:
    """The row's location with its id (`line 3 (id b)`); a missing or repeated id is a problem."""
    if row.get(id_column) in (None, ""):
        problems.append(f"id column {id_column!r} is missing or empty")
        return location
    row_id = str(row[id_column])
    if row_id in seen_ids:
        problems.append(f"duplicate id {row_id!r} (first at {seen_ids[row_id]})")
    else:
        seen_ids[row_id] = location
    return f"{location} (id {row_id})"


def _row_label(row: dict, label_column: str | None, problems: list[str]) -> str | None:
    if label_column is None:
        return None
    issue = _label_problem(row.get(label_column))
    if issue:
        problems.append(issue)
        return None
    return _label_text(row[label_column])


def _token_row(
    row: dict, row_id: str, tokens_column: str, tags_column: str | None, label_column: str | None, problems: list[str]
) -> TokenExample | None:
    """A token row's example; None when its words and tags cannot even be paired (the problem says why)."""
    tokens, tags = row.get(tokens_column), row.get(tags_column)
    if not isinstance(tokens, list) or not tokens:
        problems.append(f"{tokens_column!r} must be a non-empty list of words")
        return None
    if not isinstance(tags, list):
        problems.append(f"{tags_column!r} must be a list of tags")
        return None
    if len(tokens) != len(tags):
        problems.append(f"{len(tokens)} tokens but {len(tags)} tags")
        return None
    tags = [str(tag) for tag in tags]
    problems.extend(f"word {index + 1}: {message}" for index, message in bio_problems(tags))
    label = _row_label(row, label_column, problems)  # joint data: the sentence label rides along
    return TokenExample(row_id, [str(token) for token in tokens], tags, label)


def _text_row(row: dict, row_id: str, text_column: str, label_column: str | None, problems: list[str]) -> TextExample:
    if text_column not in row:
        problems.append(f"no text column {text_column!r} (columns: {sorted(row)})")
        text = ""
    else:
        text = "" if row[text_column] is None else str(row[text_column]).strip()
        if not text:
            problems.append("text is empty")
    return TextExample(row_id, text, _row_label(row, label_column, problems))


def read_table(
    path: str | Path,
    *,
    fmt: str,
    text_column: str = "text",
    label_column: str | None = "label",
    id_column: str | None = None,
    tokens_column: str | None = None,
    tags_column: str | None = None,
) -> ReadResult:
    """Generic CSV (with header), JSONL or Parquet with configurable columns.

    Sentence data: a text and a label column. Token data (`tokens_column` set): a list of words and a
    list of BIO tags per row (JSONL or Parquet); with `label_column` too, joint data (both per row).
    """
    path = Path(path)
    result = ReadResult(str(path))
    return _validate_rows(
        _rows(path, fmt, result),
        result,
        path_name=path.name,
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        tokens_column=tokens_column,
        tags_column=tags_column,
    )


def parse_hf_source(source: str, default_split: str) -> tuple[str, str | None, str]:
    """`hf:<name>[/<config>][:<split>]` → (name, config, split); the split defaults to the files key.

    A namespaced hub name takes three parts, `hf:<owner>/<name>/<config>` (e.g. `.../default`).
    """
    body, _, split = source[len(HF_PREFIX) :].partition(":")
    parts = body.split("/")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}", parts[2], split or default_split
    if len(parts) == 2:
        return parts[0], parts[1], split or default_split
    return parts[0], None, split or default_split


def read_hf_dataset(
    source: str,
    *,
    split: str,
    text_column: str = "text",
    label_column: str | None = "label",
    tokens_column: str | None = None,
    tags_column: str | None = None,
) -> ReadResult:
    """A Hugging Face hub dataset through `datasets.load_dataset`; class-label ids become their names."""
    from mtl_model.errors import ConfigError

    name, config, hf_split = parse_hf_source(source, split)
    result = ReadResult(source)
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"{source}: reading hf: datasets needs the `datasets` package (pip install datasets)"
        ) from exc
    try:
        dataset = datasets.load_dataset(name, config, split=hf_split)
    except Exception as exc:  # hub unreachable, unknown name or split: all end the run the same way
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{source}: cannot load Hugging Face dataset {name!r} (config {config!r}, split {hf_split!r}): "
            f"{first_line}. "
            "Is the hub reachable? Offline, download it elsewhere and point `files` at local copies."
        ) from None
    features = dataset.features

    def names_of(column: str | None):
        feature = features.get(column) if column else None
        inner = getattr(feature, "feature", feature)
        return getattr(inner, "names", None)

    label_names, tag_names = names_of(label_column), names_of(tags_column)

    def rows() -> Iterator[tuple[str, dict]]:
        for index, row in enumerate(dataset):
            if label_names and isinstance(row.get(label_column), int) and row[label_column] >= 0:
                row[label_column] = label_names[row[label_column]]
            elif label_names and row.get(label_column) == -1:
                row[label_column] = None  # GLUE marks unlabelled test rows with -1
            if tag_names and isinstance(row.get(tags_column), list):
                row[tags_column] = [tag_names[tag] for tag in row[tags_column]]
            yield f"row {index}", row

    return _validate_rows(
        rows(),
        result,
        path_name=source,
        text_column=text_column,
        label_column=label_column,
        id_column=None,
        tokens_column=tokens_column,
        tags_column=tags_column,
    )
