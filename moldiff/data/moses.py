"""The MOSES benchmark molecules (ZINC Clean Leads, 250–350 Da), read from the files of the ``molsets``
package (install it with ``pip install --no-deps molsets``): 1.58 M training SMILES, the test set and the
scaffold test set, as CSV files with a SMILES column."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SPLITS = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}


def moses_file(split: str = "train") -> Path:
    """The path of one MOSES split's CSV file; a clear error when ``molsets`` is not installed."""
    if split not in SPLITS:
        raise ValueError(f"unknown MOSES split {split!r}; choose from {', '.join(SPLITS)}")
    spec = importlib.util.find_spec("moses")
    if spec is None or spec.origin is None:
        raise ValueError("the MOSES data come with the molsets package: pip install --no-deps molsets")
    path = Path(spec.origin).parent / "dataset" / "data" / SPLITS[split]
    if not path.is_file():
        raise ValueError(f"{path} is missing from the installed molsets package")
    return path
