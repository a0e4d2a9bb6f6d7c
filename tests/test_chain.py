"""The Gaussian chain: forward marginals vs iterated steps, Bayes posteriors, the bound's terms, samplers.

Everything runs in float64 with fixed seeds. Sampled checks state their tolerance in standard errors
(SE) of the sample size; the analytic checks compare against formulas recomputed here from ᾱ alone.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moldiff.diffusion.chain import DiffusionChain, dof, sample_noise
from moldiff.diffusion.schedule import NoiseSchedule, ScheduleConfig, alpha_bar
from moldiff.state import Graph, State, remove_mean
from moldiff.representation import FeatureConfig
from moldiff.sampling import run_chain

F64 = torch.float64


def make_chain(T: int = 1000, kind: str = "polynomial_2") -> DiffusionChain:
    return DiffusionChain(NoiseSchedule(ScheduleConfig(kind, T)))


def random_state(graph: Graph, F: int = 3, B: int = 2, seed: int = 0) -> State:
    """A random float64 state with CoM-free coordinates (the chain's x lives on that subspace)."""
    g = torch.Generator().manual_seed(seed)
    n, p = graph.batch.numel(), graph.pair_index.shape[1]
    x = remove_mean(torch.randn(n, 3, generator=g, dtype=F64) * 1.5, graph.batch, graph.num_graphs)
    h = torch.randn(n, F, generator=g, dtype=F64)
    e = torch.randn(p, B, generator=g, dtype=F64) if B else None
    return State(x, h, e)


def com(x: torch.Tensor, graph: Graph) -> torch.Tensor:
    return torch.zeros(graph.num_graphs, 3, dtype=x.dtype).index_add_(0, graph.batch, x) / graph.n_atoms[:, None]


def a2_np(chain: DiffusionChain) -> np.ndarray:
    """ᾱ_t = α_t² straight from the schedule function (independent of the chain's tables)."""
    return alpha_bar(chain.schedule.cfg)


class LinearModel:
    """A fixed random affine ε-predictor; ε̂_x is CoM-projected as the network's is. Records its inputs."""

    def __init__(self, F: int, B: int, seed: int = 1, project: bool = True):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(3, 3, generator=g, dtype=F64)
        self.Bh = torch.randn(F, F, generator=g, dtype=F64)
        self.ch = torch.randn(F, generator=g, dtype=F64)
        self.Be = torch.randn(B, B, generator=g, dtype=F64) if B else None
        self.project = project
        self.calls: list[tuple[State, torch.Tensor]] = []

    def __call__(self, z: State, t: torch.Tensor, graph: Graph) -> State:
        self.calls.append((z, t))
        ex = z.x @ self.A + 0.3
        if self.project:
            ex = remove_mean(ex, graph.batch, graph.num_graphs)
        ee = None if z.e is None else z.e @ self.Be
        return State(ex, z.h @ self.Bh + self.ch, ee)


class OracleModel:
    """The ε that makes x̂ = (z_t − σ_t ε̂)/α_t equal a fixed target state exactly."""

    def __init__(self, chain: DiffusionChain, target: State):
        self.chain, self.target = chain, target

    def __call__(self, z: State, t: torch.Tensor, graph: Graph) -> State:
        ti = torch.round(t * self.chain.T).long()
        a = self.chain.schedule.alpha(ti, F64)
        s = self.chain.schedule.sigma(ti, F64)
        out = []
        for f, x, k in zip(z, self.target, "xhe"):
            if f is None:
                out.append(None)
                continue
            rows = graph.pair_batch if k == "e" else graph.batch
            out.append((f - a[rows, None] * x) / s[rows, None])
        return State(*out)


# ----- noise, degrees of freedom, the forward marginal ---------------------------------------------

def test_sample_noise_shapes_and_zero_com(toy_graph):
    graph = toy_graph([1, 2, 5, 9])
    template = random_state(graph, F=4, B=3)
    noise = sample_noise(template, graph, torch.Generator().manual_seed(0))
    assert noise.x.shape == template.x.shape and noise.h.shape == template.h.shape
    assert noise.e.shape == template.e.shape and noise.x.dtype == F64
    assert torch.allclose(com(noise.x, graph), torch.zeros(4, 3, dtype=F64), atol=1e-14)
    # a one-atom molecule has no coordinate freedom at all
    assert torch.equal(noise.x[0], torch.zeros(3, dtype=F64))
    again = sample_noise(template, graph, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(noise, again))


def test_dof(toy_graph):
    graph = toy_graph([1, 4, 6])
    d = dof(random_state(graph, F=5, B=2), graph)
    assert d["x"].tolist() == [0.0, 9.0, 15.0]  # (N − 1)·3
    assert d["h"].tolist() == [5.0, 20.0, 30.0]  # N·F
    assert d["e"].tolist() == [0.0, 12.0, 30.0]  # N(N − 1)/2 · B
    assert "e" not in dof(random_state(graph, B=0), graph)


def test_q_sample_is_the_reparameterised_marginal(toy_graph):
    chain = make_chain()
    graph = toy_graph([3, 4, 2])
    x0 = random_state(graph)
    eps = sample_noise(x0, graph, torch.Generator().manual_seed(3))
    t = torch.tensor([0, 417, 1000])
    z = chain.q_sample(x0, t, eps, graph)
    a2 = torch.from_numpy(a2_np(chain))[t]
    for f, x, n, k in zip(z, x0, eps, "xhe"):
        rows = graph.pair_batch if k == "e" else graph.batch
        want = a2[rows, None].sqrt() * x + (1 - a2[rows, None]).sqrt() * n
        assert torch.allclose(f, want, rtol=1e-13, atol=1e-15), k
    assert torch.allclose(com(z.x, graph), torch.zeros(3, 3, dtype=F64), atol=1e-13)
    x_back = chain.predict_x0(z, eps, t, graph)
    for a, b in zip(x_back, x0):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)  # 1/α_T ≈ 500 amplifies float64 rounding


