"""Readers and writers: good files round trip; every kind of bad input gives a message naming file and record."""
import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.build import mol_positions
from moldiff.chem.io import read_molecules, write_molecules

from .conftest import embed


@pytest.fixture()
def two_mols():
    return [embed("CCO")[2], embed("c1ccccc1N", seed=3)[2]]


@pytest.mark.parametrize("suffix", [".sdf", ".xyz", ".smi"])
def test_write_then_read(tmp_path, two_mols, suffix):
    path = tmp_path / f"out{suffix}"
    written, messages = write_molecules(two_mols + [None], path)
    assert written == 2 and len(messages) == 1 and "molecule 3" in messages[0]
    mols, errors = read_molecules(path)
    assert errors == [] and len(mols) == 2
    assert [m.GetProp("moldiff_source") for m in mols] == [f"out{suffix}#1", f"out{suffix}#2"]
    if suffix != ".smi":
        np.testing.assert_allclose(mol_positions(mols[1]), mol_positions(two_mols[1]), atol=1e-4)
    if suffix != ".xyz":
        for got, want in zip(mols, two_mols):
            Chem.SanitizeMol(got)
            assert Chem.MolToSmiles(Chem.RemoveHs(got)) == Chem.MolToSmiles(Chem.RemoveHs(want))
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def _sdf(tmp_path, two_mols):
    path = tmp_path / "good.sdf"
    write_molecules(two_mols, path)
    return path.read_text()


def test_truncated_sdf_keeps_the_first_record(tmp_path, two_mols):
    text = _sdf(tmp_path, two_mols)
    cut = text.index("$$$$") + 5 + 300
    bad = tmp_path / "cut.sdf"
    bad.write_text(text[:cut])
    mols, errors = read_molecules(bad)
    assert len(mols) == 1 and len(errors) == 1
    assert str(bad) in errors[0] and "record 2" in errors[0] and "truncated" in errors[0]


def test_corrupt_sdf_record(tmp_path, two_mols):
    blocks = _sdf(tmp_path, two_mols).split("$$$$\n")
    lines = blocks[0].split("\n")
    lines[5] = "this is not an atom line at all"
    bad = tmp_path / "corrupt.sdf"
    bad.write_text("\n".join(lines) + "$$$$\n" + blocks[1] + "$$$$\n")
    mols, errors = read_molecules(bad)
    assert len(mols) == 1 and len(errors) == 1
    assert "corrupt.sdf" in errors[0] and "record 1" in errors[0] and "corrupt" in errors[0]


XYZ_GOOD = "3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"


@pytest.mark.parametrize("bad,reason", [
    ("2\nbroken\nC 0 0 0\nthis is garbage\n", "expected 'element x y z'"),
    ("2\nunknown\nC 0 0 0\nQq 1 0 0\n", "unknown element 'Qq'"),
    ("2\nnan\nC 0 0 0\nO nan 0 0\n", "NaN or inf"),
    ("2\ninf\nC 0 0 0\nO inf 0 0\n", "NaN or inf"),
    ("garbage line\n", "expected an atom count"),
    ("4\ntruncated\nC 0 0 0\n", "truncated"),
])
def test_bad_xyz_records(tmp_path, bad, reason):
    path = tmp_path / "mixed.xyz"
    path.write_text(XYZ_GOOD + bad + XYZ_GOOD)
    mols, errors = read_molecules(path)
    assert len(errors) == 1, errors
    assert str(path) in errors[0] and "record 2" in errors[0] and reason in errors[0]
    assert len(mols) == 2


def test_huge_molecule_is_refused(tmp_path):
    n = 10_000
    lines = [str(n), "huge"] + [f"C {k * 1.5:.1f} 0 0" for k in range(n)]
    path = tmp_path / "huge.xyz"
    path.write_text("\n".join(lines) + "\n" + XYZ_GOOD)
    mols, errors = read_molecules(path)
    assert len(mols) == 1 and len(errors) == 1
    assert "huge.xyz" in errors[0] and "record 1" in errors[0] and "10000 atoms" in errors[0]


def test_huge_molecule_in_sdf_is_refused(tmp_path):
    mol = Chem.MolFromSmiles("C" * 1200)
    path = tmp_path / "big.sdf"
    path.write_text(Chem.MolToMolBlock(mol, forceV3000=True) + "$$$$\n")
    mols, errors = read_molecules(path)
    assert mols == [] and "record 1" in errors[0] and "1200 atoms" in errors[0]


def test_empty_missing_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.sdf"
    empty.write_text("")
    assert read_molecules(empty) == ([], [f"{empty}: empty file, no molecules"])
    mols, errors = read_molecules(tmp_path / "absent.xyz")
    assert mols == [] and "absent.xyz" in errors[0] and "cannot read" in errors[0]
    mols, errors = read_molecules(tmp_path / "notes.pdf")
    assert mols == [] and "unknown file type" in errors[0]


def test_smiles_file(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("SMILES name\nCCO ethanol\n\n# comment\nC1CC( oops\nC(C)(C)(C)(C)C pentavalent\n")
    mols, errors = read_molecules(path)
    assert len(mols) == 2 and len(errors) == 1     # the over-valent one is read: validity is a metric
    assert "record 2 (line 5)" in errors[0] and "C1CC(" in errors[0]
    assert mols[0].GetProp("_Name") == "ethanol"
