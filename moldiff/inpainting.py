"""Keep a fragment, generate the rest: inpainting with a trained (unconditional) model, no retraining.

At every reverse step the fragment's atoms, their features and the bonds among them are replaced by a draw of
q(z_s | x_fragment) (:class:`PinFragment`); RePaint-style resampling (:func:`moldiff.sampling.repaint_times`)
walks each block of steps several times so that the generated part agrees with the fixed one, and
reconstruction guidance (:class:`ReconstructionGuidance`) moves the new atoms down the gradient of the
model's disagreement with what is known. Frames: the
chain lives at zero centre of mass, so the pinned fragment sits where the model's clean estimate x̂ puts its
centroid (which depends on the atoms still to come), and the
final molecule is translated so that the fragment sits exactly at its input coordinates (no rotation, no
alignment of the fragment itself: its atoms are written as given).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.utils import scatter

from moldiff.data.store import make_data, pair_position
from moldiff.diffusion.chain import DiffusionChain
from moldiff.model import Generator
from moldiff.representation import encode
from moldiff.sampling import (MoleculeNoise, SIZE_STREAM, check_size, empty_graph, finite_molecules, molecule_seed,
                              repaint_times, run_chain, to_molecules, _zero_nonfinite)
from moldiff.state import Graph, State, per_graph, remove_mean

PIN_STREAM = -2  # the molecule_seed "attempt" of the fragment's own noise draws
DEFAULT_JUMP = 10
DEFAULT_RESAMPLINGS = 3  # measured: benchmarks/results/inpaint_qm9.md, inpaint_moses*.md
DEFAULT_GUIDANCE = 3.0  # measured: benchmarks/results/inpaint_qm9.md, inpaint_moses*.md
MAX_SHIFT = 0.5  # the most reconstruction guidance moves one row of x̂ in one step (Å for coordinates)
BOND_REACH = 2.0  # Å: a bond counts toward a new atom's degree only between atoms about this close
REACH_WIDTH = 0.1  # Å: how sharply that reach falls off (a sigmoid)
MIN_SEPARATION = 0.5  # Å: two fragment atoms closer than this are not a 3D structure (e.g. all at the origin)
APART = 2.0  # Å: a new atom held at "no bond" to a fragment atom is kept at least this far from it


@dataclass(frozen=True)
class Fragment:
    """The atoms to keep: elements, formal charges, coordinates (Å, the user's frame), bonds among them
    (i < j, order 1/2/3), which atoms may gain bonds to new atoms (``anchors``) and how many bond orders each
    may gain (``capacity``: its hydrogens plus its bonds to atoms left out; 0 for non-anchors). The new atoms
    take the place of those hydrogens and atoms, so a fragment atom never ends up over its valence."""

    elements: tuple[str, ...]
    charges: tuple[int, ...]
    pos: np.ndarray  # (K, 3)
    bonds: tuple[tuple[int, int, int], ...]
    anchors: tuple[bool, ...]
    capacity: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.elements)

    @property
    def capacities(self) -> tuple[int, ...]:
        """Bond orders each atom may gain (no limit given: every anchor up to 3)."""
        return self.capacity or tuple(3 if a else 0 for a in self.anchors)

    @staticmethod
    def from_mol(mol: Chem.Mol, keep: Sequence[int] | None = None, anchors: Sequence[int] | None = None,
                 hydrogens: bool = False) -> "Fragment":
        """The fragment of ``mol`` (its first conformer): atoms ``keep`` (1-based atom numbers of the file;
        default all), hydrogens dropped unless ``hydrogens``; ``anchors`` (1-based, default: every kept atom).
        Aromatic bonds are kekulised. Raises ValueError with a one-line reason."""
        if mol is None or mol.GetNumConformers() == 0:
            raise ValueError("the fragment needs 3D coordinates (an SDF/MOL record with a conformer)")
        if not mol.GetConformer().Is3D():
            raise ValueError("the fragment has 2D coordinates (a drawing): it needs 3D ones (embed it first, "
                             "e.g. RDKit's EmbedMolecule)")
        work = Chem.Mol(mol)
        try:
            Chem.SanitizeMol(work)
            Chem.Kekulize(work, clearAromaticFlags=True)
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"the fragment does not sanitise in RDKit: {str(err).splitlines()[0][:100]}") from None
        n = work.GetNumAtoms()
        chosen = list(range(1, n + 1)) if keep is None else list(keep)
        for k in chosen + list(anchors or []):
            if not 1 <= k <= n:
                raise ValueError(f"atom number {k} is not in the fragment (atoms 1–{n})")
        chosen = [k - 1 for k in dict.fromkeys(chosen)
                  if hydrogens or work.GetAtomWithIdx(k - 1).GetAtomicNum() != 1]
        if not chosen:
            raise ValueError("no atoms of the fragment are kept")
        index = {a: i for i, a in enumerate(chosen)}
        orders = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
        bonds = []
        for b in work.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            if i in index and j in index:
                if b.GetBondType() not in orders:
                    raise ValueError(f"bond {i + 1}–{j + 1} is {b.GetBondType()}: only single, double, triple")
                a, c = sorted((index[i], index[j]))
                bonds.append((a, c, orders[b.GetBondType()]))
        anchor_set = None if anchors is None else {k - 1 for k in anchors}
        is_anchor = tuple(anchor_set is None or a in anchor_set for a in chosen)
        capacity = []
        for a, anchor in zip(chosen, is_anchor):
            atom = work.GetAtomWithIdx(a)
            free = atom.GetTotalNumHs(includeNeighbors=not hydrogens)  # the hydrogens new atoms may replace
            free += sum(int(b.GetBondTypeAsDouble()) for b in atom.GetBonds()  # bonds to heavy atoms left out
                        if b.GetOtherAtomIdx(a) not in index and (hydrogens or b.GetOtherAtom(atom).GetAtomicNum() != 1))
            capacity.append(free if anchor else 0)
        pos = work.GetConformer().GetPositions()[chosen]
        if len(chosen) > 1:
            d = Chem.Get3DDistanceMatrix(work)[np.ix_(chosen, chosen)] + np.eye(len(chosen)) * 1e9
            i, j = np.unravel_index(int(d.argmin()), d.shape)
            if d[i, j] < MIN_SEPARATION:
                raise ValueError(f"atoms {chosen[i] + 1} and {chosen[j] + 1} of the fragment are {d[i, j]:.2f} Å "
                                 "apart: these are not the coordinates of a 3D structure")
        return Fragment(tuple(work.GetAtomWithIdx(a).GetSymbol() for a in chosen),
                        tuple(work.GetAtomWithIdx(a).GetFormalCharge() for a in chosen), pos, tuple(sorted(bonds)),
                        is_anchor, tuple(capacity))


def combine(mols: Sequence[Chem.Mol]) -> Chem.Mol:
    """Several fragment records as one molecule (e.g. two fragments to link), conformers kept."""
    out = mols[0]
    for m in mols[1:]:
        out = Chem.CombineMols(out, m)
    return out


class PinFragment:
    """A sampling hook that keeps the first K atoms of every molecule (and the pairs among them, and the
    pairs between non-anchor atoms and new atoms as "no bond") at a draw of q(z_s | known) each step, and
    exactly at the known values in the end, with the molecule moved so that the fragment sits at ``pos``."""

    def __init__(self, chain: DiffusionChain, known: State, masks: dict[str, torch.Tensor], pos: torch.Tensor,
                 noise: MoleculeNoise, links: dict | None = None):
        self.schedule, self.known, self.masks, self.pos, self.noise = chain.schedule, known, masks, pos, noise
        self.links = links

    def _cap_links(self, e: torch.Tensor) -> None:
        """The bonds between fragment atoms and new atoms, read off the final x̂, kept within each fragment
        atom's capacity: its bonds in order of the model's confidence, an order that no longer fits lowered to
        the best one that does (or none)."""
        L = self.links
        rows, owner, capacity, orders = L["rows"], L["owner"], L["capacity"], L["orders"]
        scores = e[rows].float()
        for k in torch.unique(owner).tolist():
            mine = (owner == k).nonzero().flatten()
            left = int(capacity[k])
            for r in mine[scores[mine].max(1).values.argsort(descending=True)].tolist():
                fits = (orders <= left).nonzero().flatten()
                best = fits[scores[r, fits].argmax()]
                left -= int(orders[best])
                row = torch.zeros(e.shape[1], dtype=e.dtype, device=e.device)
                row[best] = L["scale"]
                e[rows[r]] = row

    def _centroid(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        rows = self.masks["x"]
        return scatter(x[rows], graph.batch[rows], dim=0, dim_size=graph.num_graphs, reduce="mean")  # (G, 3)

    def __call__(self, t: int, s: int, out, graph: Graph) -> State:
        z = out.prev
        x, h = z.x.clone(), z.h.clone()
        e = None if z.e is None else z.e.clone()
        mx, mh, me = self.masks["x"], self.masks["h"], self.masks.get("e")
        if s < 0:
            shift = self._centroid(self.pos.to(x.dtype), graph) - self._centroid(x, graph)
            x = x + shift[graph.batch]
            x[mx] = self.pos[mx].to(x.dtype)
            h[mh] = self.known.h[mh].to(h.dtype)
            if e is not None and me is not None:
                e[me] = self.known.e[me].to(e.dtype)
            if e is not None and self.links is not None:
                self._cap_links(e)
            return State(x, h, e)
        eps = self.noise(z, graph)
        s_t = torch.tensor([s], device=x.device)
        a, sd = self.schedule.alpha(s_t, x.dtype), self.schedule.sigma(s_t, x.dtype)
        centred = self.pos.to(x.dtype) - self._centroid(self.pos.to(x.dtype), graph)[graph.batch]
        pinned = a * centred + sd * eps.x
        # the fragment's centroid in the zero-CoM frame is where the model's clean estimate x̂ puts it (it
        # depends on where the new atoms will be); following the noisy proposal instead lets it drift
        x0 = remove_mean(out.x0_hat.x, graph.batch, graph.num_graphs)
        pinned = pinned - self._centroid(pinned, graph)[graph.batch] + a * self._centroid(x0, graph)[graph.batch]
        x[mx] = pinned[mx]
        x = remove_mean(x, graph.batch, graph.num_graphs)
        h[mh] = (a * self.known.h + sd * eps.h)[mh]
        if e is not None and me is not None:
            e[me] = (a * self.known.e + sd * eps.e)[me]
        return State(x, h, e)


class ReconstructionGuidance:
    """The network's ε̂ with reconstruction guidance toward the fragment: the clean estimate x̂(z_t) is moved
    down the gradient of its squared disagreement with what is known (the fragment's centred coordinates,
    its atom features, its bonds and the "no bond" pairs of atoms that cannot take more), x̃ = x̂ − (w α_t/2)
    ∇_z ‖known − x̂_known(z_t)‖² (Ho et al., video diffusion), and ε̂ is rewritten to match x̃. Replacing the
    known atoms alone tells the new atoms where the fragment is, not what its atoms cannot bond to; the
    gradient does. With ``connect`` (the default) the disagreement also holds two soft constraints on the new
    atoms: each bonds to a partner within reach (:meth:`_lone_atoms`) and none sits at bonding distance of a
    fragment atom it may not bond to (:meth:`_too_close`). ``weight`` 0 is the network itself."""

    def __init__(self, network, chain: DiffusionChain, known: State, masks: dict[str, torch.Tensor], pos: torch.Tensor,
                 weight: float, links: dict | None = None, connect: bool = True):
        if not 0 <= weight < float("inf"):
            raise ValueError(f"the guidance weight must be a finite number ≥ 0, got {weight}")
        self.network, self.chain, self.known, self.masks, self.weight = network, chain, known, masks, weight
        self.pos, self.links, self.connect = pos, links, connect

    def _disagreement(self, x0: State, graph: Graph) -> torch.Tensor:
        mx = self.masks["x"]
        b = graph.batch[mx]
        pos = self.pos.to(x0.x.dtype)[mx]
        centre = lambda v: v - scatter(v, b, dim=0, dim_size=graph.num_graphs, reduce="mean")[b]
        loss = ((centre(x0.x[mx]) - centre(pos)) ** 2).sum()
        loss = loss + ((x0.h[self.masks["h"]] - self.known.h[self.masks["h"]].to(x0.h.dtype)) ** 2).sum()
        me = self.masks.get("e")
        if x0.e is not None and me is not None:
            loss = loss + ((x0.e[me] - self.known.e[me].to(x0.e.dtype)) ** 2).sum()
        L = self.links
        if x0.e is not None and L is not None:  # bond orders to new atoms beyond a fragment atom's capacity
            order = (x0.e.clamp_min(0) / L["scale"] * L["orders"].to(x0.e.dtype)).sum(1)  # expected, per pair
            gained = scatter(order[L["rows"]], L["owner"], dim=0, dim_size=L["capacity"].shape[0], reduce="sum")
            loss = loss + (L["scale"] * (gained - L["capacity"].to(gained.dtype)).clamp_min(0)).pow(2).sum()
            if self.connect:
                loss = loss + self._lone_atoms(x0, graph, order) + self._too_close(x0, graph)
        return loss

    def _lone_atoms(self, x0: State, graph: Graph, order: torch.Tensor) -> torch.Tensor:
        """Every new atom bonds to something: a hinge on its expected bond-order sum (``order``: per pair)
        below 1."""
        i, j = graph.pair_index
        near = torch.sigmoid((BOND_REACH - (x0.x[i] - x0.x[j]).norm(dim=-1)) / REACH_WIDTH)  # a partner near
        order = order * near
        if self.masks.get("e") is not None:  # a pair held at "no bond" is no partner
            order = order.masked_fill(self.masks["e"], 0)
        degree = scatter(order.repeat(2), graph.pair_index.flatten(), dim=0, dim_size=x0.x.shape[0], reduce="sum")
        new = ~self.masks["x"]
        return (1 - degree[new]).clamp_min(0).pow(2).sum()

    def _too_close(self, x0: State, graph: Graph) -> torch.Tensor:
        """A new atom that may not bond to a fragment atom (the pair is held at "no bond") is kept out of
        bonding distance of it: a hinge on their distance below APART."""
        me, mx = self.masks.get("e"), self.masks["x"]
        if me is None:
            return x0.x.new_zeros(())
        i, j = graph.pair_index
        held = me & (mx[i] != mx[j])
        d = (x0.x[i[held]] - x0.x[j[held]]).norm(dim=-1)
        return (APART - d).clamp_min(0).pow(2).sum()

    def __call__(self, z: State, t_frac: torch.Tensor, graph: Graph, *extra) -> State:
        t = (t_frac * self.chain.T).round().long()
        if self.weight == 0 or int(t.min()) == 0:
            return self.network(z, t_frac, graph, *extra)
        with torch.enable_grad():
            zg = z.map(lambda f, kind: f.detach().requires_grad_(True))
            eps = self.network(zg, t_frac, graph, *extra)
            x0 = self.chain.predict_x0(zg, eps, t, graph)
            fields = [f for f in (zg.x, zg.h, zg.e) if f is not None]
            grads = torch.autograd.grad(self._disagreement(x0, graph), fields)
        a, sd = self.chain.schedule.alpha(t, z.x.dtype), self.chain.schedule.sigma(t, z.x.dtype)
        names = [k for k in ("x", "h", "e") if getattr(zg, k) is not None]
        out = {}
        for k, g in zip(names, grads):
            if self.masks.get(k) is not None:  # the known rows are pinned by PinFragment: guide the generated part
                g = g.masked_fill(self.masks[k].unsqueeze(-1), 0)
            if k == "x":
                g = remove_mean(g, graph.batch, graph.num_graphs)
            shift = per_graph(self.weight * a / 2, k, graph) * torch.nan_to_num(g)  # of x̂: x̃ = x̂ − shift
            norm = shift.norm(dim=-1, keepdim=True)
            shift = shift * (MAX_SHIFT / norm.clamp_min(MAX_SHIFT))  # a trust region: no row moves more than that
            out[k] = getattr(eps, k).detach() + per_graph(a / sd, k, graph) * shift  # ε̃ = (z − α x̃)/σ
        return State(out["x"], out["h"], out.get("e"))


def check_request(gen: Generator, fragment: Fragment, n_add: int | tuple[int, int], n: int, seed: int) -> list[int]:
    """Atoms to add per molecule, after checking that the model can make the fragment and the sizes asked
    for (ValueError with a one-line reason otherwise)."""
    cfg = gen.config.features
    vocab = cfg.vocab
    missing = [e for e in fragment.elements if e not in vocab.elements]
    if missing:
        raise ValueError(f"the fragment holds {missing[0]}, which the model cannot make (elements "
                         f"{', '.join(vocab.elements)})")
    bad_charge = [c for c in fragment.charges if c not in (cfg.charges or (0,))]
    if bad_charge:
        raise ValueError(f"the fragment holds formal charge {bad_charge[0]:+d}, outside the model's "
                         f"{tuple(cfg.charges or (0,))}")
    bad_order = [o for *_, o in fragment.bonds if o not in vocab.bond_orders]
    if bad_order:
        raise ValueError(f"the fragment holds a bond of order {bad_order[0]}, outside the model's {vocab.bond_orders}")
    if n <= 0:
        raise ValueError(f"the number of molecules must be positive, got {n}")
    adds = draw_additions(n_add, n, seed)
    if min(adds) < 1:
        raise ValueError("--add must be at least 1")
    lo, hi = gen.stats.size_range
    for total in sorted({fragment.size + a for a in adds}):
        if hi and not lo <= total <= hi:
            what = "heavy atoms" if cfg.implicit_h else "atoms"
            raise ValueError(f"the fragment's {fragment.size} atoms + {total - fragment.size} added = {total} "
                             f"{what}, but this model was trained on molecules of {lo}–{hi} {what}")
        check_size(gen, total)
    return adds


def _known_state(gen: Generator, fragment: Fragment, sizes: list[int]):
    """The known values and masks of a batch whose molecules start with the fragment's atoms."""
    cfg = gen.config.features
    vocab = cfg.vocab
    K = fragment.size
    template, graph = empty_graph(sizes, cfg.h_dim, cfg.e_dim, gen.device)
    data = make_data(torch.tensor([vocab.elements.index(e) for e in fragment.elements]),
                     torch.tensor(fragment.pos, dtype=torch.float32), torch.tensor(fragment.charges),
                     torch.tensor(fragment.bonds, dtype=torch.long).reshape(-1, 3), vocab.atomic_numbers)
    from torch_geometric.data import Batch

    frag_state, _ = encode(Batch.from_data_list([data]), cfg)
    n_atoms = graph.n_atoms.tolist()
    starts = np.cumsum([0] + n_atoms[:-1])
    mask_x = torch.zeros(template.x.shape[0], dtype=torch.bool)
    h = template.h.clone()
    pos = template.x.clone()
    for st in starts:
        mask_x[st:st + K] = True
        h[st:st + K] = frag_state.h
        pos[st:st + K] = torch.tensor(fragment.pos, dtype=pos.dtype)
    masks = {"x": mask_x.to(gen.device), "h": mask_x.to(gen.device)}
    e, links = None, None
    if template.e is not None:
        e = template.e.clone()
        mask_e = torch.zeros(e.shape[0], dtype=torch.bool)
        frag_pairs = torch.triu_indices(K, K, offset=1)
        no_bond = torch.zeros(e.shape[1])
        no_bond[0] = cfg.onehot_scale
        pair_starts = np.cumsum([0] + [n * (n - 1) // 2 for n in n_atoms[:-1]])
        link_rows, link_owner = [], []
        for m, (n, ps) in enumerate(zip(n_atoms, pair_starts)):
            rows = ps + pair_position(frag_pairs[0], frag_pairs[1], n)
            mask_e[rows] = True
            e[rows] = frag_state.e
            for a, free in enumerate(fragment.capacities):
                if free > 0:
                    new = torch.arange(K, n)
                    link_rows.append(ps + pair_position(torch.full_like(new, a), new, n))
                    link_owner.append(torch.full_like(new, m * K + a))
                if free == 0:  # no new bond to this atom: a non-anchor, or one with nothing to replace
                    new = torch.arange(K, n)
                    rows = ps + pair_position(torch.full_like(new, a), new, n)
                    mask_e[rows] = True
                    e[rows] = no_bond
        masks["e"] = mask_e.to(gen.device)
        if link_rows:
            links = {"rows": torch.cat(link_rows).to(gen.device), "owner": torch.cat(link_owner).to(gen.device),
                     "capacity": torch.tensor(fragment.capacities * len(n_atoms), device=gen.device),
                     "orders": torch.tensor((0,) + tuple(vocab.bond_orders), device=gen.device),
                     "scale": cfg.onehot_scale}
    known = State(pos.to(gen.device), h.to(gen.device), None if e is None else e.to(gen.device))
    return known, masks, pos.to(gen.device), template, graph, links


def draw_additions(n_add: int | tuple[int, int], n: int, seed: int) -> list[int]:
    """Atoms to add per molecule: ``n_add`` each, or a seeded uniform draw from the range (lo, hi)."""
    if isinstance(n_add, int):
        return [n_add] * n
    lo, hi = n_add
    return [lo + int(torch.randint(0, hi - lo + 1, (1,), generator=torch.Generator().manual_seed(
        molecule_seed(seed, k, SIZE_STREAM)))) for k in range(n)]


@torch.no_grad()
def inpaint_molecules(gen: Generator, fragment: Fragment, n_add: int | tuple[int, int], n: int, *,
                      steps: int | None = None, spacing: str = "uniform", seed: int = 0,
                      jump: int = DEFAULT_JUMP, resamplings: int = DEFAULT_RESAMPLINGS, batch_size: int = 100,
                      guidance: float = DEFAULT_GUIDANCE, connect: bool = True, on_batch=None) -> list[Chem.Mol]:
    """``n`` molecules that contain ``fragment`` (its atoms first, at its coordinates) and ``n_add`` more heavy
    atoms each (or a range). Molecule k has its own seed, as in :func:`moldiff.sampling.generate_batches`.
    ``connect`` False leaves the connection terms out of the guidance (an ablation)."""
    adds = check_request(gen, fragment, n_add, n, seed)
    times = repaint_times(gen.chain.timesteps(steps, spacing), jump, resamplings)
    gen.network.eval()
    mols: list[Chem.Mol] = []
    for first in range(0, n, batch_size):
        ks = list(range(first, min(n, first + batch_size)))
        sizes = [fragment.size + adds[k] for k in ks]
        known, masks, pos, template, graph, links = _known_state(gen, fragment, sizes)
        hook = PinFragment(gen.chain, known, masks, pos,
                           MoleculeNoise([molecule_seed(seed, k, PIN_STREAM) for k in ks], gen.device), links)
        model = ReconstructionGuidance(gen.network, gen.chain, known, masks, pos, guidance, links, connect)
        out = run_chain(model, gen.chain, template, graph, times=times,
                        noise=MoleculeNoise([molecule_seed(seed, k) for k in ks], gen.device), hooks=[hook])
        ok = finite_molecules(out, graph).tolist()
        batch = to_molecules(gen, out if all(ok) else _zero_nonfinite(out), graph)
        for m, good in zip(batch, ok):
            m.SetIntProp("moldiff_fragment_atoms", fragment.size)
            if not good:
                m.SetIntProp("moldiff_valid", 0)
        mols += batch
        if on_batch:
            on_batch(len(ks))
    return mols
