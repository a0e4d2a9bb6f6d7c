"""Sampling: sizes from p(N), the reverse chain in batches, and decoding to RDKit molecules."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from moldiff.data.qm9 import ATOM_TYPES, complete_pairs
from moldiff.diffusion.state import Graph, State
from moldiff.model import Generator
from moldiff.representation import decode
from moldiff.runtime import tune_allocator

if TYPE_CHECKING:  # RDKit is needed to decode molecules, not to run the chain (e.g. on a GPU machine)
    from rdkit import Chem

MAX_ATOMS = 200


def draw_sizes(hist: Sequence[int], n: int, generator: torch.Generator) -> list[int]:
    """n molecule sizes drawn from the histogram p(N) of the training set."""
    p = torch.tensor(hist, dtype=torch.float64)
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=generator).tolist()


def empty_graph(sizes: Sequence[int], h_dim: int, e_dim: int, device: torch.device) -> tuple[State, Graph]:
    """A zero state and the complete-graph bookkeeping for molecules of the given sizes."""
    sizes_t = torch.tensor(sizes, dtype=torch.long)
    offsets = torch.cumsum(sizes_t, 0) - sizes_t
    pairs = torch.cat([complete_pairs(n) + int(o) for n, o in zip(sizes, offsets)], dim=1)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes_t)
    n_atoms, n_pairs = int(sizes_t.sum()), pairs.shape[1]
    template = State(torch.zeros(n_atoms, 3, device=device), torch.zeros(n_atoms, h_dim, device=device),
                     torch.zeros(n_pairs, e_dim, device=device) if e_dim else None)
    return template, Graph(batch.to(device), pairs.to(device), len(sizes))


def _sanitised(mol: Chem.Mol, implicit_h: bool) -> Chem.Mol:
    """A sanitised copy of ``mol``; with ``implicit_h`` RDKit first fills the open valences of its (heavy)
    atoms with hydrogens, which are then added as atoms with 3D coordinates. Raises when RDKit refuses it."""
    from rdkit import Chem

    work = Chem.Mol(mol)  # built NoImplicit (build_mol's default): only implicit_h lets RDKit fill valences
    if implicit_h:
        for atom in work.GetAtoms():
            atom.SetNoImplicit(False)
    Chem.SanitizeMol(work)
    return Chem.AddHs(work, addCoords=True) if implicit_h else work


def _molecule(elements: list[str], pos: np.ndarray, charges: list[int],
              bonds: list[tuple[int, int, int]] | None, implicit_h: bool = False) -> Chem.Mol:
    """One decoded sample as an RDKit molecule, flagged with ``moldiff_valid`` and ``moldiff_error``."""
    from rdkit import Chem

    from moldiff.chem.build import build_mol
    from moldiff.chem.perceive import perceive_mol

    if bonds is not None:
        mol, error = build_mol(elements, pos, bonds, charges), None
        try:
            mol = _sanitised(mol, implicit_h)
        except (ValueError, RuntimeError) as err:
            error = f"sanitisation: {err}"
    else:
        mol, error = perceive_mol(elements, pos)
    mol.SetIntProp("moldiff_valid", int(error is None))
    if error:
        mol.SetProp("moldiff_error", error)
    return mol


def to_molecules(gen: Generator, out: State, graph: Graph) -> list[Chem.Mol]:
    """Decode a batch of final states into RDKit molecules.

    With bonds in the chain the molecule carries its own bonds and formal charges; otherwise bonds and
    charges are perceived from the coordinates (RDKit ``rdDetermineBonds``). Every sample is returned;
    property ``moldiff_valid`` (1/0) says whether RDKit sanitises it and ``moldiff_error`` why not.

    With implicit hydrogens (``features.implicit_h``) the chain's atoms are the heavy atoms: a molecule that
    sanitises gets its hydrogens from RDKit (each heavy atom's open valence, given its bonds and formal
    charge) as explicit atoms placed in 3D (``Chem.AddHs(addCoords=True)``), after the heavy atoms, whose
    coordinates are the chain's. One that does not sanitise is returned as generated, heavy atoms only and
    without hydrogens (every atom ``NoImplicit``), with ``moldiff_valid`` 0.
    """
    from rdkit import rdBase

    cfg = gen.config.features
    d = decode(out, cfg)
    batch = graph.batch.cpu()
    counts = torch.bincount(batch, minlength=graph.num_graphs)
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    pos = d.pos.detach().cpu().double().numpy()
    types, charges = d.atom_type.cpu().tolist(), d.charge.cpu().tolist()
    bonds_of: list[list[tuple[int, int, int]]] | None = None
    if d.bond is not None:
        bonds_of = [[] for _ in range(graph.num_graphs)]
        sel = d.bond.cpu() > 0
        pi = graph.pair_index.cpu()[:, sel]
        for i, j, order in zip(pi[0].tolist(), pi[1].tolist(), d.bond.cpu()[sel].tolist()):
            k = int(batch[i])
            bonds_of[k].append((i - starts[k], j - starts[k], order))
    mols = []
    with rdBase.BlockLogs():
        for k, (a, n) in enumerate(zip(starts, counts.tolist())):
            mols.append(_molecule([ATOM_TYPES[t] for t in types[a:a + n]], pos[a:a + n], charges[a:a + n],
                                  None if bonds_of is None else bonds_of[k], cfg.implicit_h))
    return mols


@torch.no_grad()
def generate_batches(gen: Generator, n: int, *, steps: int | None = None, seed: int = 0,
                     n_atoms: int | None = None, batch_size: int = 250, deterministic: bool = False,
                     spacing: str = "uniform", bf16: bool = False,
                     progress: bool = False) -> Iterator[list[Chem.Mol]]:
    """Sample ``n`` molecules, ``batch_size`` at a time; yields each batch's RDKit molecules.

    The same ``seed`` gives the same molecules (on the same device and thread count). Sizes (``n_atoms`` and
    p(N)) count the atoms of the chain: heavy atoms only for a model with implicit hydrogens. ``bf16`` runs the
    network's matrix multiplies under bf16 autocast (coordinates and the chain stay fp32): about 1.6× faster
    on a CPU with bf16 instructions, at the quality measured in benchmarks/README.md.
    """
    from tqdm import tqdm

    if n <= 0:
        raise ValueError(f"the number of molecules must be positive, got {n}")
    if n_atoms is not None and not 1 <= n_atoms <= MAX_ATOMS:
        raise ValueError(f"--atoms must be between 1 and {MAX_ATOMS}, got {n_atoms}")
    if batch_size <= 0:
        raise ValueError(f"the batch size must be positive, got {batch_size}")
    tune_allocator()
    device = gen.device
    g_sizes = torch.Generator().manual_seed(seed)
    sizes = [n_atoms] * n if n_atoms else draw_sizes(gen.stats.n_atoms_hist, n, g_sizes)
    g_chain = torch.Generator(device=device).manual_seed(seed + 1)
    cfg = gen.config.features
    steps_per_batch = len(gen.chain.timesteps(steps, spacing))
    bar = tqdm(total=steps_per_batch * ((n + batch_size - 1) // batch_size), disable=not progress,
               desc="sampling", unit="step", mininterval=1.0)
    gen.network.eval()
    for start in range(0, n, batch_size):
        chunk = sizes[start:start + batch_size]
        template, graph = empty_graph(chunk, cfg.h_dim, cfg.e_dim, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for t, out in gen.chain.sample_iter(gen.network, template, graph, steps, deterministic, g_chain,
                                                spacing):
                bar.update(1 if t >= 0 else 0)
        yield to_molecules(gen, out, graph)
    bar.close()


def generate(gen: Generator, n: int, **kwargs) -> list[Chem.Mol]:
    """``n`` sampled molecules as RDKit ``Mol``s with a 3D conformer (see :func:`generate_batches`)."""
    return [m for batch in generate_batches(gen, n, **kwargs) for m in batch]