def test_transition_is_the_ddpm_step_and_composes():
    chain = make_chain()
    a2 = torch.from_numpy(a2_np(chain))
    t = torch.arange(1, 1001)
    a_ts, s_ts = chain.transition(t, t - 1, F64)
    alpha_ddpm = a2[1:] / a2[:-1]  # DDPM's α_t = ᾱ_t/ᾱ_{t−1}, β_t = 1 − α_t
    assert torch.allclose(a_ts ** 2, alpha_ddpm, rtol=1e-13, atol=0)
    assert torch.allclose(s_ts ** 2, 1 - alpha_ddpm, rtol=1e-8, atol=1e-15)  # β_1 ≈ 4e-6: cancellation
    # r < s < t: q(z_t|z_r) is q(z_s|z_r) followed by q(z_t|z_s)
    r, s, t = torch.tensor([0, 3, 100]), torch.tensor([5, 400, 101]), torch.tensor([9, 1000, 999])
    a_sr, s_sr = chain.transition(s, r, F64)
    a_ts, s_ts = chain.transition(t, s, F64)
    a_tr, s_tr = chain.transition(t, r, F64)
    assert torch.allclose(a_ts * a_sr, a_tr, rtol=1e-13)
    assert torch.allclose(a_ts ** 2 * s_sr ** 2 + s_ts ** 2, s_tr ** 2, rtol=1e-10)


