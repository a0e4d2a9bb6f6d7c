"""Sampling: the reverse-chain loop with its per-step hooks, sizes from p(N), per-molecule seeds, batches, and
decoding to RDKit molecules."""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from moldiff.data.store import complete_pairs
from moldiff.diffusion.chain import DiffusionChain, StepOutput, sample_noise
from moldiff.guidance import default_guidance
from moldiff.hooks import Hook
from moldiff.model import Generator
from moldiff.representation import decode
from moldiff.state import Graph, State, per_graph, remove_mean

if TYPE_CHECKING:  # RDKit is needed to decode molecules, not to run the chain (e.g. on a GPU machine)
    from rdkit import Chem

MAX_ATOMS = 200
MAX_ATTEMPTS = 3  # draws of one molecule whose chain went to NaN/inf before it is dropped
SOLVERS = (None, "dpm2m", "sde-dpm2m")  # None: the chain's own step (ancestral, or DDIM with deterministic=True)
SIZE_STREAM = -1  # the "attempt" of molecule_seed that seeds a molecule's size (redraws keep their size)

NoiseFn = Callable[[State, Graph], State]


def iter_chain(model: Callable, chain: DiffusionChain, template: State, graph: Graph, *, steps: int | None = None,
               spacing: str = "uniform", deterministic: bool = False, generator: torch.Generator | None = None,
               noise: NoiseFn | None = None, hooks: Sequence[Hook] = (), cond: torch.Tensor | None = None,
               times: Sequence[int] | None = None, solver: str | None = None,
               noise_scale: float = 1.0, noise_scale_from: float = 1.0) -> Iterator[tuple[int, State]]:
    """The reverse chain from z_T ~ N(0, I), one :meth:`DiffusionChain.step` at a time: yields (s, z_s) after
    each step t → s and finally (−1, x̂), after the hooks have seen it.

    ``model(z, t, graph[, cond])`` predicts ε with t in [0, 1]; ``noise(template, graph)`` draws the standard
    normal noise (default: :func:`sample_noise` with ``generator``); every hook is called after every step
    (:mod:`moldiff.hooks`) and may replace the state. ``times`` replaces the grid of ``steps``/``spacing`` with
    any sequence of integer times from T to 0; where it rises (s > t) the state is noised forward with
    q(z_s | z_t) instead (RePaint's resampling, see :func:`repaint_times`). ``solver="dpm2m"`` integrates the
    probability-flow ODE with DPM-Solver++(2M) instead of the chain's own step (deterministic; no noise drawn
    after z_T). ``noise_scale`` multiplies the fresh coordinate noise of the reverse steps that start at t ≤
    ``noise_scale_from``·T (not z_T, not a resampling jump; atom types, charges and bonds keep theirs): 1 is the
    chain itself; below 1 the coordinates are drawn at a lower temperature, closer to the model's most likely
    geometry, over the whole chain (``noise_scale_from`` 1) or its last, low-noise stretch only
    (benchmarks/results/noise_scale.md: over the whole chain it also changes which molecules come out).
    """
    if not noise_scale >= 0:
        raise ValueError(f"the noise scale must be a number ≥ 0, got {noise_scale}")
    if not 0 <= noise_scale_from <= 1:
        raise ValueError(f"the noise scale's start must be a fraction of the chain in [0, 1], got {noise_scale_from}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose from {', '.join(map(str, SOLVERS))}")
    history: tuple = ()
    draw = noise or (lambda tmpl, g: sample_noise(tmpl, g, generator))
    cool_from = noise_scale_from * chain.T

    def step_noise(tmpl: State, g: Graph, t_int: int) -> State:
        z_new = draw(tmpl, g)
        if noise_scale == 1 or t_int > cool_from:
            return z_new
        return z_new.map(lambda f, kind: f * noise_scale if kind == "x" else f)
    extra = () if cond is None else (cond,)
    z = draw(template, graph)
    grid = list(times) if times is not None else chain.timesteps(steps, spacing)
    G, dev = graph.num_graphs, template.x.device
    last = len(grid) - 2
    for i, (t_int, s_int) in enumerate(zip(grid[:-1], grid[1:])):
        t = torch.full((G,), t_int, dtype=torch.long, device=dev)
        s = torch.full((G,), s_int, dtype=torch.long, device=dev)
        if s_int > t_int:  # a jump back up the chain (resampling): no network evaluation, no hooks
            z = chain.renoise(z, t, s, graph, draw(z, graph))
            history = ()
            continue
        eps_hat = model(z, t.to(z.x.dtype) / chain.T, graph, *extra)
        if solver is not None and i == last and s_int == 0:  # the solvers end on x̂ itself: S evaluations in all
            x_hat = chain.final(z, eps_hat, graph, t)
            yield -1, _apply(hooks, t_int, -1, StepOutput(x_hat, x_hat), graph)
            return
        if solver is not None:
            x_hat = chain.predict_x0(z, eps_hat, t, graph)
            z_s = (chain.dpm2m_step(z, x_hat, t, s, graph, *history) if solver == "dpm2m"
                   else chain.sde_dpm2m_step(z, x_hat, t, s, graph, step_noise(z, graph, t_int), *history))
            out = StepOutput(z_s, x_hat)
            history = (x_hat, t)
        else:
            own = noise is None and noise_scale == 1  # the chain draws from ``generator`` itself
            out = chain.step(z, eps_hat, t, s, graph, generator, deterministic,
                             noise=None if deterministic or own else step_noise(z, graph, t_int))
        z = _apply(hooks, t_int, s_int, out, graph)
        yield s_int, z
    t0 = torch.zeros(G, dtype=torch.long, device=dev)
    x_hat = chain.final(z, model(z, t0.to(z.x.dtype), graph, *extra), graph)
    yield -1, _apply(hooks, 0, -1, StepOutput(x_hat, x_hat), graph)


