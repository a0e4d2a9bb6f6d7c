"""The sampling loop over the chain's step(): the old sampler bit for bit, per-step hooks (pinned atoms,
trajectories), per-molecule seeds, NaN samples redrawn alone, and sizes the model was trained on."""
from __future__ import annotations

import torch
from torch import nn

import pytest

from moldiff.api import load_pretrained
from moldiff.diffusion.chain import sample_noise
from moldiff.hooks import PinAtoms, Trajectory, xyz_frames
from moldiff.sampling import empty_graph, generate, generate_batches, run_chain
from moldiff.state import State, remove_mean


@pytest.fixture(scope="module")
def gen():
    torch.set_num_threads(1)
    return load_pretrained("qm9", "cpu")


def old_sampler(model, chain, template, graph, steps, deterministic, generator, spacing="uniform"):
    """The reverse loop as the chain ran it before it became a scheduler (kept here as the reference)."""
    z = sample_noise(template, graph, generator)
    grid = chain.timesteps(steps, spacing)
    G = graph.num_graphs
    expand = lambda v, k: v[graph.rows(k)].unsqueeze(-1)  # noqa: E731
    for t_int, s_int in zip(grid[:-1], grid[1:]):
        t, s = torch.full((G,), t_int), torch.full((G,), s_int)
        eps = model(z, t.float() / chain.T, graph)
        x_hat = chain.predict_x0(z, eps, t, graph)
        if deterministic:
            a, sd = chain.schedule.alpha(s, z.x.dtype), chain.schedule.sigma(s, z.x.dtype)
            z = State(*(None if xh is None else expand(a, k) * xh + expand(sd, k) * n
                        for xh, n, k in zip(x_hat, eps, "xhe")))
        else:
            mean, std = chain.posterior(z, x_hat, t, s, graph)
            noise = sample_noise(z, graph, generator)
            z = State(*(None if m is None else m + expand(std, k) * n for m, n, k in zip(mean, noise, "xhe")))
        z = State(remove_mean(z.x, graph.batch, G), z.h, z.e)
    t0 = torch.zeros(G, dtype=torch.long)
    x_hat = chain.predict_x0(z, model(z, t0.float(), graph), t0, graph)
    return State(remove_mean(x_hat.x, graph.batch, G), x_hat.h, x_hat.e)


@pytest.mark.parametrize("deterministic", [False, True])
def test_new_loop_is_bit_identical_to_the_old_sampler(gen, deterministic):
    cfg = gen.config.features
    template, graph = empty_graph([9, 5, 7], cfg.h_dim, cfg.e_dim, torch.device("cpu"))
    with torch.no_grad():
        new = run_chain(gen.network, gen.chain, template, graph, steps=20, deterministic=deterministic,
                        generator=torch.Generator().manual_seed(4))
        old = old_sampler(gen.network, gen.chain, template, graph, 20, deterministic, torch.Generator().manual_seed(4))
    for a, b in zip(new, old):
        assert torch.equal(a, b)


def test_a_hook_pins_half_of_the_atoms(gen):
    cfg = gen.config.features
    template, graph = empty_graph([8, 6], cfg.h_dim, cfg.e_dim, torch.device("cpu"))
    known = torch.randn(14, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([True, False] * 7)
    seen = []
    pin = PinAtoms(gen.chain.schedule, mask, known, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = run_chain(gen.network, gen.chain, template, graph, steps=15, generator=torch.Generator().manual_seed(2),
                        hooks=[pin, lambda t, s, o, g: seen.append((s, o.prev.x.clone()))])
    assert (out.x[mask] - known[mask]).abs().max() < 1e-5
    assert (out.x[~mask] - known[~mask]).abs().max() > 0.1  # the others are generated
    # every step the pinned atoms were a draw of q(z_s | x): near α_s x at low noise
    s, x = seen[-2]
    a = float(gen.chain.schedule.alpha(torch.tensor([s]))[0])
    sd = float(gen.chain.schedule.sigma(torch.tensor([s]))[0])
    assert (x[mask] - a * known[mask]).abs().max() < 6 * sd


def test_trajectory_hook_records_every_step(gen, tmp_path):
    traj = Trajectory(len(gen.config.features.atom_types))
    mols = generate(gen, 3, steps=6, seed=0, batch_size=2, hooks=[traj])
    frames = traj.frames(gen.config.features.atom_types)
    assert len(frames) == len(gen.chain.timesteps(6))  # S steps and the final x̂, first batch's first molecule
    assert frames[-1][2] == "final" and len({len(f[0]) for f in frames}) == 1
    heavy = mols[0].GetNumHeavyAtoms()
    assert len(frames[-1][0]) == heavy
    text = xyz_frames(frames)
    assert text.count("\nfinal\n") == 1 and text.splitlines()[0] == str(heavy)


def test_same_seed_same_molecules_whatever_n_and_batch_size(gen):
    """Per-molecule seeds: the same molecules (up to the rounding of batched arithmetic, here < 0.05 Å) from
    a run of 5 in one batch, a run of 3 in batches of 2, and the rest of the run started at molecule 3."""
    a = generate(gen, 5, steps=20, seed=7, batch_size=5)
    b = generate(gen, 3, steps=20, seed=7, batch_size=2)
    c = list(generate_batches(gen, 5, steps=20, seed=7, batch_size=2, start=3))
    others = b + [m for batch in c for m in batch]
    assert len(others) == 5
    for x, y in zip(a, others):
        assert [at.GetSymbol() for at in x.GetAtoms()][:x.GetNumHeavyAtoms()] == \
            [at.GetSymbol() for at in y.GetAtoms()][:y.GetNumHeavyAtoms()]
        n = x.GetNumHeavyAtoms()
        assert torch.allclose(torch.tensor(x.GetConformer().GetPositions()[:n]),
                              torch.tensor(y.GetConformer().GetPositions()[:n]), atol=0.05)


class NaNForMolecule(nn.Module):
    """Wraps a network: in batches of more than one molecule, molecule 1's ε̂ is NaN."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z, t, graph, cond=None):
        out = self.net(z, t, graph)
        if graph.num_graphs > 1:
            out = State(out.x.masked_fill((graph.batch == 1)[:, None], float("nan")), out.h, out.e)
        return out


def test_a_nan_sample_is_redrawn_alone(gen):
    import dataclasses

    broken = dataclasses.replace(gen, network=NaNForMolecule(gen.network))
    report = {}
    mols = generate(broken, 4, steps=3, seed=1, batch_size=4, report=report)
    clean = generate(gen, 4, steps=3, seed=1, batch_size=4)
    assert report == {"redrawn": 1, "dropped": 0} and len(mols) == 4
    for k in (0, 2, 3):  # the others are untouched
        assert mols[k].GetConformer().GetPositions().tolist() == clean[k].GetConformer().GetPositions().tolist()


def test_sizes_beyond_training_are_refused_with_the_range(gen):
    lo, hi = gen.stats.size_range
    assert (lo, hi) == (1, 9)
    with pytest.raises(ValueError, match="trained on molecules of 1–9 heavy atoms"):
        generate(gen, 1, steps=2, n_atoms=14)
    assert generate(gen, 1, steps=2, n_atoms=9)[0].GetNumHeavyAtoms() == 9
