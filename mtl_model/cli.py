"""Command line shared by `python flows/pipeline.py` (Prefect) and `python -m mtl_model` (no Prefect)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def parse_args(argv: list[str] | None, prog: str, description: str, *, compare: bool = False, gpu: bool = False) -> argparse.Namespace:
    from mtl_model.compare import DEFAULT_POLICIES
    from mtl_model.freeze import VALID_POLICIES

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="PATH", help="YAML pipeline config (default: the bundled data/configs/default.yaml)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<config name>)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder that the config's relative data paths start from")
    if compare:
        parser.add_argument("--policy", dest="policies", action="append", metavar="POLICY[|train.KEY=VALUE]",
                            help=f"a policy to compare (repeatable; default: {' '.join(DEFAULT_POLICIES)}); "
                                 "`|train.KEY=VALUE` adds settings for that entry only")
    else:
        parser.add_argument("--freeze-policy", metavar="POLICY",
                            help=f"{' | '.join(VALID_POLICIES)} (default: the config's train.freeze_policy)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train and embed (default: auto)")
    if gpu:
        parser.add_argument("--gpu", choices=["auto", "require", "never"], default="auto",
                            help="train on a GPU worker (config remote_training): auto = when its pool has an ONLINE worker, "
                                 "require = fail if none can, never = always here (default: auto)")
    parser.add_argument("--tasks", metavar="NAME[,NAME]", help="only these tasks of the config (e.g. a single-task run)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                        help="override a config field, e.g. --set train.max_steps=500 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    return parser.parse_args(argv)


def run_cli(run: Callable[..., dict], argv: list[str] | None, prog: str, description: str, *, compare: bool = False, gpu: bool = False) -> int:
    """Parse options, call `run(**options)`, print the summary; bad input or config → message and exit 2."""
    from mtl_model.errors import ConfigError, DataValidationError
    from mtl_model.pipeline import format_summary

    args = parse_args(argv, prog, description, compare=compare, gpu=gpu)
    options = dict(
        config_path=args.config, out=args.out, data_dir=args.data_dir, device=args.device, overrides=args.overrides,
        only_tasks=args.tasks.split(",") if args.tasks else None,
    )
    if compare:
        from mtl_model.compare import DEFAULT_POLICIES

        options["policies"] = args.policies or list(DEFAULT_POLICIES)
    else:
        options["freeze_policy"] = args.freeze_policy
    if gpu:
        options["gpu"] = args.gpu
    try:
        result = run(**options)
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['markdown']}\nwritten: {', '.join(result['files'].values())}" if compare else format_summary(result))
    return 0


def run_plain(
    config_path: str | None = None,
    out: str | None = None,
    data_dir: str | None = None,
    freeze_policy: str | None = None,
    device: str = "auto",
    overrides: list[str] | None = None,
    only_tasks: list[str] | None = None,
) -> dict:
    """The whole pipeline without Prefect (no caching, no retries): each step runs once, in order."""
    from mtl_model.pipeline import prepare_run, run_pipeline

    plan, chosen_device, precision = prepare_run(
        config_path, out=out, data_dir=data_dir, freeze_policy=freeze_policy, device=device, overrides=overrides, only_tasks=only_tasks
    )
    return run_pipeline(plan, device=chosen_device, precision=precision)


def run_plain_comparison(
    config_path: str | None = None,
    policies: list[str] | None = None,
    out: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    overrides: list[str] | None = None,
    only_tasks: list[str] | None = None,
) -> dict:
    """The freeze-policy comparison without Prefect."""
    from mtl_model.compare import DEFAULT_POLICIES
    from mtl_model.pipeline import prepare_comparison, run_comparison

    base, plans, folders, chosen_device, precision = prepare_comparison(
        config_path, policies=policies or list(DEFAULT_POLICIES), out=out, data_dir=data_dir, device=device,
        overrides=overrides, only_tasks=only_tasks,
    )
    return run_comparison(base, plans, folders, device=chosen_device, precision=precision)


def parse_embed_args(argv: list[str] | None, prog: str, *, task_runner: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Embed a corpus with a trained model into resumable Parquet shards.")
    parser.add_argument("--model", required=True, metavar="DIR", help="model folder written by the pipeline (<run>/model)")
    parser.add_argument("--corpus", required=True, metavar="PATH", help="CSV/JSONL/Parquet file, a folder of them, or hf:<name>")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (embeddings in <out>/embeddings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="embed setting, e.g. --set rows_per_shard=50000 --set id_column=doc_id (repeatable)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    if task_runner:
        parser.add_argument("--task-runner", choices=["thread", "dask"], default="thread", help="where shards run (default: threads here)")
        parser.add_argument("--dask-address", metavar="ADDRESS", help="scheduler of an existing Dask cluster (with --task-runner dask)")
    return parser.parse_args(argv)


def embed_config(overrides: list[str]):
    """`key=value` strings (values parsed as YAML) over the default embed settings, validated."""
    from mtl_model.config import EmbedConfig, apply_override
    from mtl_model.errors import ConfigError

    raw: dict = {}
    for item in overrides:
        apply_override(raw, item.removeprefix("embed."))
    try:
        return EmbedConfig.model_validate(raw)
    except ValueError as exc:
        raise ConfigError(f"embed settings: {exc}") from exc


def run_plain_embedding(argv: list[str]) -> int:
    """`python -m mtl_model embed …`: the embed step without Prefect (shards one after another)."""
    from mtl_model.device import resolve_device
    from mtl_model.errors import ConfigError, DataValidationError
    from mtl_model.runtime import quiet_third_party
    from mtl_model.steps import embed_step

    args = parse_embed_args(argv, "python -m mtl_model embed", task_runner=False)
    quiet_third_party()
    try:
        result = embed_step(args.model, args.corpus, embed_config(args.overrides), device=resolve_device(args.device), out_dir=args.out)
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["embed"]:
        return run_plain_embedding(argv[1:])
    if argv[:1] == ["compare"]:
        return run_cli(run_plain_comparison, argv[1:], "python -m mtl_model compare",
                       "Compare freeze policies on the same tokenized data, without Prefect.", compare=True)
    return run_cli(run_plain, argv, "python -m mtl_model", "Run the pipeline's steps in order, without Prefect.")
