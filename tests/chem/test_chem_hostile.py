"""Hostile and careless molecule files: gzip, non-regular files, escape sequences, huge records, outputs that
round-trip (canonical SMILES, stereo from 3D, invalid samples marked), and a corpus of bad files."""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.chem.build import assign_stereo_from_3d
from moldiff.chem.io import MAX_RECORD_CHARS, printable, read_molecules, write_molecules
from moldiff.evaluate import add_arguments, run

from .conftest import embed

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


def parse(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moldiff evaluate")
    add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_gzip_compressed_files_are_read(tmp_path):
    mols = [embed(s)[2] for s in ["CCO", "CC(=O)O", "C#N"]]
    for suffix in ("sdf", "xyz", "smi"):
        plain = tmp_path / f"m.{suffix}"
        write_molecules(mols, plain)
        packed = tmp_path / f"m.{suffix}.gz"
        packed.write_bytes(gzip.compress(plain.read_bytes()))
        got, errors = read_molecules(packed)
        assert len(got) == 3 and not errors, (suffix, errors)
    (tmp_path / "x.sdf.gz").write_bytes(b"not gzip")
    got, errors = read_molecules(tmp_path / "x.sdf.gz")
    assert not got and "not a valid gzip file" in errors[0]


def test_fifo_and_devices_are_refused_without_opening(tmp_path, capsys):
    fifo = tmp_path / "pipe.sdf"
    os.mkfifo(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.update(rc=run(parse(fifo, "--reference", "none"))), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "reading a FIFO hung"
    assert result["rc"] == 2 and "not a regular file" in capsys.readouterr().err
    got, errors = read_molecules("/dev/zero.sdf" if Path("/dev/zero.sdf").exists() else tmp_path)
    assert not got
    link = tmp_path / "zero.xyz"
    link.symlink_to("/dev/zero")
    got, errors = read_molecules(link)
    assert not got and "not a regular file" in errors[0]


def test_json_onto_an_input_is_refused(tmp_path, capsys):
    path = tmp_path / "m.sdf"
    write_molecules([embed("CCO")[2]], path)
    before = path.read_bytes()
    assert run(parse(path, "--reference", "none", "--json", path)) == 2
    assert "one of the input files" in capsys.readouterr().err and path.read_bytes() == before
    alias = tmp_path / "alias.sdf"
    alias.symlink_to(path)
    assert run(parse(path, "--reference", "none", "--json", alias)) == 2 and path.read_bytes() == before


def test_escape_sequences_never_reach_the_terminal(tmp_path, capsys):
    path = tmp_path / "t.smi"
    path.write_text("CCO \x1b[2J\x1b]0;pwned\x07\nC1CC\x1b[31m x\n\x1b[1m" + "C" * 500 + "(\n")
    assert run(parse(path, "--reference", "none")) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err + captured.out and "\\x1b" in captured.err
    assert all(len(line) < 400 for line in captured.err.splitlines())  # short excerpts of bad lines
    assert printable("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07" and printable("x" * 100).endswith("…")


def test_titles_cannot_break_output_files(tmp_path):
    mol = embed("CCO")[2]
    mol.SetProp("_Name", "evil\nC 0 0 0\x1b[2J")
    for suffix in ("xyz", "smi", "sdf"):
        write_molecules([mol, embed("C#N")[2]], tmp_path / f"o.{suffix}")
        got, errors = read_molecules(tmp_path / f"o.{suffix}")
        assert len(got) == 2 and not errors, (suffix, errors)
        assert "\x1b" not in (tmp_path / f"o.{suffix}").read_text()


def test_huge_records_are_refused_before_parsing(tmp_path):
    path = tmp_path / "long.smi"
    path.write_text("C" * (5 * 10**6) + "\nCCO\n")
    got, errors = read_molecules(path)
    assert len(got) == 1 and f"more than the limit of {MAX_RECORD_CHARS:,}: not parsed" in errors[0]
    sdf = tmp_path / "counts.sdf"
    sdf.write_text("big\n  x\n\n500  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n")
    got, errors = read_molecules(sdf, max_atoms=100)
    assert not got and "500 atoms, more than the limit of 100: not parsed" in errors[0]


def test_stereo_smiles_sdf_and_geometry_agree(tmp_path):
    """Molecules with stereocentres and E/Z bonds, embedded in 3D and their stereo assigned from the
    coordinates: the .smi line, the SDF read back, and the geometry give the same isomeric SMILES."""
    mols, expected = [], []
    for k, smiles in enumerate(["C[C@H](N)C(=O)O", "C/C=C/Cl", "C/C=C\\C", "O[C@@H]1CC[C@H](C)CC1"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert AllChem.EmbedMolecule(mol, randomSeed=k) == 0
        for atom in mol.GetAtoms():
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)  # forget it: only the geometry knows
        assign_stereo_from_3d(mol)
        mols.append(mol)
        expected.append(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    write_molecules(mols, tmp_path / "s.smi")
    write_molecules(mols, tmp_path / "s.sdf")
    lines = [line.split()[0] for line in (tmp_path / "s.smi").read_text().splitlines()]
    assert lines == expected and all("[H]" not in s for s in lines)  # canonical, no explicit hydrogens
    back = Chem.SDMolSupplier(str(tmp_path / "s.sdf"), removeHs=False)
    for mol, want in zip(back, expected):
        Chem.AssignStereochemistryFrom3D(mol)
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == want


def test_invalid_samples_are_marked_in_smi_and_xyz(tmp_path):
    good, bad = embed("CCO")[2], Chem.Mol(embed("C#N")[2])
    good.SetIntProp("moldiff_valid", 1)
    bad.SetIntProp("moldiff_valid", 0)
    write_molecules([good, bad], tmp_path / "m.smi")
    write_molecules([good, bad], tmp_path / "m.xyz")
    smi = (tmp_path / "m.smi").read_text().splitlines()
    assert smi[0] == "CCO" and smi[1].endswith(" invalid")
    assert (tmp_path / "m.xyz").read_text().count("moldiff_valid=0") == 1


def test_files_without_hydrogens_get_a_warning(tmp_path, capsys):
    mol = Chem.RemoveHs(embed("CCO")[2])
    write_molecules([mol], tmp_path / "heavy.sdf")
    assert run(parse(tmp_path / "heavy.sdf", "--reference", "none")) == 0
    assert "no molecule has explicit hydrogens" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(BAD.iterdir()), ids=lambda p: p.name)
def test_corpus_of_bad_files_never_gives_a_traceback(path):
    done = subprocess.run([sys.executable, "-m", "moldiff", "evaluate", str(path), "--reference", "none"],
                          capture_output=True, timeout=120)
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    assert "Traceback" not in err and "\x1b" not in out + err, err[-500:]
    assert done.returncode in (0, 2), (done.returncode, err[-300:])
    assert err.strip(), "a bad file must be reported"
