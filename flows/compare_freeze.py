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
from mtl_model.options import ComparisonOptions
from mtl_model.pipeline import ComparisonResult, prepare_comparison, run_comparison
from tasks.server import tie_temporary_server_to_this_process


@flow(name="mtl-compare-freeze")
def compare_freeze(options: ComparisonOptions = ComparisonOptions()) -> ComparisonResult:
    """Train every freeze policy on the same tokenized data and compare trainable parameters, time, memory and metrics.

    Args:
        options: Config, output folder (default `runs/<config name>-freeze-comparison`), data folder, device,
            overrides for every entry, tasks, and the policies to compare (see each field's description).
    """
    base, plans, folders, device, precision = prepare_comparison(options)
    return run_comparison(base, plans, folders, device=device, precision=precision, steps=PREFECT_STEPS)


def main(argv: list[str] | None = None) -> int:
    tie_temporary_server_to_this_process()
    return run_cli(
        compare_freeze,
        ComparisonOptions,
        argv,
        "python flows/compare_freeze.py",
        "Compare freeze policies on the same tokenized data (a Prefect flow).",
    )


if __name__ == "__main__":
    sys.exit(main())
