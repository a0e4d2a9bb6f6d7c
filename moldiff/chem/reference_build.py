"""Building the reference statistics of a set of molecules (SMILES for novelty, atom-type frequencies, bond
length and angle histograms). Separate from :mod:`moldiff.chem.reference` so that the imports run one way:
this module → metrics → reference."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from moldiff.chem.metrics import canonical_from_smiles, judge_protocol
from moldiff.chem.reference import ANGLE_EDGES, LENGTH_EDGES, Reference, geometry_samples


def build_reference(structures: Iterable[tuple[Sequence[str], np.ndarray, str | None]], name: str) -> Reference:
    """Reference statistics of (elements, positions Å, dataset SMILES or None) records."""
    smiles: set[str] = set()
    atoms: dict[str, float] = {}
    lengths: dict[str, list[float]] = {}
    angles: dict[str, list[float]] = {}
    n = 0
    for elements, pos, given in structures:
        n += 1
        j = judge_protocol(elements, pos)
        if j.smiles:
            smiles.add(j.smiles)
        if given:
            canon = canonical_from_smiles(given)
            if canon:
                smiles.add(canon)
        for e in elements:
            atoms[e] = atoms.get(e, 0) + 1
        geometry_samples(elements, pos, j.order, lengths, angles)

    def hist(samples: dict[str, list[float]], edges: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0].astype(np.int64)
                for k, v in samples.items()}

    return Reference(name, frozenset(smiles), atoms, hist(lengths, LENGTH_EDGES), hist(angles, ANGLE_EDGES), n)