def test_iterated_forward_steps_match_the_marginal(toy_graph):
    """z_0 ~ q(z_0|x), then t single steps q_step: the samples have mean α_t x and covariance σ_t² Π
    (Π the CoM projector for x, the identity for h and e)."""
    T, M, N = 50, 4000, 3
    chain = make_chain(T)
    graph = toy_graph([N] * M)
    one = random_state(toy_graph([N]), F=2, B=1, seed=5)
    x0 = State(one.x.repeat(M, 1), one.h.repeat(M, 1), one.e.repeat(M, 1))
    gen = torch.Generator().manual_seed(11)
    z = chain.q_sample(x0, torch.zeros(M, dtype=torch.long), sample_noise(x0, graph, gen), graph)
    a2 = a2_np(chain)
    checkpoints = {1, 5, 20, 50}
    for t in range(1, T + 1):
        z = chain.q_step(z, torch.full((M,), t, dtype=torch.long), graph, gen)
        if t not in checkpoints:
            continue
        a, s2 = math.sqrt(a2[t]), 1.0 - a2[t]
        for f, x, k in zip(z, one, "xhe"):
            v = f.reshape(M, -1, f.shape[1])  # (copies, rows of one molecule, columns)
            # per-entry variance: σ_t²(1 − 1/N) for projected x, σ_t² otherwise
            v_true = s2 * (1 - 1 / N) if k == "x" else s2
            # Mean, per entry: 5 SE (SE = √(v/M)). 18 entries × 4 checkpoints = 72 comparisons, so a
            # correct chain misses with probability ≈ 72 · 5.7e-7 ≈ 4e-5 (and the seed is fixed).
            assert (v.mean(0) - a * x).abs().max() <= 5 * math.sqrt(v_true / M), (t, k)
            if k != "x":
                # h and e entries are independent: the mean of their K normalised sample variances has
                # SE √(2/(K(M − 1))) (K = 6 for h: 0.9 %, K = 3 for e: 1.3 %); 5 SE
                K = v.shape[1] * v.shape[2]
                assert abs(float((v.var(0) / v_true).mean()) - 1) <= 5 * math.sqrt(2 / (K * (M - 1))), (t, k)
        # x: the CoM projection correlates a molecule's atoms, Cov(x_i, x_j) = σ_t²(δ_ij − 1/N). The sample
        # covariance of the N atoms, averaged over the 3 independent axes, has per-entry SE
        # √((v_ii v_jj + v_ij²)/(3M)) ≤ √(((1 − 1/N)² + 1/N²)/(3M)) σ_t² ≈ 0.7 % of σ_t²; 5 SE
        xs = z.x.reshape(M, N, 3)
        cov = sum(torch.cov(xs[:, :, c].T) for c in range(3)) / 3
        want = s2 * (torch.eye(N, dtype=F64) - 1 / N)
        tol = 5 * s2 * math.sqrt(((1 - 1 / N) ** 2 + (1 / N) ** 2) / (3 * M))
        assert (cov - want).abs().max() <= tol, t
        assert com(z.x, graph).abs().max() < 1e-12


# ----- the posterior -----------------------------------------------------------------------------

def _bayes(a2: np.ndarray, t: int, s: int, z_t, x0):
    """q(z_s | z_t, x) by Bayes for the prior N(α_s x, σ_s²) and the likelihood N(α_{t|s} z_s, σ²_{t|s})."""
    a_ts2 = a2[t] / a2[s]
    s2_ts = 1.0 - a2[t] - a_ts2 * (1.0 - a2[s])
    prec = 1.0 / (1.0 - a2[s]) + a_ts2 / s2_ts
    var = 1.0 / prec
    mean = var * (math.sqrt(a2[s]) * x0 / (1.0 - a2[s]) + math.sqrt(a_ts2) * z_t / s2_ts)
    return mean, var


@pytest.mark.parametrize("t,s", [(1, 0), (2, 1), (500, 499), (1000, 999), (1000, 0), (600, 250)])
def test_posterior_matches_bayes(toy_graph, t, s):
    chain = make_chain()
    graph = toy_graph([4, 3])
    x0 = random_state(graph, seed=2)
    z_t = random_state(graph, seed=3)
    tt, ss = torch.full((2,), t), torch.full((2,), s)
    mean, std = chain.posterior(z_t, x0, tt, ss, graph)
    a2 = a2_np(chain)
    for m, z, x, k in zip(mean, z_t, x0, "xhe"):
        want, var = _bayes(a2, t, s, z, x)
        # the two routes differ by rounding of σ²_{t|s}, relative ≤ 1e-16/σ²_{t|s} ≈ 1e-10 at t = 1
        assert torch.allclose(m, want, rtol=1e-8, atol=1e-12), k
    assert torch.allclose(std ** 2, torch.full((2,), var, dtype=F64), rtol=1e-8, atol=0)
    if s == t - 1:
        # docs/chain.md §1 (DDPM notation): μ̃ = √ᾱ_{t−1} β_t/(1−ᾱ_t) x_0 + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t,
        # β̃ = (1−ᾱ_{t−1})/(1−ᾱ_t) β_t, and μ̃ = (x_t − β_t/√(1−ᾱ_t) ε)/√α_t for the ε of x_t
        al = a2[t] / a2[t - 1]
        beta = 1 - al
        for m, z, x in zip(mean, z_t, x0):
            ddpm = (math.sqrt(a2[t - 1]) * beta / (1 - a2[t]) * x
                    + math.sqrt(al) * (1 - a2[t - 1]) / (1 - a2[t]) * z)
            assert torch.allclose(m, ddpm, rtol=1e-8, atol=1e-12)
            eps = (z - math.sqrt(a2[t]) * x) / math.sqrt(1 - a2[t])
            eps_form = (z - beta / math.sqrt(1 - a2[t]) * eps) / math.sqrt(al)
            assert torch.allclose(m, eps_form, rtol=1e-8, atol=1e-9)
        assert torch.allclose(std ** 2, torch.full((2,), (1 - a2[t - 1]) / (1 - a2[t]) * beta, dtype=F64),
                              rtol=1e-8)


