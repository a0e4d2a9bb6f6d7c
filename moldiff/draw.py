"""Pictures of molecules: an RDKit grid image."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rdkit import Chem, rdBase
from rdkit.Chem import Draw

from moldiff.io_utils import atomic_path


def _depiction(mol: Chem.Mol) -> Chem.Mol:
    """A 2D-drawable copy: hydrogens hidden where RDKit can, conformer dropped."""
    m = Chem.Mol(mol)
    try:
        m = Chem.RemoveHs(m, sanitize=False)
    except (ValueError, RuntimeError):
        pass
    m.RemoveAllConformers()
    m.UpdatePropertyCache(strict=False)
    return m


def draw_grid(mols: Sequence[Chem.Mol], path: str | Path, per_row: int = 5, max_mols: int = 100,
              highlight: int = 0) -> None:
    """Draw up to ``max_mols`` molecules into one PNG (invalid samples labelled), written atomically;
    ``highlight`` colours each molecule's first atoms (e.g. an inpainted fragment's)."""
    with rdBase.BlockLogs():
        shown = [_depiction(m) for m in mols[:max_mols]]
    legends = [f"#{k + 1}" + ("" if not m.HasProp("moldiff_valid") or m.GetIntProp("moldiff_valid") else " (invalid)")
               for k, m in enumerate(mols[:max_mols])]
    marks = None
    if highlight:
        marks = [[i for i in range(min(highlight, m.GetNumAtoms()))] for m in shown]
    image = Draw.MolsToGridImage(shown, molsPerRow=per_row, subImgSize=(250, 250), legends=legends,
                                 highlightAtomLists=marks)
    with atomic_path(path) as tmp:
        image.save(str(tmp), format="PNG")