def repaint_times(grid: Sequence[int], jump: int, resamplings: int) -> list[int]:
    """The times of a RePaint schedule over a descending ``grid``: each block of ``jump`` steps is walked
    down ``resamplings`` times, with a forward jump back to its start between walks (1 resampling: the grid)."""
    grid = list(grid)
    if resamplings <= 1 or jump <= 0:
        return grid
    times, i, n = [grid[0]], 0, len(grid) - 1
    while i < n:
        end = min(i + jump, n)
        for r in range(resamplings):
            times += grid[i + 1:end + 1]
            if r < resamplings - 1:
                times.append(grid[i])
        i = end
    return times


def run_chain(model: Callable, chain: DiffusionChain, template: State, graph: Graph,
              on_eval: Callable[[], None] | None = None, **options) -> State:
    """The final x̂ of :func:`iter_chain` (same options); ``on_eval`` is called after each network evaluation."""
    for _, z in iter_chain(model, chain, template, graph, **options):
        if on_eval:
            on_eval()
    return z


# The refinement's first and last t, as fractions of T: chosen on 300 samples of the qm9 model (60 → 10 gave
# less strain than a fixed t of 20, 5 → 40 or 10 → 60 over fewer steps), then measured on 1,000 in
# benchmarks/results/refine.md.
REFINE_FROM = 0.06
REFINE_TO = 0.01


def refine_coordinates(model: Callable, chain: DiffusionChain, out: State, graph: Graph, evaluations: int,
                       cond: torch.Tensor | None = None, t_from: float = REFINE_FROM, t_to: float = REFINE_TO,
                       on_eval: Callable[[], None] | None = None) -> State:
    """Move a sample's coordinates toward the model's own clean estimate: ``evaluations`` times, x ← x̂(α_t·x, t)
    with the features held, t stepping from ``t_from``·T down to ``t_to``·T. Each step asks the network what a
    slightly noised copy of the sample would look like clean; the fixed points are geometries the network
    would not change. Atom types, charges and bonds are not touched. 0 evaluations: ``out`` itself."""
    if evaluations <= 0:
        return out
    extra = () if cond is None else (cond,)
    hi, lo = max(1, round(t_from * chain.T)), max(1, round(t_to * chain.T))
    x = out.x
    for tk in np.linspace(hi, lo, evaluations).round().astype(int).tolist():
        t = torch.full((graph.num_graphs,), tk, dtype=torch.long, device=x.device)
        a = chain.schedule.alpha(t, x.dtype)
        z = State(x * per_graph(a, "x", graph), out.h * per_graph(a, "h", graph),
                  None if out.e is None else out.e * per_graph(a, "e", graph))
        eps = model(z, t.to(x.dtype) / chain.T, graph, *extra)
        x = remove_mean(chain.predict_x0(z, eps, t, graph).x.to(x.dtype), graph.batch, graph.num_graphs)
        if on_eval:
            on_eval()
    return State(x, out.h, out.e)


