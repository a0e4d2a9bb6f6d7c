"""Shared test molecules: RDKit embeddings with fixed seeds and a QM9 test-split sample."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem


def embed(smiles: str, seed: int = 7) -> tuple[list[str], np.ndarray, Chem.Mol]:
    """Elements, coordinates (Å) and the hydrogen-complete molecule of an ETKDG embedding (fixed seed)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return [a.GetSymbol() for a in mol.GetAtoms()], mol.GetConformer().GetPositions(), mol


def relaxed(smiles: str, seed: int = 1) -> Chem.Mol:
    """The hydrogen-complete molecule of an ETKDG embedding (fixed seed) relaxed to its MMFF94 minimum."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return mol


def kekule_benzene(double: float = 1.34, single: float = 1.46, ch: float = 1.09) -> tuple[list[str], np.ndarray]:
    """Benzene with alternating C=C / C-C lengths (an equiangular hexagon) and C-H along the bisectors."""
    ring, point, angle = [], np.zeros(3), 0.0
    for k in range(6):
        ring.append(point.copy())
        step = double if k % 2 == 0 else single
        point = point + step * np.array([np.cos(angle), np.sin(angle), 0.0])
        angle += np.pi / 3
    ring = np.array(ring)
    hs = []
    for k in range(6):
        u = ring[k - 1] - ring[k]
        v = ring[(k + 1) % 6] - ring[k]
        out = -(u / np.linalg.norm(u) + v / np.linalg.norm(v))
        hs.append(ring[k] + ch * out / np.linalg.norm(out))
    return ["C"] * 6 + ["H"] * 6, np.vstack([ring, np.array(hs)])


@pytest.fixture(scope="session")
def qm9_test_sample():
    """1,000 QM9 test-split molecules: a fixed random subset (seed 0), as used by the row test."""
    from moldiff.evaluate import qm9_sample

    return qm9_sample("test", 1000, seed=0)
