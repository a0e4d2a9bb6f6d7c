"""One molecule as the text of an SDF record, an XYZ record or a SMILES line.

Outputs round-trip: titles and property values lose control characters (a newline would break the record);
valid samples (int property ``moldiff_valid`` = 1) get their stereochemistry from their 3D coordinates, so
that the SMILES, the SDF and the geometry agree; invalid samples (``moldiff_valid`` = 0) are marked in the
SMILES title column (``invalid: <reason>``) and the XYZ comment line (``moldiff_valid=0``).
"""
from __future__ import annotations

from rdkit import Chem

from moldiff.chem.build import assign_stereo_from_3d, mol_positions
from moldiff.chem.text import clean_title

VALID_PROP = "moldiff_valid"
ERROR_PROP = "moldiff_error"


def sample_validity(mol: Chem.Mol) -> bool | None:
    """``moldiff_valid`` of a sample as a bool, ``None`` when the molecule does not carry it (or it is garbled)."""
    if not mol.HasProp(VALID_PROP):
        return None
    try:
        return bool(mol.GetIntProp(VALID_PROP))
    except (ValueError, RuntimeError):
        return None


def _title(mol: Chem.Mol) -> str:
    return clean_title(mol.GetProp("_Name")) if mol.HasProp("_Name") else ""


def _with_stereo(mol: Chem.Mol) -> Chem.Mol:
    """A copy of a valid sample with stereo from 3D; other molecules unchanged."""
    return assign_stereo_from_3d(Chem.Mol(mol)) if sample_validity(mol) else mol


def to_xyz(mol: Chem.Mol) -> str:
    """XYZ record; ``ValueError`` without 3D coordinates."""
    pos = mol_positions(mol)
    if pos is None:
        raise ValueError("no 3D coordinates")
    comment = _title(mol)
    if sample_validity(mol) is False:
        comment = f"moldiff_valid=0 {comment}".strip()
    lines = [str(mol.GetNumAtoms()), comment]
    lines += [f"{a.GetSymbol():<2} {x:12.6f} {y:12.6f} {z:12.6f}" for a, (x, y, z) in zip(mol.GetAtoms(), pos)]
    return "\n".join(lines) + "\n"


def to_sdf(mol: Chem.Mol) -> str:
    """SDF record: the mol block, the public properties as data items, ``$$$$``."""
    mol = Chem.Mol(_with_stereo(mol))
    mol.SetProp("_Name", _title(mol))
    block = Chem.MolToMolBlock(mol, kekulize=False)
    props = "".join(f">  <{clean_title(str(k))}>\n{clean_title(str(v))}\n\n"
                    for k, v in mol.GetPropsAsDict(includePrivate=False, includeComputed=False).items())
    return block + props + "$$$$\n"


def to_smiles(mol: Chem.Mol) -> str:
    """``SMILES [title]`` line: canonical isomeric SMILES without explicit hydrogens; an invalid sample's title
    column starts with ``invalid`` and its reason."""
    valid = sample_validity(mol)
    work = _with_stereo(mol)
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(work, sanitize=valid is not False))
    except (ValueError, RuntimeError):  # a molecule that does not sanitise: its graph as it is
        smiles = Chem.MolToSmiles(work)
    title = _title(mol)
    if valid is False:
        reason = clean_title(mol.GetProp(ERROR_PROP)) if mol.HasProp(ERROR_PROP) else ""
        title = " ".join(filter(None, ["invalid" + (f": {reason}" if reason else ""), title]))
    return f"{smiles} {title}".rstrip() + "\n"


WRITERS = {"sdf": to_sdf, "xyz": to_xyz, "smi": to_smiles}
"""File format -> record writer."""
