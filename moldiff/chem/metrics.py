"""The benchmark metrics, each defined once. Pure RDKit + numpy (no torch).

Molecule-level figures are proportions reported with their count and a 95 % Wilson interval. Which
molecules a metric applies to is part of its definition: the distance protocol needs 3D coordinates; the
charge-aware stability and "sanitises as given" need the molecule's own bonds; a ``None`` entry (a sample
that could not be turned into a molecule at all) counts as a failure wherever molecules are counted.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
from rdkit import Chem, rdBase

from moldiff.chem.build import build_mol, mol_elements, mol_positions
from moldiff.chem.protocol import protocol_order_matrix, stable_atoms
from moldiff.chem.reference import ANGLE_EDGES, LENGTH_EDGES, Reference, bond_key, geometry_samples

CHARGED_VALENCES: dict[tuple[str, int], tuple[int, ...]] = {
    ("H", 0): (1,),
    ("B", 0): (3,), ("B", -1): (4,),
    ("C", 0): (4,), ("C", 1): (3,), ("C", -1): (3,),
    ("N", 0): (3,), ("N", 1): (4,), ("N", -1): (2,),
    ("O", 0): (2,), ("O", 1): (3,), ("O", -1): (1,),
    ("F", 0): (1,),
    ("Si", 0): (4,),
    ("P", 0): (3, 5), ("P", 1): (4,),
    ("S", 0): (2, 4, 6), ("S", 1): (3,), ("S", -1): (1,),
    ("Cl", 0): (1,), ("Br", 0): (1,), ("I", 0): (1,),
}
"""Charge-aware valence table: (element, formal charge) -> allowed total valences (bond orders + H).

Neutral carbon is 4-valent only (no neutral 3-valent carbon); a charged carbon (carbocation or carbanion)
is 3-valent. Any (element, charge) not listed makes the atom unstable.
"""


def quiet(fn: Callable) -> Callable:
    """Run ``fn`` with RDKit's log messages blocked (failures are results here, not news)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with rdBase.BlockLogs():
            return fn(*args, **kwargs)

    return wrapper


