"""Choosing the reader for a file of labelled sentences: the one place that knows every format."""

from __future__ import annotations

from pathlib import Path

from inference.records import Example, read_labelled
from inference.standoff import is_standoff, read_standoff


def load_examples(path: str | Path, data_root: str | Path) -> list[Example]:
    """Labelled JSONL/CSV, or stand-off gold resolved against ``data_root``.

    >>> load_examples("data/gold/test.jsonl", "../shared/datasets")[0].label  # doctest: +SKIP
    'other'
    """
    return read_standoff(path, data_root) if is_standoff(path) else read_labelled(path)