def test_posterior_sampled_against_the_forward_chain(toy_graph):
    """Draw (z_s, z_t) from the forward chain given x; the residual z_s − μ(z_t, x) must be N(0, std²)
    and uncorrelated with z_t — what 'q(z_s|z_t,x) is the conditional of the joint' means."""
    T, M, t, s = 100, 20000, 60, 45
    chain = make_chain(T)
    graph = toy_graph([1] * M)  # one-atom molecules: h and e-free, x is empty after projection
    x0 = State(torch.zeros(M, 3, dtype=F64), torch.full((M, 1), 0.7, dtype=F64))
    gen = torch.Generator().manual_seed(21)
    tt, ss = torch.full((M,), t), torch.full((M,), s)
    z_s = chain.q_sample(x0, ss, sample_noise(x0, graph, gen), graph)
    a_ts, s_ts = chain.transition(tt, ss, F64)
    z_t = State(z_s.x, a_ts[:, None] * z_s.h + s_ts[:, None] * torch.randn(M, 1, generator=gen, dtype=F64))
    mean, std = chain.posterior(z_t, x0, tt, ss, graph)
    r = (z_s.h - mean.h).squeeze(1) / std
    # standardised residual: mean 0 (SE 1/√M), variance 1 (SE √(2/M)), correlation with z_t 0 (SE 1/√M); 5 SE each
    assert abs(r.mean()) < 5 / math.sqrt(M)
    assert abs(r.var() - 1) < 5 * math.sqrt(2 / M)
    assert abs(torch.corrcoef(torch.stack([r, z_t.h.squeeze(1)]))[0, 1]) < 5 / math.sqrt(M)


# ----- the bound ---------------------------------------------------------------------------------

def test_diffusion_term_is_the_gaussian_kl(toy_graph):
    """L_{t−1} = KL(q(z_{t−1}|z_t,x) ‖ N(μ_θ, β̃ I)) computed by hand from Bayes, μ_θ = μ̃ with x̂ for x."""
    chain = make_chain()
    graph = toy_graph([3, 5, 4, 2, 6])
    x0 = random_state(graph, seed=7)
    model = LinearModel(3, 2)
    t = torch.tensor([1, 2, 250, 999, 1000])
    got = chain.diffusion_term(model, x0, graph, t, torch.Generator().manual_seed(8))
    (z_t, t_in), = model.calls
    assert torch.allclose(t_in, t.to(F64) / 1000)
    eps_hat = model(z_t, t_in, graph)
    a2 = a2_np(chain)
    d = dof(x0, graph)
    for g in range(graph.num_graphs):
        ti = int(t[g])
        a, sg = math.sqrt(a2[ti]), math.sqrt(1 - a2[ti])
        kl = 0.0
        for k in "xhe":
            rows = (graph.pair_batch if k == "e" else graph.batch) == g
            z, x, eh = (getattr(v, k)[rows] for v in (z_t, x0, eps_hat))
            x_hat = (z - sg * eh) / a
            mu_q, var = _bayes(a2, ti, ti - 1, z, x)
            mu_p, _ = _bayes(a2, ti, ti - 1, z, x_hat)
            # KL(N(μ_q, v I_d) ‖ N(μ_p, v I_d)) = ½[d + ‖μ_q − μ_p‖²/v − d + d log 1]; for x the means
            # differ inside the CoM subspace (ε̂_x and ε_x are both CoM-free), so d = (N − 1)·3 cancels
            n = float(d[k][g])
            kl += 0.5 * (n * var / var + float(((mu_q - mu_p) ** 2).sum()) / var - n + n * math.log(var / var))
        assert float(got[g]) == pytest.approx(kl, rel=1e-7), (g, ti)
    assert bool((got > 0).all())


