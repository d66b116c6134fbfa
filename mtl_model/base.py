"""The base of every typed config and contract: frozen, unknown keys rejected, field docstrings as descriptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Frozen (hashable, safe to pass between steps), `extra="forbid"` (a typo is an error, not a silent default),
    and each field's docstring becomes its description (Prefect's parameter form and `--help` show it)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)
