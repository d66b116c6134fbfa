"""Command line shared by `python flows/pipeline.py` (Prefect) and `python -m mtl_model` (no Prefect)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def parse_args(argv: list[str] | None, prog: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="PATH", help="YAML pipeline config (default: the bundled data/configs/default.yaml)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/<config name>)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder that the config's relative data paths start from")
    parser.add_argument("--freeze-policy", metavar="POLICY", help="none | backbone | all | head:<task>[,head:<task>] (default: the config's)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train and embed (default: auto)")
    parser.add_argument("--tasks", metavar="NAME[,NAME]", help="only these tasks of the config (e.g. a single-task run)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                        help="override a config field, e.g. --set train.max_steps=500 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    return parser.parse_args(argv)


def run_cli(run: Callable[..., dict], argv: list[str] | None, prog: str, description: str) -> int:
    """Parse options, call `run(**options)`, print the summary; bad input or config → message and exit 2."""
    from mtl_model.errors import ConfigError, DataValidationError
    from mtl_model.pipeline import format_summary

    args = parse_args(argv, prog, description)
    try:
        result = run(
            config_path=args.config, out=args.out, data_dir=args.data_dir, freeze_policy=args.freeze_policy,
            device=args.device, overrides=args.overrides, only_tasks=args.tasks.split(",") if args.tasks else None,
        )
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
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


def main(argv: list[str] | None = None) -> int:
    return run_cli(run_plain, argv, "python -m mtl_model", "Run the pipeline's steps in order, without Prefect.")