def wilson_interval(count: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion ``count / total`` ((0, 1) when total is 0)."""
    if total <= 0:
        return 0.0, 1.0
    p = count / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Proportion:
    """A proportion with its count, total and 95 % Wilson interval."""

    count: int
    total: int

    @property
    def value(self) -> float:
        return self.count / self.total if self.total else float("nan")

    def as_dict(self) -> dict:
        lo, hi = wilson_interval(self.count, self.total)
        return {"value": self.value, "count": self.count, "total": self.total, "ci95": [lo, hi]}


# ---------------------------------------------------------------- SMILES


@quiet
def canonical_smiles(mol: Chem.Mol) -> str | None:
    """Canonical SMILES without stereo and without hydrogens, or ``None`` when the molecule does not sanitise.

    Goes through a SMILES round trip because ``RemoveHs`` keeps some hydrogens (e.g. on imines).
    """
    work = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(work)
        work = Chem.RemoveHs(work)
        again = Chem.MolFromSmiles(Chem.MolToSmiles(work, isomericSmiles=False))
    except (ValueError, RuntimeError):
        return None
    return None if again is None else Chem.MolToSmiles(again, isomericSmiles=False)


@quiet
def canonical_from_smiles(smiles: str) -> str | None:
    """Canonical form (no stereo, no H) of a SMILES string, or ``None`` when RDKit rejects it."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol, isomericSmiles=False)


def largest_fragment(mol: Chem.Mol) -> Chem.Mol:
    """The fragment with the most atoms (hydrogens included), as EDM picks it."""
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return max(frags, key=lambda m: m.GetNumAtoms()) if frags else mol


# ---------------------------------------------------------------- per molecule


@dataclass
class Judgement:
    """Everything measured on one molecule; ``None`` where a metric does not apply."""

    elements: list[str] = field(default_factory=list)
    has_3d: bool = False
    has_bonds: bool = False
    stable_atoms: int | None = None       # protocol
    stable: bool | None = None            # protocol
    valid: bool | None = None             # protocol, EDM: whole molecule sanitises
    connected_valid: bool | None = None   # protocol: valid and a single fragment
    smiles: str | None = None             # protocol largest fragment (3D) or own bonds (no 3D)
    sanitises: bool | None = None         # own bonds, as given
    charge_stable_atoms: int | None = None
    charge_stable: bool | None = None
    order: np.ndarray | None = None       # protocol bond-order matrix
    pos: np.ndarray | None = None


def charge_aware_valences(mol: Chem.Mol) -> tuple[list[int | None], list[int]]:
    """Per atom: total valence from the molecule's own bonds (+ hydrogens not in the graph) and formal charge.

    Aromatic bonds are kekulised first; when that fails they count 1.5 and the valence is ``None``.
    """
    work = Chem.RWMol(mol)
    try:
        Chem.Kekulize(work, clearAromaticFlags=True)
        kekule = True
    except (ValueError, RuntimeError):
        kekule = False
    work.UpdatePropertyCache(strict=False)
    valences: list[int | None] = []
    for atom in work.GetAtoms():
        total = sum(b.GetBondTypeAsDouble() for b in atom.GetBonds())
        total += atom.GetNumExplicitHs() + (0 if atom.GetNoImplicit() else atom.GetNumImplicitHs())
        valences.append(int(round(total)) if kekule and float(total).is_integer() else None)
    return valences, [a.GetFormalCharge() for a in work.GetAtoms()]


def charge_stable_atoms(mol: Chem.Mol) -> np.ndarray:
    """Boolean per atom: its (element, formal charge) allows its own-bond valence (``CHARGED_VALENCES``)."""
    valences, charges = charge_aware_valences(mol)
    return np.array(
        [v is not None and v in CHARGED_VALENCES.get((e, c), ()) for e, v, c in zip(mol_elements(mol), valences, charges)],
        dtype=bool,
    )


def _sanitises(mol: Chem.Mol) -> bool:
    try:
        Chem.SanitizeMol(Chem.Mol(mol))
    except (ValueError, RuntimeError):
        return False
    return True


@quiet
def judge_protocol(elements: Sequence[str], pos: np.ndarray, judgement: Judgement | None = None) -> Judgement:
    """Protocol figures of one 3D structure: stability, validity, connected validity, SMILES."""
    j = judgement or Judgement(elements=list(elements))
    order = protocol_order_matrix(elements, pos)
    ok = stable_atoms(elements, order.sum(axis=1))
    j.has_3d, j.order, j.pos = True, order, np.asarray(pos, dtype=np.float64)
    j.stable_atoms, j.stable = int(ok.sum()), bool(ok.all())
    i, k = np.nonzero(np.triu(order, 1))
    try:  # build_mol refuses unknown elements and non-finite coordinates: such a structure is not valid
        mol = build_mol(elements, pos, [(a, b, order[a, b]) for a, b in zip(i, k)], implicit_hydrogens=True)
        Chem.SanitizeMol(mol)
        j.valid = True
    except (ValueError, RuntimeError):
        j.valid = False
    if j.valid:
        n_frags = len(Chem.GetMolFrags(mol))
        j.connected_valid = n_frags == 1
        j.smiles = canonical_smiles(largest_fragment(mol))
        j.valid = j.smiles is not None
        j.connected_valid = j.connected_valid and j.valid
    else:
        j.connected_valid = False
    return j


@quiet
def judge(mol: Chem.Mol | None) -> Judgement | None:
    """All per-molecule figures of ``mol``; ``None`` (a failure everywhere) for ``None`` or an empty molecule."""
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    elements = mol_elements(mol)
    j = Judgement(elements=elements)
    pos = mol_positions(mol)
    # Bonds are the molecule's own when it has any, or when it has no coordinates (a graph, e.g. SMILES "C");
    # a 3D structure without bonds (XYZ) has no bond information.
    j.has_bonds = mol.GetNumBonds() > 0 or pos is None
    if j.has_bonds:
        j.sanitises = _sanitises(mol)
        ok = charge_stable_atoms(mol)
        j.charge_stable_atoms, j.charge_stable = int(ok.sum()), bool(ok.all())
    if pos is not None and len(elements):
        judge_protocol(elements, pos, j)
    elif j.has_bonds and j.sanitises:
        j.smiles = canonical_smiles(mol)
    return j


# ---------------------------------------------------------------- distributions


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation distance ½ Σ |p(x) − q(x)| of two categorical distributions (normalised here)."""
    sp, sq = sum(p.values()) or 1.0, sum(q.values()) or 1.0
    return 0.5 * sum(abs(p.get(k, 0) / sp - q.get(k, 0) / sq) for k in set(p) | set(q))


def wasserstein1_hist(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float:
    """Wasserstein-1 distance between two histograms on the same ``edges`` (the area between their CDFs)."""
    ca = np.cumsum(a, dtype=np.float64)
    cb = np.cumsum(b, dtype=np.float64)
    if ca[-1] == 0 or cb[-1] == 0:
        return float("nan")
    return float(np.sum(np.abs(ca / ca[-1] - cb / cb[-1]) * np.diff(edges)))


def _w1_report(samples: dict[str, list[float]], ref: dict[str, np.ndarray], edges: np.ndarray, unit: str) -> dict:
    per_type, total_n, weighted = {}, 0, 0.0
    for key in sorted(set(samples) | set(ref)):
        vals = np.asarray(samples.get(key, []), dtype=np.float64)
        if key not in ref:
            per_type[key] = {"w1": None, "n": int(vals.size), "note": "type absent from the reference"}
            continue
        if vals.size == 0:
            continue
        hist = np.histogram(np.clip(vals, edges[0], edges[-1]), bins=edges)[0]
        w1 = wasserstein1_hist(hist, ref[key], edges)
        per_type[key] = {"w1": w1, "n": int(vals.size)}
        total_n += vals.size
        weighted += w1 * vals.size
    return {"value": weighted / total_n if total_n else float("nan"), "unit": unit, "per_type": per_type}


# ---------------------------------------------------------------- the entry point

DEFINITIONS: dict[str, str] = {
    "atom_stability": "protocol (3D): atoms whose sum of distance-rule bond orders equals their valence / atoms",
    "molecule_stability": "protocol (3D): molecules whose atoms are all stable / molecules",
    "validity": "protocol (3D), EDM: the distance-rule molecule (implicit H allowed) sanitises / molecules; "
                "its SMILES is the largest fragment's",
    "connected_validity": "protocol (3D): valid and a single fragment / molecules",
    "uniqueness": "unique canonical SMILES / valid molecules; the SMILES is the protocol's largest fragment for "
                  "3D molecules, else that of the molecule's own bonds",
    "novelty": "unique valid SMILES not among the training-split SMILES / unique valid SMILES",
    "sanitises_as_given": "own bonds and charges: the molecule as given sanitises / molecules with bonds",
    "charge_atom_stability": "own bonds and charges: atoms whose valence is allowed for (element, charge) / atoms",
    "charge_molecule_stability": "own bonds and charges: molecules whose atoms are all charge-aware stable / molecules",
    "atom_type_tv": "total variation distance between element frequencies and the training split's",
    "bond_length_w1": "Wasserstein-1 (Å) of protocol bond lengths per bond type vs the training split, "
                      "weighted by sample count",
    "bond_angle_w1": "Wasserstein-1 (degrees) of angles between protocol bonds per central element vs the "
                     "training split, weighted by sample count",
}


def evaluate(mols: Sequence[Chem.Mol | None], reference: Reference | None = None) -> dict:
    """All metrics of a set of molecules; ``reference`` (training statistics) enables novelty and distances.

    Returns ``{"n_molecules", "n_none", "metrics": {name: figures or {"skipped": reason}}}``; every entry
    carries its ``definition``.
    """
    return evaluate_judgements([judge(m) for m in mols], reference)


def evaluate_structures(
    structures: Iterable[tuple[Sequence[str], np.ndarray]], reference: Reference | None = None
) -> dict:
    """``evaluate`` for raw (elements, positions Å) pairs, e.g. decoded samples without bonds."""
    return evaluate_judgements([judge_protocol(e, p) for e, p in structures], reference)


def evaluate_judgements(judgements: Sequence[Judgement | None], reference: Reference | None = None) -> dict:
    """Aggregate per-molecule judgements into the metrics (see ``DEFINITIONS``)."""
    n_none = sum(j is None for j in judgements)
    real = [j for j in judgements if j is not None]
    three_d = [j for j in real if j.has_3d]
    bonded = [j for j in real if j.has_bonds]
    out: dict[str, dict] = {}

    def put(name: str, value: dict | str) -> None:
        out[name] = ({"skipped": value} if isinstance(value, str) else value) | {"definition": DEFINITIONS[name]}

    no_3d = "no molecule has 3D coordinates"
    if three_d:
        n3 = len(three_d) + n_none
        put("atom_stability", Proportion(sum(j.stable_atoms for j in three_d),
                                         sum(len(j.elements) for j in three_d)).as_dict())
        put("molecule_stability", Proportion(sum(j.stable for j in three_d), n3).as_dict())
        put("validity", Proportion(sum(j.valid for j in three_d), n3).as_dict())
        put("connected_validity", Proportion(sum(j.connected_valid for j in three_d), n3).as_dict())
    else:
        for name in ("atom_stability", "molecule_stability", "validity", "connected_validity"):
            put(name, no_3d)
    if bonded:
        nb = len(bonded) + n_none
        put("sanitises_as_given", Proportion(sum(j.sanitises for j in bonded), nb).as_dict())
        put("charge_atom_stability", Proportion(sum(j.charge_stable_atoms for j in bonded),
                                                sum(len(j.elements) for j in bonded)).as_dict())
        put("charge_molecule_stability", Proportion(sum(j.charge_stable for j in bonded), nb).as_dict())
    else:
        for name in ("sanitises_as_given", "charge_atom_stability", "charge_molecule_stability"):
            put(name, "no molecule carries its own bonds")

    smiles = [j.smiles for j in real if j.smiles is not None]
    unique = set(smiles)
    if smiles:
        put("uniqueness", Proportion(len(unique), len(smiles)).as_dict())
    else:
        put("uniqueness", "no valid molecule")
    if reference is None:
        put("novelty", "no reference given")
    elif not unique:
        put("novelty", "no valid molecule")
    else:
        put("novelty", Proportion(len(unique - reference.smiles), len(unique)).as_dict())

    if reference is None:
        for name in ("atom_type_tv", "bond_length_w1", "bond_angle_w1"):
            put(name, "no reference given")
    else:
        counts: dict[str, float] = {}
        for j in real:
            for e in j.elements:
                counts[e] = counts.get(e, 0) + 1
        if counts:
            put("atom_type_tv", {"value": total_variation(counts, reference.atom_types),
                                 "frequencies": {k: v / sum(counts.values()) for k, v in sorted(counts.items())}})
        else:
            put("atom_type_tv", "no atoms")
        if three_d:
            lengths: dict[str, list[float]] = {}
            angles: dict[str, list[float]] = {}
            for j in three_d:
                geometry_samples(j.elements, j.pos, j.order, lengths, angles)
            put("bond_length_w1", _w1_report(lengths, reference.bond_lengths, LENGTH_EDGES, "Å"))
            put("bond_angle_w1", _w1_report(angles, reference.bond_angles, ANGLE_EDGES, "degrees"))
        else:
            put("bond_length_w1", no_3d)
            put("bond_angle_w1", no_3d)
    return {"n_molecules": len(judgements), "n_none": n_none, "n_3d": len(three_d), "n_with_bonds": len(bonded),
            "metrics": out}


__all__ = [
    "CHARGED_VALENCES", "DEFINITIONS", "Judgement", "Proportion", "bond_key", "canonical_from_smiles",
    "canonical_smiles", "charge_aware_valences", "charge_stable_atoms", "evaluate", "evaluate_judgements",
    "evaluate_structures", "judge", "judge_protocol", "largest_fragment", "total_variation",
    "wasserstein1_hist", "wilson_interval",
]
