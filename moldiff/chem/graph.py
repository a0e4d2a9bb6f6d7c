"""RDKit molecule <-> networkx graph (nodes: element, formal_charge, pos; edges: order)."""
from __future__ import annotations

import networkx as nx
import numpy as np
from rdkit import Chem

from moldiff.chem.build import build_mol, mol_bonds, mol_positions


def mol_to_nx(mol: Chem.Mol) -> nx.Graph:
    """Graph with one node per atom (index = atom index) and one edge per bond.

    Node attributes: ``element`` (symbol), ``formal_charge`` (int), ``pos`` (3-tuple of floats in Å, or
    ``None`` without a 3D conformer), ``num_hs`` (hydrogens not in the graph: explicit-count + implicit).
    Edge attribute: ``order`` (1/2/3, 4 = aromatic).
    """
    pos = mol_positions(mol)
    work = Chem.Mol(mol)
    work.UpdatePropertyCache(strict=False)
    g = nx.Graph()
    for atom in work.GetAtoms():
        k = atom.GetIdx()
        g.add_node(
            k,
            element=atom.GetSymbol(),
            formal_charge=atom.GetFormalCharge(),
            pos=None if pos is None else tuple(float(v) for v in pos[k]),
            num_hs=atom.GetTotalNumHs(),
        )
    for i, j, order in mol_bonds(mol):
        g.add_edge(i, j, order=order)
    return g


def nx_to_mol(g: nx.Graph) -> Chem.Mol:
    """Unsanitised molecule from a graph made by ``mol_to_nx`` (or with the same attributes).

    Nodes are taken in sorted order; ``pos`` on every node gives a 3D conformer; ``num_hs`` (optional)
    becomes the atom's explicit-H count.
    """
    nodes = sorted(g.nodes)
    index = {n: k for k, n in enumerate(nodes)}
    elements = [g.nodes[n]["element"] for n in nodes]
    charges = [int(g.nodes[n].get("formal_charge", 0)) for n in nodes]
    positions = [g.nodes[n].get("pos") for n in nodes]
    pos = np.asarray(positions, dtype=np.float64) if nodes and all(p is not None for p in positions) else None
    bonds = [(index[a], index[b], int(d.get("order", 1))) for a, b, d in g.edges(data=True)]
    mol = build_mol(elements, pos, bonds, charges)
    for n, atom in zip(nodes, mol.GetAtoms()):
        atom.SetNumExplicitHs(int(g.nodes[n].get("num_hs", 0)))
    return mol
