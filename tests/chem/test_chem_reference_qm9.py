"""The QM9 reference (moldiff.data.reference_qm9): progress and real duration of a build, cache on first use,
and the import rules of moldiff.chem (one-way imports, no datasets, RDKit logging never switched off)."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import moldiff.chem
from moldiff.data import reference_qm9
from moldiff.evaluate import add_arguments, run

from .conftest import embed

CHEM = Path(moldiff.chem.__file__).parent


def parse(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moldiff evaluate")
    add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_partial_build_shows_progress_and_its_duration(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLDIFF_DATA", str(tmp_path))
    said: list[str] = []
    ref = reference_qm9.load_reference("qm9", progress=True, limit=25, say=said.append)
    assert ref.n_molecules == 25 and ref.name == "qm9-train" and len(ref.smiles) >= 25
    assert set(ref.atom_types) <= {"H", "C", "N", "O", "F"} and ref.atom_types["H"] > 0
    assert len(said) == 1 and said[0].startswith("built the QM9 reference (25 molecules) in ")
    assert "not cached" in said[0] and not list(tmp_path.iterdir())  # a partial build is never cached
    assert "QM9 reference" in capsys.readouterr().err  # the progress bar, on stderr


def test_first_evaluate_builds_caches_and_reports_the_duration(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLDIFF_DATA", str(tmp_path / "cache"))
    full = reference_qm9.qm9_train_records
    monkeypatch.setattr(reference_qm9, "qm9_train_records", lambda limit=None: full(30))  # 30 molecules, not 100,000
    sdf = tmp_path / "m.sdf"
    from moldiff.chem.io import write_molecules

    write_molecules([embed("CCO")[2], embed("C#N")[2]], sdf)
    assert run(parse(sdf)) == 0
    err = capsys.readouterr().err
    cached = reference_qm9.reference_path("qm9")
    assert "computing the qm9 training reference once" in err and "QM9 reference" in err
    assert "built the QM9 reference (30 molecules) in " in err and f"cached at {cached}" in err
    assert cached.is_file()
    assert run(parse(sdf)) == 0  # the second time: read from the cache, nothing built
    assert "built the QM9 reference" not in capsys.readouterr().err


def _imports(path: Path) -> set[str]:
    """Modules imported anywhere in ``path`` (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_chem_imports_run_one_way():
    graph = {f"moldiff.chem.{p.stem}": {n for n in _imports(p) if n.startswith("moldiff.chem.")}
             for p in CHEM.glob("*.py") if p.stem != "__init__"}
    assert "moldiff.chem.metrics" not in graph["moldiff.chem.reference"]

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " -> ".join(path + (node,))
        for nxt in graph.get(node, ()):
            visit(nxt, path + (node,))

    for module in graph:
        visit(module, ())


def test_chem_never_switches_rdkit_logging_off():
    for path in CHEM.glob("*.py"):
        text = path.read_text()
        assert "DisableLog" not in text and "RDLogger" not in text, path
