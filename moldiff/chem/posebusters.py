"""PoseBusters' checks for generated molecules (the ``posebusters`` package, its ``mol`` configuration: sanitisation,
connectivity, bond lengths and angles, ring and double-bond planarity, internal clashes, internal energy).

The judge is PoseBusters itself, used as it is; this module only feeds it molecules and counts its verdicts.
``posebusters`` is an optional dependency (``pip install posebusters``, or ``moldiff[judges]``).
"""
from __future__ import annotations

import logging
import sys
from typing import Iterable

import numpy as np
import rdkit
from rdkit import Chem, rdBase


class PoseBustersMissing(ImportError):
    """The ``posebusters`` package is not installed."""


def _posebusters():
    try:
        from posebusters import PoseBusters
    except ImportError as exc:
        raise PoseBustersMissing("PoseBusters' checks need the posebusters package: pip install posebusters") from exc
    finally:
        rdBase.LogToCppStreams()
    return PoseBusters


def posebusters_checks(mols: Iterable[Chem.Mol]) -> list[dict[str, bool | None]]:
    """Each molecule's PoseBusters verdicts (check name → passed; None where PoseBusters could not compute it),
    in order."""
    mols = list(mols)
    if not mols:
        return []
    quiet = logging.getLogger("posebusters")  # its per-molecule warnings become the None verdicts below
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    busters = _posebusters()
    # posebusters reads RDKit's messages through Python logging (its InChI check does), which its import sets
    # up for the whole process; here that holds during its run only, and RDKit's own default after it
    rdBase.LogToPythonLogger()
    handler = getattr(rdkit, "log_handler", None)  # posebusters points it at the sys.stderr of its last run,
    if handler is not None:  # which may be closed by now (a replaced stderr): point it at today's
        handler.stream = sys.stderr  # set, not setStream: that would flush the closed one
    try:
        frame = busters(config="mol").bust(mols, None, None)
    finally:
        quiet.setLevel(level)
        rdBase.LogToCppStreams()
    return _verdicts(frame)


def _verdicts(frame) -> list[dict[str, bool | None]]:
    """PoseBusters' report (one row per molecule, one column per check) as verdicts. A check column holds
    booleans, or floats (1.0 / 0.0) with NaN where some molecule's check could not be computed."""
    return [{c: _verdict(v) for c, v in row.items()} for _, row in frame.iterrows()]


def _verdict(value) -> bool | None:
    if value is None:
        return None
    try:
        return None if np.isnan(value) else bool(value)
    except TypeError:
        return bool(value)


def posebusters_summary(mols: Iterable[Chem.Mol | None]) -> dict:
    """Pass rate of each check and of all of them together over the molecules given (None entries are left out).
    A check PoseBusters could not compute for a molecule counts for neither (``not_computed`` says how often)."""
    rows = posebusters_checks(m for m in mols if m is not None)
    out: dict = {"molecules": len(rows)}
    if rows:
        names = list(dict.fromkeys(c for r in rows for c in r))
        out["all_pass"] = sum(all(v for v in r.values() if v is not None) for r in rows) / len(rows)
        out["per_check"] = {c: sum(r.get(c) is True for r in rows) / max(1, sum(r.get(c) is not None for r in rows))
                            for c in names}
        out["not_computed"] = {c: n for c in names if (n := sum(r.get(c) is None for r in rows))}
    return out
