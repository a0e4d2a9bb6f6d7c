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


def _evaluate_cli(path) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "moldiff", "evaluate", str(path), "--reference", "none"],
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


def _assert_clean_failure(path, rc: int, out: str, err: str) -> None:
    """No traceback, no raw escape character, a known exit code, and every stderr line one whole message."""
    assert "Traceback" not in err and "\x1b" not in out + err, err[-500:]
    assert rc in (0, 2), (rc, err[-300:])
    assert err.strip(), "a bad file must be reported"
    for line in err.strip().splitlines():  # one line per message: each starts with the file or the command
        assert line.startswith((str(path), "moldiff evaluate:")) and len(line) < 600, line


@pytest.mark.parametrize("path", sorted(BAD.iterdir()), ids=lambda p: p.name)
def test_corpus_of_bad_files_never_gives_a_traceback(path):
    rc, out, err = _evaluate_cli(path)
    _assert_clean_failure(path, rc, out, err)


def _long_line(tmp: Path) -> Path:
    path = tmp / "long.smi"
    path.write_text("\x1b[2J" + "C" * (5 * 10**6) + " title\n")
    return path


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.xyz")
    return tmp / "pipe.xyz"


def _folder(tmp: Path) -> Path:
    (tmp / "folder.sdf").mkdir()
    return tmp / "folder.sdf"


def _zero(tmp: Path) -> Path:
    (tmp / "zero.smi").symlink_to("/dev/zero")
    return tmp / "zero.smi"


def _escape_name(tmp: Path) -> Path:
    path = tmp / "evil\x1b[2J.xyz"
    path.write_text("1\nx\nQq 0 0 0\n")
    return path


@pytest.mark.parametrize("make", [_long_line, _fifo, _folder, _zero, _escape_name], ids=lambda f: f.__name__[1:])
def test_generated_bad_inputs_through_evaluate(tmp_path, make):
    """Inputs too big or too odd to commit: a 5 MB line, a FIFO, a folder, /dev/zero, an escape in the name."""
    path = make(tmp_path)
    rc, out, err = _evaluate_cli(path)
    assert rc == 2, err
    _assert_clean_failure(str(path).replace("\x1b", "\\x1b"), rc, out, err)


def test_long_smiles_line_is_refused_without_parsing_or_keeping_it(tmp_path, monkeypatch):
    from moldiff.chem.readers import Lines

    seen: list[int] = []
    parse = Chem.MolFromSmiles
    monkeypatch.setattr(Chem, "MolFromSmiles", lambda s, *a, **k: seen.append(len(s)) or parse(s, *a, **k))
    path = tmp_path / "long.smi"
    path.write_text("CCO\n" + "C" * (5 * 10**6) + "\nC#N\n")
    got, errors = read_molecules(path)
    assert len(got) == 2 and len(errors) == 1 and "record 2 (line 2): 5,000,000 characters" in errors[0]
    assert f"limit of {MAX_RECORD_CHARS:,}: not parsed" in errors[0]
    assert seen == [3, 3]  # RDKit saw the two short records only
    with path.open() as stream:  # the reader keeps at most the limit of a line in memory
        lines = Lines(stream, limit=1000)
        first, long, last = lines.next(), lines.next(), lines.next()
    assert (first.text, last.text) == ("CCO", "C#N")
    assert long.too_long and long.length == 5 * 10**6 and len(long.text) == 1000 and long.number == 2


def test_v3000_counts_beyond_the_limit_are_refused_before_parsing(monkeypatch):
    monkeypatch.setattr("moldiff.chem.readers._parse_record", lambda *a: pytest.fail("RDKit was given the record"))
    got, errors = read_molecules(BAD / "huge_counts_v3000.sdf")
    assert not got and "1000000 atoms, more than the limit of 1000: not parsed" in errors[0]


def test_json_onto_a_device_or_folder_is_refused(tmp_path, capsys):
    path = tmp_path / "m.sdf"
    write_molecules([embed("CCO")[2]], path)
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path, Path("/dev/null")):
        assert run(parse(path, "--reference", "none", "--json", target)) == 2, target
        assert "refusing to replace it" in capsys.readouterr().err
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


