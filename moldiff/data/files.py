"""The reader of a user's own molecules: an SDF (3D coordinates used as they are) or a SMILES file (conformers
from RDKit ETKDGv3 + MMFF94, seeded), packed into a store with a fixed-seed split and cached on disk by the
file's content."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from moldiff.data.store import MoleculeRecord, pack_records
from moldiff.io_utils import atomic_path, atomic_write_text
from moldiff.paths import data_dir

FORMAT = 1
SPLIT_SEED = 0
VALID_FRACTION = TEST_FRACTION = 0.05


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (the cache key: the same content, the same processed store)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_of(mol, seed: int = 0):
    """A MoleculeRecord with explicit hydrogens, kekulised bond orders and formal charges, or (None, why).
    A molecule without 3D coordinates gets an ETKDGv3 conformer relaxed with MMFF94 (seeded)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    try:
        mol = Chem.Mol(mol)
        Chem.SanitizeMol(mol)
        has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
        mol = Chem.AddHs(mol, addCoords=has_3d)
        if not has_3d:
            params = AllChem.ETKDGv3()
            params.randomSeed = seed
            if AllChem.EmbedMolecule(mol, params) != 0:
                return None, "no conformer (ETKDGv3 failed)"
            if AllChem.MMFFHasAllMoleculeParams(mol):
                AllChem.MMFFOptimizeMolecule(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except (ValueError, RuntimeError) as err:
        return None, f"not usable: {str(err).splitlines()[0][:80]}"
    orders = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    bonds = []
    for b in mol.GetBonds():
        if b.GetBondType() not in orders:
            return None, f"bond of type {b.GetBondType()} (only single, double, triple)"
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        bonds.append((i, j, orders[b.GetBondType()]))
    return MoleculeRecord(tuple(a.GetSymbol() for a in mol.GetAtoms()), mol.GetConformer().GetPositions(),
                          np.array([a.GetFormalCharge() for a in mol.GetAtoms()]),
                          np.array(sorted(bonds), dtype=np.int64).reshape(-1, 3),
                          smiles=Chem.MolToSmiles(Chem.RemoveHs(mol))), None


def split(n: int, seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """A fixed-seed split: 5 % validation, 5 % test (at least one each from three molecules on), the rest train."""
    perm = np.random.RandomState(seed).permutation(n)
    n_valid = max(1 if n >= 3 else 0, int(round(n * VALID_FRACTION)))
    n_test = max(1 if n >= 3 else 0, int(round(n * TEST_FRACTION)))
    parts = {"valid": perm[:n_valid], "test": perm[n_valid:n_valid + n_test], "train": perm[n_valid + n_test:]}
    return {k: torch.from_numpy(np.sort(v).astype(np.int64)) for k, v in parts.items()}


def load_file(path: str | Path, root: str | Path | None = None, seed: int = 0, say=print) -> dict:
    """The store of a molecule file (processed once, then read from the cache). Bad records are skipped,
    counted in one line and listed (with their record numbers) in ``<cache>.skipped.txt``; a file with no
    usable record raises ValueError."""
    from moldiff.chem.io import read_molecules

    path = Path(path)
    digest = file_digest(path) if path.is_file() else ""
    cache = data_dir(root) / "files" / f"{path.stem}-{digest[:16]}-s{seed}-v{FORMAT}.pt"
    if digest and cache.exists():
        blob = torch.load(cache, weights_only=True)
        if blob.get("format") == FORMAT and blob.get("source_sha256") == digest:
            return blob
    mols, problems = read_molecules(path)
    records, skipped = [], list(problems)
    for mol in mols:
        rec, why = record_of(mol, seed)
        if rec is None:
            skipped.append(f"{mol.GetProp('moldiff_source') if mol.HasProp('moldiff_source') else '?'}: {why}")
        else:
            records.append(rec)
    if not records:
        raise ValueError(f"{path}: no usable molecule ({len(skipped)} record(s) skipped: "
                         f"{skipped[0] if skipped else 'empty'})")
    blob = pack_records(records)
    blob.update({"format": FORMAT, "source": str(path), "source_sha256": digest, "split_seed": SPLIT_SEED,
                 "splits": split(len(records)), "skipped": len(skipped)})
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        torch.save(blob, tmp)
    log = cache.with_suffix(".skipped.txt")
    atomic_write_text(log, "".join(f"{line}\n" for line in skipped))
    say(f"{path}: {len(records)} molecules kept, {len(skipped)} skipped (listed in {log})")
    return blob