def test_kl_terms_are_nonnegative(toy_graph):
    chain = make_chain()
    graph = toy_graph([2, 3, 4, 5, 6, 7, 8, 9] * 4)
    G = graph.num_graphs
    gen = torch.Generator().manual_seed(4)
    for seed in range(4):
        x0 = random_state(graph, seed=100 + seed)
        model = LinearModel(3, 2, seed=seed)
        t = torch.randint(1, 1001, (G,), generator=gen)
        t[:3] = torch.tensor([1, 2, 1000])
        kl = chain.diffusion_term(model, x0, graph, t, gen)
        assert kl.shape == (G,) and bool((kl >= 0).all()) and bool(torch.isfinite(kl).all())
        # an exact ε (x̂ = x) makes the KL vanish
        zero = chain.diffusion_term(OracleModel(chain, x0), x0, graph, t, gen)
        assert zero.abs().max() < 1e-12
        assert bool((chain.prior_kl(x0, graph) >= 0).all())
    zeros = State(*(torch.zeros_like(f) for f in random_state(graph)))
    assert bool((chain.prior_kl(zeros, graph) > 0).all())  # σ_T² < 1 even for x = 0


def test_prior_kl_matches_closed_form(toy_graph):
    """Σ over dimensions of KL(N(α_T x, σ_T²) ‖ N(0, 1)), with (N − 1)·3 variance terms for x."""
    chain = make_chain()
    graph = toy_graph([2, 6, 3])
    x0 = random_state(graph, seed=9)
    got = chain.prior_kl(x0, graph)
    a2T = float(a2_np(chain)[-1])
    aT, sT = math.sqrt(a2T), math.sqrt(1 - a2T)
    d = dof(x0, graph)
    # KL of one zero-mean dimension, ½(σ² − 1 − log σ²) with σ² = 1 − u, written without cancellation
    per_var = 0.5 * (-a2T - math.log1p(-a2T))
    for g in range(3):
        want = 0.0
        for k, f in zip("xhe", x0):
            rows = (graph.pair_batch if k == "e" else graph.batch) == g
            want += float(d[k][g]) * per_var + 0.5 * float(((aT * f[rows]) ** 2).sum())
        # the package sums O(1) terms (d σ², d) to a result ~1e-4: a few ulp of d ≈ 1e-14 absolute
        assert float(got[g]) == pytest.approx(want, rel=1e-9)
    # with everything at zero the molecule of N atoms, F features, P pairs × B: KL = D·KL_1
    zeros = State(*(torch.zeros_like(f) for f in x0))
    total = sum(dof(zeros, graph).values())
    # here the whole KL is ~5e-10, so the package's ~1e-14 cancellation error is ~1e-5 of it
    assert torch.allclose(chain.prior_kl(zeros, graph), total * per_var, rtol=1e-4, atol=0)


def test_reconstruction_of_an_exact_model(toy_graph):
    """With ε̂ = ε: the x part is the Gaussian normaliser on (N − 1)·3 dims, the one-hot block costs
    ≈ 0 nats (its bin holds almost all the mass: std σ_0/α_0/0.25 ≈ 0.013), Z is scored like x."""
    cfg = FeatureConfig(atom_types=("H", "C", "N", "O", "F"))
    chain = make_chain()
    graph = toy_graph([3, 5])
    g = torch.Generator().manual_seed(0)
    types = torch.randint(0, 5, (8,), generator=g)
    h = torch.cat([torch.nn.functional.one_hot(types, 5).to(F64) * 0.25,
                   torch.tensor([1.0, 6, 7, 8, 9], dtype=F64)[types, None] * 0.1], 1)
    x0 = State(random_state(graph, B=0).x, h)
    nll = chain.reconstruction(OracleModel(chain, x0), x0, graph, cfg.categorical_blocks(), g)
    s0_over_a0 = math.sqrt((1 - a2_np(chain)[0]) / a2_np(chain)[0])
    const = 0.5 * math.log(2 * math.pi) + math.log(s0_over_a0)
    want = torch.tensor([(3 - 1) * 3 * const + 3 * const, (5 - 1) * 3 * const + 5 * const], dtype=F64)
    assert torch.allclose(nll, want, rtol=0, atol=1e-6)


# ----- the training loss -------------------------------------------------------------------------

