"""The MOSES benchmark molecules (ZINC Clean Leads, 250–350 Da), read from the files of the ``molsets``
package (install it with ``pip install --no-deps molsets``): 1.58 M training SMILES, the test set and the
scaffold test set, as CSV files with a SMILES column."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

SPLITS = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}


def moses_file(split: str = "train") -> Path:
    """The path of one MOSES split's CSV file; a clear error when ``molsets`` is not installed."""
    if split not in SPLITS:
        raise ValueError(f"unknown MOSES split {split!r}; choose from {', '.join(SPLITS)}")
    try:  # the installed distribution's files, not whatever ``moses`` module comes first on sys.path
        path = Path(str(importlib.metadata.distribution("molsets").locate_file(f"moses/dataset/data/{SPLITS[split]}")))
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("the MOSES data come with the molsets package: pip install --no-deps molsets") from None
    if not path.is_file():
        raise ValueError(f"{path} is missing from the installed molsets package")
    return path
