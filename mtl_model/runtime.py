"""Process-level settings an entry point applies once (never at import time)."""

from __future__ import annotations

import os


def quiet_third_party() -> None:
    """Silence per-load progress bars and load reports of transformers; keep real warnings and errors."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