def test_loss_per_field_mse(toy_graph):
    chain = make_chain()
    graph = toy_graph([4, 2, 3])
    x0 = random_state(graph, seed=12)
    t = torch.tensor([5, 700, 1000])
    total, mse = chain.loss(OracleModel(chain, x0), x0, graph, t=t, generator=torch.Generator().manual_seed(0))
    assert total.abs().max() < 1e-20 and set(mse) == {"x", "h", "e"}
    zero = lambda z, tt, gr: State(*(None if f is None else torch.zeros_like(f) for f in z))  # noqa: E731
    total, mse = chain.loss(zero, x0, graph, weights={"h": 2.0, "e": 0.0}, t=t,
                            generator=torch.Generator().manual_seed(1))
    eps = sample_noise(x0, graph, torch.Generator().manual_seed(1))  # the same draw the loss made
    d = dof(x0, graph)
    for k, f in zip("xhe", eps):
        rows = graph.pair_batch if k == "e" else graph.batch
        want = torch.zeros(3, dtype=F64).index_add_(0, rows, (f ** 2).sum(1)) / d[k]
        assert torch.allclose(mse[k], want, rtol=1e-12)
    assert torch.allclose(total, mse["x"] + 2 * mse["h"], rtol=1e-12)


# ----- sampling ----------------------------------------------------------------------------------

def test_timesteps():
    chain = make_chain(1000)
    full = chain.timesteps()
    assert full == list(range(1000, -1, -1))
    for steps in (1, 7, 50, 333, 999):
        grid = chain.timesteps(steps)
        assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == steps + 1
        assert all(a > b for a, b in zip(grid, grid[1:]))
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            chain.timesteps(bad)


def test_quadratic_spacing_puts_most_steps_at_low_noise():
    chain = make_chain(1000)
    assert chain.timesteps(1000, "quadratic")[:2] == [1000, 998]
    for steps in (10, 100, 250):
        grid = chain.timesteps(steps, "quadratic")
        assert grid[0] == 1000 and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:]))
        assert 0.9 * steps <= len(grid) - 1 <= steps  # the integer grid merges a few of the first steps
        assert sum(t < 300 for t in grid) > len(grid) / 2 > sum(t < 300 for t in chain.timesteps(steps))
    with pytest.raises(ValueError):
        chain.timesteps(10, "bogus")


@pytest.mark.parametrize("spacing", ["cubic", "logsnr", "karras"])
def test_other_spacings_are_descending_grids_from_T_to_0(spacing):
    chain = make_chain(1000)
    for steps in (5, 20, 100):
        grid = chain.timesteps(steps, spacing)
        assert grid[0] == 1000 and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:]))
        assert len(grid) - 1 <= steps
    assert sum(t < 300 for t in chain.timesteps(20, "cubic")) > sum(t < 300 for t in chain.timesteps(20, "quadratic"))


def test_sde_dpm2m_first_order_step_is_the_ancestral_step(toy_graph):
    """Without a previous x̂, SDE-DPM-Solver++ is the posterior q(z_s | z_t, x̂) with the same noise."""
    chain = make_chain(1000)
    graph = toy_graph([4, 3])
    z, eps_hat = random_state(graph, seed=1), random_state(graph, seed=2)
    noise = sample_noise(z, graph, torch.Generator().manual_seed(3))
    t, s = torch.full((2,), 600), torch.full((2,), 350)
    want = chain.step(z, eps_hat, t, s, graph, noise=noise).prev
    got = chain.sde_dpm2m_step(z, chain.predict_x0(z, eps_hat, t, graph), t, s, graph, noise)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("solver", ["dpm2m", "sde-dpm2m"])
def test_solvers_with_an_exact_model_return_the_target_in_S_evaluations(toy_graph, solver):
    chain = make_chain(200)
    graph = toy_graph([4, 2])
    target = random_state(graph, seed=31)
    template = State(*(torch.zeros_like(f) for f in target))
    model = OracleModel(chain, target)
    calls = []
    out = run_chain(model, chain, template, graph, steps=12, spacing="cubic", solver=solver,
                    generator=torch.Generator().manual_seed(5), on_eval=lambda: calls.append(1))
    assert len(calls) == len(chain.timesteps(12, "cubic")) - 1  # the last step ends on x̂: no extra evaluation
    for a, b in zip(out, target):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("deterministic", [False, True])
