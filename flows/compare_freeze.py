"""The freeze-policy comparison flow: tokenize once (cached), train and evaluate each policy on the same
Parquet, then one table (Prefect table artifact, comparison.md, comparison.png).

Run once:      python flows/compare_freeze.py [--config …] [--policy none --policy lora …]
As a service:  the `compare-freeze` deployment in prefect.yaml.
"""

from __future__ import annotations

import sys

from prefect import flow

from flows.pipeline import PREFECT_STEPS
from mtl_model.cli import run_cli
from mtl_model.compare import DEFAULT_POLICIES
from mtl_model.config import ComparisonEntry, DeviceChoice, Override
from mtl_model.pipeline import prepare_comparison, run_comparison


@flow(name="mtl-compare-freeze")
def compare_freeze(
    config_path: str | None = None,
    policies: list[ComparisonEntry] = list(DEFAULT_POLICIES),
    out: str | None = None,
    data_dir: str | None = None,
    device: DeviceChoice = "auto",
    overrides: list[Override] | None = None,
    only_tasks: list[str] | None = None,
) -> dict:
    """Train every freeze policy on the same tokenized data and compare trainable parameters, time, memory and metrics.

    Args:
        config_path: YAML pipeline config; the bundled default when empty.
        policies: Freeze policies to compare; an entry may add settings for itself only, e.g.
            `none|train.layerwise_lr_decay=0.8` or `gradual|train.unfreeze_every=200`.
        out: Output folder; default `runs/<config name>-freeze-comparison`.
        data_dir: Folder that relative data paths in the config start from.
        device: `auto` picks CUDA when available, else CPU.
        overrides: `section.field=value` settings applied to every entry, e.g. `train.max_steps=500`.
        only_tasks: Compare on these tasks of the config only (default: all).
    """
    base, plans, folders, chosen_device, precision = prepare_comparison(
        config_path, policies=policies, out=out, data_dir=data_dir, device=device, overrides=overrides, only_tasks=only_tasks
    )
    return run_comparison(base, plans, folders, device=chosen_device, precision=precision, steps=PREFECT_STEPS)


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        compare_freeze, argv, "python flows/compare_freeze.py",
        "Compare freeze policies on the same tokenized data (a Prefect flow).", compare=True,
    )


if __name__ == "__main__":
    sys.exit(main())