def _apply(hooks: Sequence[Hook], t: int, s: int, out: StepOutput, graph: Graph) -> State:
    z = out.prev
    for hook in hooks:
        new = hook(t, s, StepOutput(z, out.x0_hat), graph)
        z = new if new is not None else z
    return z


def molecule_seed(seed: int, k: int, attempt: int = 0) -> int:
    """The seed of molecule ``k`` of a run (and of its ``attempt``-th redraw): a pure function, so that a
    molecule does not depend on how many others are drawn or how they are batched."""
    entropy = [v % 2**64 for v in (seed, k, attempt)]  # SeedSequence takes non-negative integers
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


class MoleculeNoise:
    """Standard normal noise drawn molecule by molecule, each from its own generator (coordinates then
    projected to zero CoM): the batch's noise is the concatenation of the molecules' own streams."""

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, template: State, graph: Graph) -> State:
        n_atoms = graph.n_atoms.tolist()
        n_pairs = [n * (n - 1) // 2 for n in n_atoms]

        def draw(field: torch.Tensor, kind: str) -> torch.Tensor:
            rows = n_pairs if kind == "e" else n_atoms
            parts = [torch.randn((r, field.shape[1]), generator=g, device=field.device, dtype=field.dtype)
                     for r, g in zip(rows, self.generators)]
            z = torch.cat(parts) if parts else field.new_zeros(field.shape)
            return remove_mean(z, graph.batch, graph.num_graphs) if kind == "x" else z
        return template.map(draw)


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


def draw_size(hist: Sequence[int], seed: int) -> int:
    """One molecule size drawn from the histogram p(N) of the training set with its own seed."""
    p = torch.tensor(hist, dtype=torch.float64)
    return int(torch.multinomial(p / p.sum(), 1, generator=torch.Generator().manual_seed(seed)))


def finite_molecules(out: State, graph: Graph) -> torch.Tensor:
    """(G,) bool: every coordinate and feature of the molecule is finite."""
    bad = torch.zeros(graph.num_graphs, dtype=torch.bool, device=out.x.device)
    for kind, f in out.fields().items():
        rows = ~torch.isfinite(f).all(dim=1)
        bad[graph.rows(kind)[rows]] = True
    return ~bad


def _zero_nonfinite(out: State) -> State:
    """The state with NaN/inf set to 0, so that a batch decodes; its non-finite molecules are discarded."""
    return out.map(lambda f, kind: torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0))


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
    from moldiff.chem.build import assign_stereo_from_3d, build_mol
    from moldiff.chem.perceive import perceive_mol

    if bonds is not None:
        mol, error = build_mol(elements, pos, bonds, charges), None
        try:
            mol = _sanitised(mol, implicit_h)
        except (ValueError, RuntimeError) as err:
            error = f"sanitisation: {err}"
    else:
        mol, error = perceive_mol(elements, pos)
    if error is None:
        assign_stereo_from_3d(mol)  # SMILES, SDF and the coordinates agree on stereochemistry
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
    elements, charges = d.elements(cfg), d.charge.cpu().tolist()
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
            mols.append(_molecule(elements[a:a + n], pos[a:a + n], charges[a:a + n],
                                  None if bonds_of is None else bonds_of[k], cfg.implicit_h))
    return mols