def test_sampler_yields_com_free_states(toy_graph, deterministic):
    chain = make_chain(50)
    graph = toy_graph([3, 1, 6])
    template = State(*(torch.zeros_like(f) for f in random_state(graph)))
    model = LinearModel(3, 2, project=False)  # a model that does not project: the sampler must
    steps_seen = []

    def check(t, s, out, graph):
        steps_seen.append(s)
        assert com(out.prev.x, graph).abs().max() < 1e-12, s
        assert all(bool(torch.isfinite(f).all()) for f in out.prev)

    run_chain(model, chain, template, graph, steps=10, deterministic=deterministic,
              generator=torch.Generator().manual_seed(0), hooks=[check])
    assert steps_seen == chain.timesteps(10)[1:] + [-1]
    # the network sees t/T ∈ [0, 1] per molecule, from 1 at the start down to 0 at the final x̂
    assert torch.equal(model.calls[0][1], torch.ones(3, dtype=F64))
    assert torch.equal(model.calls[-1][1], torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("steps, spacing", [(None, "uniform"), (13, "uniform"), (13, "quadratic")])
def test_sampler_with_an_exact_model_returns_the_target(toy_graph, deterministic, steps, spacing):
    """If x̂ is the target at every step the reverse chain must end exactly there (ancestral or DDIM)."""
    chain = make_chain(200)
    graph = toy_graph([4, 2])
    target = random_state(graph, seed=31)
    template = State(*(torch.zeros_like(f) for f in target))
    out = run_chain(OracleModel(chain, target), chain, template, graph, steps=steps, deterministic=deterministic,
                    generator=torch.Generator().manual_seed(5), spacing=spacing)
    for a, b in zip(out, target):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)


