"""The output folder: check it before shards run, write `_manifest.json` and then `_SUCCESS` after, and say
when an earlier run already left exactly this plan's result (then a re-run writes nothing).

Readers wait for `_SUCCESS`. Files in the folder that this step did not write are named in an error and
never deleted; a stale or damaged shard of ours is named in the log and recomputed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from mtl_model.base import StrictModel
from mtl_model.embed.inference import Precision
from mtl_model.embed.plan import EmbedPlan
from mtl_model.embed.shards import ShardRecord, is_ours, shard_is_complete
from mtl_model.errors import DataValidationError, Problem
from mtl_model.io import atomic_path, file_sha256, json_sha256, temp_of_another_live_writer, write_json_atomic

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "mtl-embeddings/1"
MANIFEST_SHARD_KEYS = ("file", "rows", "truncated", "bytes", "sha256")  # a ShardRecord as the manifest lists it
SHARD_RE = re.compile(r"^part-(\d{5})\.parquet$")
OUR_TEMP_RE = re.compile(r"^\.(part-\d{5}\.parquet|_manifest\.json|_SUCCESS)\.tmp-(\d+-)?[0-9a-f]{8}$")


class EmbeddingResult(StrictModel):
    """What an embedding run left in its folder, in short (the step's return value; the manifest has the rest)."""

    path: str
    """The output folder (`<out>/embeddings`)."""
    rows: int
    """Rows embedded, over all shards: every input row exactly once."""
    shards: int
    """Shard files `part-NNNNN.parquet` in the folder."""
    computed_shards: int
    """Shards computed by this run (0: everything was already up to date)."""
    dimension: int
    """Width D of each embedding."""
    truncated: int
    """Texts cut to the model's `max_seq_length`, over all shards."""
    precision: Precision
    """The precision the embeddings were computed in."""


def _recorded_hashes(out_dir: Path) -> dict[str, str]:
    """Shard name → sha256, as an earlier run of this step recorded them in `_manifest.json` (so they are ours)."""
    try:
        return {record["file"]: record["sha256"] for record in json.loads((out_dir / MANIFEST).read_text())["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _differs_from_record(path: Path, recorded: dict[str, str]) -> bool:
    """Whether a shard's bytes differ from the sha256 the manifest recorded for it (a flipped bit, an overwrite).

    Hashing runs at disk speed (about 1 GB/s here, see README "Guarantees"); shards no manifest lists (a run
    killed before its manifest) have only their Parquet footer and metadata checked."""
    return path.name in recorded and file_sha256(path) != recorded[path.name]


def classify_output(out_dir: Path, plan: EmbedPlan) -> tuple[list[str], list[str], list[str]]:
    """Sort the folder's entries, changing nothing: (foreign, ours to remove, our temp files).

    A shard-named file is ours when it carries our metadata or an earlier manifest lists it; ours but
    stale (other input, model or settings) or unreadable (truncated, damaged) → removed and recomputed.
    Anything else, including an unreadable `part-*.parquet` we never recorded, is foreign.
    """
    expected = {shard.file: shard for shard in plan.shards}
    recorded = _recorded_hashes(out_dir)
    foreign: list[str] = []
    remove: list[str] = []
    temps: list[str] = []
    for entry in sorted(out_dir.iterdir()):
        name = entry.name
        if name in (MANIFEST, SUCCESS_MARKER):
            continue
        if OUR_TEMP_RE.match(name) and entry.is_file():
            if not temp_of_another_live_writer(name):  # a live writer's temp file is left alone
                temps.append(name)
        elif SHARD_RE.match(name) and entry.is_file():
            complete = name in expected and shard_is_complete(entry, plan, expected[name])
            if complete and not _differs_from_record(entry, recorded):
                continue  # finished shard of this very plan, bytes as recorded: kept
            (remove if name in recorded or is_ours(entry) else foreign).append(name)
        else:
            foreign.append(name)
    return foreign, remove, temps


def inspect_output(out_dir: Path, plan: EmbedPlan) -> None:
    """Foreign files → an error naming them, before anything changes. Then our temp files from a killed run
    are deleted, and our stale or damaged shards are named in the log and deleted so they are recomputed."""
    if not out_dir.exists():
        return
    foreign, remove, temps = classify_output(out_dir, plan)
    if foreign:
        raise DataValidationError(
            [
                Problem(
                    str(out_dir / name),
                    "",
                    "not written by the embed step; move it elsewhere (readers of this folder would read it too)",
                )
                for name in foreign
            ]
        )
    (out_dir / SUCCESS_MARKER).unlink(missing_ok=True)  # the folder is about to change
    for name in temps:
        (out_dir / name).unlink()
    recorded = _recorded_hashes(out_dir)
    for name in remove:
        path = out_dir / name
        if _differs_from_record(path, recorded) and is_ours(path):
            why = "damaged (its sha256 differs from the manifest's)"
        else:
            why = "from an earlier input, model or setting" if is_ours(path) else "truncated or damaged"
        log.warning("embeddings: %s is %s; it will be recomputed", path, why)
        path.unlink()


def _inputs_json(plan: EmbedPlan) -> list[dict[str, Any]]:
    """The plan's corpus files as the manifest records them (and as `already_done` compares them)."""
    return [corpus_file.model_dump(mode="json") for corpus_file in plan.inputs]


def manifest_for(plan: EmbedPlan, records: list[ShardRecord]) -> dict[str, Any]:
    """The `_manifest.json` content: the model's facts, the inputs, and every shard (as consumers read it)."""
    return {
        "format": MANIFEST_FORMAT,
        **plan.model_facts(),
        "precision_check_min_cosine": plan.precision_check_cosine,
        "precision_check": None if plan.precision_check is None else plan.precision_check.model_dump(mode="json"),
        "settings": plan.settings_key,
        "id_column": plan.id_column,
        "inputs": _inputs_json(plan),
        "input_fingerprint": json_sha256(_inputs_json(plan))[:16],
        "rows": sum(r.rows for r in records),
        "truncated": sum(r.truncated for r in records),
        "shards": [{key: getattr(r, key) for key in MANIFEST_SHARD_KEYS} for r in records],
    }


def already_done(plan: EmbedPlan) -> dict[str, Any] | None:
    """The manifest, when `_SUCCESS` is there and the folder holds exactly this plan's finished shards."""
    out = Path(plan.out_dir)
    if not (out / SUCCESS_MARKER).is_file() or not (out / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except ValueError:
        return None
    same = (
        manifest.get("settings") == plan.settings_key
        and manifest.get("inputs") == _inputs_json(plan)
        and [s["file"] for s in manifest.get("shards", [])] == [s.file for s in plan.shards]
    )
    if not same:
        return None
    names = {p.name for p in out.iterdir()}
    if names != {MANIFEST, SUCCESS_MARKER, *(s.file for s in plan.shards)}:
        return None
    for record in manifest["shards"]:
        path = out / record["file"]
        if path.stat().st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
            log.warning("embeddings: %s does not match the manifest (size or sha256); checking the folder", path)
            return None
    return manifest


def prepare_output(plan: EmbedPlan) -> dict[str, Any] | None:
    """Before shards run: the finished manifest if there is nothing to do; else clear `_SUCCESS` (the folder
    is about to change) and check the folder (foreign files → error; damaged shards → recomputed)."""
    done = already_done(plan)
    if done is not None:
        return done
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inspect_output(out, plan)
    return None


def finish_embedding(plan: EmbedPlan, records: list[ShardRecord]) -> dict[str, Any]:
    """Write `_manifest.json`, then `_SUCCESS` last (readers wait for it); returns the manifest."""
    if sorted(r.file for r in records) != sorted(s.file for s in plan.shards):
        raise ValueError(f"shard records {len(records)} do not match the plan's {len(plan.shards)} shards")
    manifest = manifest_for(plan, sorted(records, key=lambda r: r.file))
    out = Path(plan.out_dir)
    write_json_atomic(out / MANIFEST, manifest)
    with atomic_path(out / SUCCESS_MARKER) as temp:
        temp.write_text(json.dumps({"rows": manifest["rows"], "shards": len(records)}) + "\n")
    return manifest


def summary_of(plan: EmbedPlan, manifest: dict[str, Any], computed: int) -> EmbeddingResult:
    """The run's result from its manifest; `computed`: shards this run wrote (0 when it was up to date)."""
    return EmbeddingResult(
        path=plan.out_dir,
        rows=manifest["rows"],
        shards=len(manifest["shards"]),
        computed_shards=computed,
        dimension=manifest["dimension"],
        truncated=manifest["truncated"],
        precision=manifest["precision"],
    )