def test_truncated_gzip_keeps_the_complete_records(tmp_path):
    plain = "".join(f"{'C' * k}O mol{k}\n" for k in range(1, 400))
    cut = gzip.compress(plain.encode())[:-40]
    path = tmp_path / "cut.smi.gz"
    path.write_bytes(cut)
    got, errors = read_molecules(path)
    assert 0 < len(got) < 399 and len(errors) == 1 and "truncated gzip file" in errors[0]
    assert [m.GetProp("_Name") for m in got] == [f"mol{k}" for k in range(1, len(got) + 1)]
    got, errors = read_molecules(tmp_path / "absent.sdf.gz")
    assert not got and "cannot read" in errors[0]


def test_writers_take_stereo_from_the_geometry_of_valid_samples(tmp_path):
    """A valid sample whose stereo tags were never set (as decoded from the network) gets them from its 3D
    coordinates when written; an invalid one is written as it is, and marked with its reason."""
    mols, expected = [], []
    for k, smiles in enumerate(["C[C@@H](O)CC", "F/C=C/F", "F/C=C\\F"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert AllChem.EmbedMolecule(mol, randomSeed=k) == 0
        Chem.RemoveStereochemistry(mol)
        mol.SetIntProp("moldiff_valid", 1)
        mols.append(mol)
        expected.append(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    bad = Chem.Mol(mols[0])
    bad.SetIntProp("moldiff_valid", 0)
    bad.SetProp("moldiff_error", "sanitisation: explicit valence\nfor atom # 3")
    write_molecules(mols + [bad], tmp_path / "s.smi")
    lines = (tmp_path / "s.smi").read_text().splitlines()
    assert [line.split()[0] for line in lines[:3]] == expected
    assert "@" not in lines[3].split()[0] and lines[3].endswith(" invalid: sanitisation: explicit valence for atom # 3")
    assert not any(a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for a in mols[0].GetAtoms())  # not mutated


def test_sdf_property_values_cannot_break_records(tmp_path):
    mol = embed("CCO")[2]
    mol.SetProp("moldiff_error", "line one\n\n$$$$\n>  <x>\nnot a property")
    write_molecules([mol, embed("C#N")[2]], tmp_path / "p.sdf")
    got, errors = read_molecules(tmp_path / "p.sdf")
    assert len(got) == 2 and not errors
    assert got[0].GetProp("moldiff_error") == "line one $$$$ > <x> not a property"  # one line, read back


def test_rdkit_logging_stays_on_for_the_process(tmp_path, capfd):
    """Readers, metrics and perception block RDKit's log only around their own calls."""
    from moldiff.chem.metrics import evaluate
    from moldiff.chem.perceive import perceive_mol

    (tmp_path / "bad.smi").write_text("C1CC( x\nCCO\n")
    got, _ = read_molecules(tmp_path / "bad.smi")
    evaluate(got)
    perceive_mol(["C", "O"], [[0, 0, 0], [0.2, 0, 0]])
    capfd.readouterr()
    assert Chem.MolFromSmiles("C1CC(") is None
    assert "SMILES Parse Error" in capfd.readouterr().err


def test_hueckel_warnings_are_silenced_and_stderr_restored(capfd):
    """YAeHMOP prints "!!! Warning !!!" lines straight to fd 2; perception hides them and gives fd 2 back, also
    when threads perceive at once."""
    import numpy as np

    from moldiff.chem.perceive import perceive_mol

    before = os.fstat(2)
    pos = np.array([[0, 0, 0], [0.3, 0, 0], [0, 0.35, 0], [1.2, 1.2, 0]])
    threads = [threading.Thread(target=lambda: [perceive_mol(["C", "O", "N", "H"], pos) for _ in range(5)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    os.write(2, b"still here\n")
    err = capfd.readouterr().err
    assert "still here" in err and "!!! Warning" not in err