def test_sampler_is_reproducible(toy_graph):
    chain = make_chain(30)
    graph = toy_graph([5, 3])
    template = State(*(torch.zeros_like(f) for f in random_state(graph)))
    model = LinearModel(3, 2)
    runs = [run_chain(model, chain, template, graph, steps=10, generator=torch.Generator().manual_seed(9))
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_training_timesteps_uniform_by_default_and_skewed_low_with_power():
    chain = make_chain(T=1000)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(chain.sample_t(64, g1), torch.randint(0, 1001, (64,), generator=g2))  # L_simple as before
    n = 20000
    flat = chain.sample_t(n, torch.Generator().manual_seed(0), power=1.0).double()
    low = chain.sample_t(n, torch.Generator().manual_seed(0), power=2.0).double()
    assert int(low.min()) >= 0 and int(low.max()) <= 1000
    assert abs(float((flat < 250).double().mean()) - 0.25) < 0.015
    assert abs(float((low < 250).double().mean()) - 0.5) < 0.015  # P(u² < 1/4) = 1/2
    with pytest.raises(ValueError, match="positive"):
        chain.sample_t(4, power=0.0)


class _Stream:
    """z_T from one fixed generator, the steps' noise from another: lets a test change the steps' noise alone."""

    def __init__(self, step_seed: int):
        self.first, self.rest = torch.Generator().manual_seed(0), torch.Generator().manual_seed(step_seed)
        self.calls = 0

    def __call__(self, template: State, graph: Graph) -> State:
        self.calls += 1
        return sample_noise(template, graph, self.first if self.calls == 1 else self.rest)


@pytest.mark.parametrize("solver", [None, "sde-dpm2m"])
def test_noise_scale_multiplies_the_step_noise_only(toy_graph, solver):
    """Scale 1 is the chain itself; scale 0 leaves z_T as the only randomness of the coordinates: another
    stream of step noise then gives the same coordinates, where at scale 1 it does not; the other fields keep
    their noise. (This model's ε̂_x depends on the coordinates alone.)"""
    chain = make_chain(40)
    graph = toy_graph([4, 3])
    template = State(*(torch.zeros_like(f) for f in random_state(graph)))
    model = LinearModel(3, 2)

    def run(step_seed, **kw):
        return run_chain(model, chain, template, graph, steps=8, spacing="quadratic", solver=solver,
                         noise=_Stream(step_seed), **kw)
    assert all(torch.equal(a, b) for a, b in zip(run(1), run(1, noise_scale=1.0)))
    assert not torch.allclose(run(1).x, run(2).x)
    cold = [run(seed, noise_scale=0.0) for seed in (1, 2)]
    assert torch.equal(cold[0].x, cold[1].x) and not torch.allclose(cold[0].h, cold[1].h)
    assert not torch.allclose(cold[0].x, run(1).x)
    with pytest.raises(ValueError, match="noise scale"):
        run(1, noise_scale=-0.5)


def test_noise_scale_with_an_exact_model_still_returns_the_target(toy_graph):
    chain = make_chain(200)
    graph = toy_graph([4, 2])
    target = random_state(graph, seed=31)
    template = State(*(torch.zeros_like(f) for f in target))
    out = run_chain(OracleModel(chain, target), chain, template, graph, steps=13, spacing="quadratic",
                    generator=torch.Generator().manual_seed(5), noise_scale=0.4)
    for a, b in zip(out, target):
        assert torch.allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("solver", [None, "sde-dpm2m"])
def test_noise_scale_from_cools_only_the_last_steps(toy_graph, solver):
    """With ``noise_scale_from`` f the steps from t > f·T keep their noise: a run whose noise differs only in
    the steps from t ≤ f·T gives the same molecules at scale 0, and not at scale 1 or when the cooling starts
    later than those steps."""
    chain = make_chain(40)
    graph = toy_graph([4, 3])
    template = State(*(torch.zeros_like(f) for f in random_state(graph)))
    model = LinearModel(3, 2)
    grid = chain.timesteps(8, "quadratic")
    cut = grid[4]  # the draws of the steps from grid[4], grid[5], … vary with the seed

    class Late:
        def __init__(self, seed):
            self.fixed, self.late, self.calls = torch.Generator().manual_seed(0), torch.Generator().manual_seed(seed), 0

        def __call__(self, template, graph):
            self.calls += 1  # call 1 draws z_T, call c ≥ 2 the noise of the step from grid[c − 2]
            late = self.calls >= 2 and grid[self.calls - 2] <= cut
            return sample_noise(template, graph, self.late if late else self.fixed)

    def run(seed, scale, start):
        return run_chain(model, chain, template, graph, steps=8, spacing="quadratic", solver=solver,
                         noise=Late(seed), noise_scale=scale, noise_scale_from=start)
    assert torch.equal(run(1, 0.0, cut / 40).x, run(2, 0.0, cut / 40).x)
    assert not torch.allclose(run(1, 1.0, cut / 40).x, run(2, 1.0, cut / 40).x)
    assert not torch.allclose(run(1, 0.0, grid[5] / 40).x, run(2, 0.0, grid[5] / 40).x)
    with pytest.raises(ValueError, match="fraction"):
        run(1, 0.5, 1.5)


class GaussianModel:
    """The exact ε-predictor for data ~ N(μ, s²) in every coordinate (μ = 0 for the CoM-free coordinates):
    ε̂ = σ_t (z − α_t μ) / (α_t² s² + σ_t²). Every correct sampler then draws N(μ, s²) up to its step error."""

    def __init__(self, chain: DiffusionChain, mu: float, s: float):
        self.chain, self.mu, self.s = chain, mu, s

    def __call__(self, z: State, t: torch.Tensor, graph: Graph) -> State:
        ti = torch.round(t * self.chain.T).long()
        out = []
        for f, kind in zip(z, "xhe"):
            if f is None:
                out.append(None)
                continue
            a = self.chain.schedule.alpha(ti, F64)[graph.rows(kind)].unsqueeze(-1)
            sig = self.chain.schedule.sigma(ti, F64)[graph.rows(kind)].unsqueeze(-1)
            mu = 0.0 if kind == "x" else self.mu
            out.append(sig * (f - a * mu) / (a ** 2 * self.s ** 2 + sig ** 2))
        return State(*out)


@pytest.mark.parametrize("solver, deterministic", [(None, False), (None, True), ("dpm2m", False),
                                                   ("sde-dpm2m", False)])
def test_every_sampler_with_all_T_steps_draws_the_data_distribution(toy_graph, solver, deterministic):
    """S = T: ancestral, DDIM and both solvers draw the Gaussian data's mean and spread (the sample's standard
    errors: 1/√n of s for the mean, 1/√(2n) for the spread; 5 SE allowed, plus 1 % of s for the steps)."""
    T, mu, s = 200, 0.7, 0.5
    chain = make_chain(T)
    graph = toy_graph([2] * 1000)
    template = State(*(torch.zeros_like(f) for f in random_state(graph, F=4, B=1)))
    out = run_chain(GaussianModel(chain, mu, s), chain, template, graph, steps=T, solver=solver,
                    deterministic=deterministic, generator=torch.Generator().manual_seed(11))
    for field, centre in ((out.h, mu), (out.e, mu)):
        n = field.numel()
        assert abs(field.mean().item() - centre) < 5 * s / n ** 0.5 + 0.01 * s
        assert abs(field.std().item() - s) < 5 * s / (2 * n) ** 0.5 + 0.01 * s
    # two atoms at zero CoM: x = ±d/2, whose components spread as s/√2 in the subspace
    assert abs(out.x.std().item() - s / 2 ** 0.5) < 5 * s / (2 * out.x.numel()) ** 0.5 + 0.01 * s
