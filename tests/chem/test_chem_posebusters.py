"""PoseBusters' checks through moldiff.chem.posebusters: a relaxed conformer passes, a distorted one of the same
molecule fails the geometry checks, and the summary counts what it is given."""
import importlib.util

import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.posebusters import posebusters_checks, posebusters_summary

from .conftest import relaxed

pytestmark = pytest.mark.skipif(importlib.util.find_spec("posebusters") is None, reason="posebusters not installed")


def test_relaxed_passes_and_distorted_fails_the_geometry_checks():
    good = relaxed("CC(=O)Nc1ccc(O)cc1")
    bad = Chem.Mol(good)
    pos = good.GetConformer().GetPositions()
    bad.GetConformer().SetPositions(pos + np.random.RandomState(0).normal(0, 0.25, pos.shape))
    ok, broken = posebusters_checks([good, bad])
    assert all(v for v in ok.values() if v is not None), ok
    assert ok["bond_lengths"] and ok["aromatic_ring_flatness"]
    assert not broken["bond_lengths"] and not broken["aromatic_ring_flatness"]
    assert broken["sanitization"] and broken["all_atoms_connected"]  # the chemistry is the same


def test_rdkit_messages_still_reach_stderr_after_posebusters_ran(capfd):
    posebusters_checks([relaxed("CCO")])
    Chem.MolFromSmiles("C1CC(")
    assert "SMILES Parse Error" in capfd.readouterr().err


def test_summary_counts_molecules_and_rates():
    good = relaxed("CCO")
    two = Chem.CombineMols(relaxed("CCO"), relaxed("C"))  # two fragments: not all atoms connected
    summary = posebusters_summary([good, two, None])
    assert summary["molecules"] == 2 and summary["all_pass"] == 0.5
    assert summary["per_check"]["all_atoms_connected"] == 0.5 and summary["per_check"]["sanitization"] == 1.0
    assert posebusters_summary([]) == {"molecules": 0}


def test_a_check_some_molecules_could_not_compute_still_counts_for_the_others():
    import pandas as pd  # PoseBusters' report: a check column with a NaN turns from booleans into floats

    from moldiff.chem.posebusters import _verdicts
    frame = pd.DataFrame({"bond_lengths": [True, True, False], "internal_energy": [1.0, float("nan"), 0.0]})
    assert _verdicts(frame) == [{"bond_lengths": True, "internal_energy": True},
                                {"bond_lengths": True, "internal_energy": None},
                                {"bond_lengths": False, "internal_energy": False}]