def check_size(gen: Generator, n_atoms: int | None) -> None:
    """Refuse a molecule size outside those the model was trained on, naming the range it supports."""
    if n_atoms is None:
        return
    lo, hi = gen.stats.size_range
    if not 1 <= n_atoms <= MAX_ATOMS or (hi and not lo <= n_atoms <= hi):
        what = "heavy atoms; RDKit adds the hydrogens" if gen.config.features.implicit_h else "atoms"
        raise ValueError(f"--atoms {n_atoms}: this model was trained on molecules of {lo}–{hi} {what}")


def _chain_batch(gen: Generator, sizes: list[int], seeds: list[int], *, steps, spacing, deterministic, bf16,
                 hooks, cond, on_eval, solver=None, noise_scale=1.0, noise_scale_from=1.0,
                 refine=0) -> State | None:
    cfg = gen.config.features
    template, graph = empty_graph(sizes, cfg.h_dim, cfg.e_dim, gen.device)
    with torch.autocast(gen.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = run_chain(gen.network, gen.chain, template, graph, steps=steps, spacing=spacing,
                        deterministic=deterministic, noise=MoleculeNoise(seeds, gen.device), hooks=hooks, solver=solver,
                        cond=cond, on_eval=on_eval, noise_scale=noise_scale,
                        noise_scale_from=noise_scale_from)
        out = refine_coordinates(gen.network, gen.chain, out, graph, refine, cond=cond, on_eval=on_eval)
    return out, graph


@torch.no_grad()
def generate_batches(gen: Generator, n: int, *, steps: int | None = None, seed: int = 0,
                     n_atoms: int | None = None, batch_size: int = 250, deterministic: bool = False,
                     spacing: str = "uniform", bf16: bool = False, progress: bool = False, start: int = 0,
                     report: dict | None = None, hooks: Sequence[Hook] = (),
                     cond: torch.Tensor | None = None, solver: str | None = None,
                     size_hist: Sequence[float] | None = None,
                     sizes: Sequence[int] | None = None, noise_scale: float = 1.0,
                     noise_scale_from: float = 1.0, refine: int = 0) -> Iterator[list[Chem.Mol]]:
    """Sample molecules ``start`` … ``n`` − 1 of a run, ``batch_size`` at a time; yields each batch's molecules.

    Molecule k has its own seed (:func:`molecule_seed` of ``seed`` and k): its size and every noise draw come
    from it, so the same seed gives the same molecules whatever ``n``, ``batch_size`` and ``start`` are (up to
    the floating-point rounding of batched arithmetic, and on the same device and thread count). A molecule
    whose chain goes to NaN/inf is redrawn alone with a derived seed (up to ``MAX_ATTEMPTS`` draws, then
    dropped); ``report`` counts them ("redrawn", "dropped"). Sizes (``n_atoms`` and p(N)) count the atoms of
    the chain: heavy atoms only for a model with implicit hydrogens. ``bf16`` runs the network's matrix
    multiplies under bf16 autocast (coordinates and the chain stay fp32). ``cond`` (n, cond_dim) conditions
    a model trained with a condition (see :func:`conditioned`), ``size_hist`` replaces p(N) (e.g. p(N | condition))
    and ``sizes`` (n,) fixes each molecule's size; ``noise_scale`` scales the coordinate noise of the reverse
    steps from ``noise_scale_from``·T down (:func:`iter_chain`); ``refine`` adds that many network evaluations
    of :func:`refine_coordinates` after the chain; hooks are applied to every batch (:mod:`moldiff.hooks`).
    """
    from tqdm import tqdm

    if n <= 0:
        raise ValueError(f"the number of molecules must be positive, got {n}")
    if not 0 <= start <= n:
        raise ValueError(f"start must be between 0 and {n}, got {start}")
    if batch_size <= 0:
        raise ValueError(f"the batch size must be positive, got {batch_size}")
    check_size(gen, n_atoms)
    report = report if report is not None else {}
    report.setdefault("redrawn", 0)
    report.setdefault("dropped", 0)
    # network evaluations per molecule: S steps + the final x̂; the solvers end on x̂ itself (S in all)
    evals = len(gen.chain.timesteps(steps, spacing)) - (solver is not None) + max(0, refine)
    bar = tqdm(total=evals * (n - start), disable=not progress, desc="sampling", unit="mol·step",
               mininterval=1.0, unit_scale=False)
    gen.network.eval()
    opts = dict(steps=steps, spacing=spacing, deterministic=deterministic, bf16=bf16, hooks=hooks, solver=solver,
                noise_scale=noise_scale, noise_scale_from=noise_scale_from, refine=refine)
    for first in range(start, n, batch_size):
        ks = list(range(first, min(n, first + batch_size)))
        seeds = [molecule_seed(seed, k) for k in ks]
        # the size from a stream of its own: the noise generators start from ``seeds`` themselves
        hist = gen.stats.n_atoms_hist if size_hist is None else size_hist
        sizes_k = [int(sizes[k]) if sizes is not None else
                   n_atoms or draw_size(hist, molecule_seed(seed, k, SIZE_STREAM)) for k in ks]
        batch_cond = None if cond is None else cond[ks[0]:ks[-1] + 1].to(gen.device)
        out, graph = _chain_batch(gen, sizes_k, seeds, cond=batch_cond, on_eval=lambda: bar.update(len(ks)), **opts)
        ok = finite_molecules(out, graph).tolist()
        mols = to_molecules(gen, out if all(ok) else _zero_nonfinite(out), graph)
        for attempt in range(1, MAX_ATTEMPTS):
            bad = [i for i, good in enumerate(ok) if not good]
            if not bad:
                break
            report["redrawn"] += len(bad)
            retry_seeds = [molecule_seed(seed, ks[i], attempt) for i in bad]
            retry_cond = None if batch_cond is None else batch_cond[bad]
            out, graph = _chain_batch(gen, [sizes_k[i] for i in bad], retry_seeds, cond=retry_cond, on_eval=None,
                                      **opts)
            for i, m, good in zip(bad, to_molecules(gen, _zero_nonfinite(out), graph),
                                  finite_molecules(out, graph).tolist()):
                mols[i], ok[i] = m, good
        report["dropped"] += ok.count(False)
        for k, m in zip(ks, mols):
            m.SetIntProp("moldiff_index", k)  # the molecule's number in the run: its seed is (seed, k)
        yield [m for m, good in zip(mols, ok) if good]
    bar.close()


def conditioned(gen: Generator, request: Mapping[str, float] | None, n: int, guidance: float | None = None,
                warn: Callable[[str], None] | None = None) -> tuple[Generator, dict]:
    """A conditional model set up for a request (property → value, in the data's units): the generator with
    classifier-free guidance of weight ``guidance`` (default :func:`default_guidance` of the request) and the
    :func:`generate_batches` arguments of ``n`` molecules (``cond``, and ``size_hist`` = p(N | request)).
    Unknown properties and non-finite values raise ValueError; values outside the training range are passed
    to ``warn``. An empty request samples the model unconditioned."""
    from moldiff.conditioning import Guided, check_request, encode, request_values, size_histogram

    names = gen.config.condition.properties
    if not request:
        return gen, {}
    for message in check_request(request, names, gen.stats.properties):
        (warn or (lambda m: None))(message)
    w = default_guidance(request) if guidance is None else float(guidance)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"--guidance must be a number ≥ 0, got {guidance}")
    cond = encode(request_values(request, names), gen.stats.properties, names).repeat(n, 1)
    guided = dataclasses.replace(gen, network=Guided(gen.network, w))
    return guided, {"cond": cond, "size_hist": size_histogram(gen.stats.n_atoms_hist, gen.stats.properties, request)}


def generate(gen: Generator, n: int, **kwargs) -> list[Chem.Mol]:
    """``n`` sampled molecules as RDKit ``Mol``s with a 3D conformer (see :func:`generate_batches`)."""
    return [m for batch in generate_batches(gen, n, **kwargs) for m in batch]
