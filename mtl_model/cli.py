"""Command line shared by `python flows/pipeline.py` (Prefect) and `python -m mtl_model` (no Prefect)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mtl_model.options import ComparisonOptions, PipelineOptions, RunOptions
    from mtl_model.pipeline import ComparisonResult, RunResult


def parse_options(
    model: type[RunOptions], argv: list[str] | None, prog: str, description: str, *, exclude: set[str] = frozenset()
) -> tuple[argparse.Namespace, RunOptions]:
    """The command line derived from an options model's fields (plus `--json`), parsed and validated.

    A value the model rejects (an unknown freeze policy, a malformed `--set`) is a `ConfigError` naming the flag.
    """
    from pydantic import ValidationError

    from mtl_model.errors import ConfigError
    from mtl_model.options import FLAGS, add_option_arguments, options_from_args

    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG.get(prog))
    add_option_arguments(parser, model, exclude=exclude)
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    args = parser.parse_args(argv)
    try:
        return args, options_from_args(model, args)
    except ValidationError as exc:
        problems = [
            f"{FLAGS.get(str(error['loc'][0]), '--' + str(error['loc'][0]).replace('_', '-'))}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from exc


EPILOG = {
    "python -m mtl_model": "subcommands: `python -m mtl_model embed --help` (embed a corpus with a trained model), "
    "`python -m mtl_model compare --help` (compare freeze policies)",
}


def run_cli(
    run: Callable[[RunOptions], BaseModel],
    model: type[RunOptions],
    argv: list[str] | None,
    prog: str,
    description: str,
    *,
    exclude: set[str] = frozenset(),
) -> int:
    """Parse options into `model`, call `run(options)`, print the summary; bad input or config → message, exit 2."""
    from mtl_model.errors import ConfigError, DataValidationError, describe_os_error, is_user_fixable
    from mtl_model.pipeline import RunResult, format_summary

    try:
        args, options = parse_options(model, argv, prog, description, exclude=exclude)
        result = run(options)
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_user_fixable(exc):
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(result.model_dump_json(indent=2))
    elif isinstance(result, RunResult):
        print(format_summary(result))
    else:
        print(f"{result.markdown}\nwritten: {', '.join(result.files.values())}")
    return 0


def run_plain(options: PipelineOptions) -> RunResult:
    """The whole pipeline without Prefect (no caching, no retries): each step runs once, in order."""
    from mtl_model.pipeline import prepare_run, run_pipeline

    plan, chosen_device, precision = prepare_run(options)
    return run_pipeline(plan, device=chosen_device, precision=precision)


def run_plain_comparison(options: ComparisonOptions) -> ComparisonResult:
    """The freeze-policy comparison without Prefect."""
    from mtl_model.pipeline import prepare_comparison, run_comparison

    base, plans, folders, chosen_device, precision = prepare_comparison(options)
    return run_comparison(base, plans, folders, device=chosen_device, precision=precision)


def parse_embed_args(argv: list[str] | None, prog: str, *, task_runner: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Embed a corpus with a trained model into resumable Parquet shards."
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="model folder written by the pipeline (<run>/model)"
    )
    parser.add_argument(
        "--corpus", required=True, metavar="PATH", help="CSV/JSONL/Parquet file, a folder of them, or hf:<name>"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (embeddings in <out>/embeddings)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="embed setting, e.g. --set rows_per_shard=50000 --set id_column=doc_id (repeatable)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    if task_runner:
        parser.add_argument(
            "--task-runner",
            choices=["thread", "dask"],
            default="thread",
            help="where shards run (default: threads here)",
        )
        parser.add_argument(
            "--dask-address", metavar="ADDRESS", help="scheduler of an existing Dask cluster (with --task-runner dask)"
        )
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


def show_progress(logger_name: str) -> None:
    """Print a library logger's INFO lines (progress: rows/s, time left) on stderr; Prefect runs log them anyway."""
    import logging

    logger = logging.getLogger(logger_name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_plain_embedding(argv: list[str]) -> int:
    """`python -m mtl_model embed …`: the embed step without Prefect (shards one after another)."""
    from mtl_model.device import resolve_device
    from mtl_model.errors import ConfigError, DataValidationError
    from mtl_model.lock import output_lock
    from mtl_model.runtime import quiet_third_party
    from mtl_model.steps import embed

    args = parse_embed_args(argv, "python -m mtl_model embed", task_runner=False)
    quiet_third_party()
    show_progress("mtl_model.embed")
    try:
        config = embed_config(args.overrides)
        with output_lock(args.out):
            result = embed(args.model, args.corpus, config, device=resolve_device(args.device), out_dir=args.out)
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["embed"]:
        return run_plain_embedding(argv[1:])
    from mtl_model.options import ComparisonOptions, PipelineOptions

    if argv[:1] == ["compare"]:
        return run_cli(
            run_plain_comparison,
            ComparisonOptions,
            argv[1:],
            "python -m mtl_model compare",
            "Compare freeze policies on the same tokenized data, without Prefect.",
        )
    return run_cli(
        run_plain,
        PipelineOptions,
        argv,
        "python -m mtl_model",
        "Run the pipeline's steps in order, without Prefect.",
        exclude={"gpu"},
    )
