"""The Gaussian Markov chain over (x, h, e): forward marginals, posteriors, losses, bound and samplers.

Continuous-time EDM notation on an integer grid t = 0..T: z_t = α_t x + σ_t ε with α_t² + σ_t² = 1.
From t down to any s < t: α_{t|s} = α_t/α_s, σ²_{t|s} = σ_t² − α_{t|s}² σ_s², and the posterior
q(z_s | z_t, x) = N(α_{t|s} σ_s²/σ_t² z_t + α_s σ²_{t|s}/σ_t² x, σ²_{t|s} σ_s²/σ_t² I). With s = t − 1 this is
the DDPM posterior (docs/chain.md). Coordinates live on the zero centre-of-mass subspace: their noise is
projected and their Gaussian terms count (N − 1)·3 degrees of freedom.

The network is any callable ``model(state_t, t, graph) -> State`` of ε predictions, with t in [0, 1]
per molecule; the chain never looks inside it.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from moldiff.diffusion.grids import SOLVERS, SPACINGS  # noqa: F401  (re-exported)
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.state import Graph, State, affine, per_graph, per_graph_sum, remove_mean


EpsModel = Callable[[State, torch.Tensor, Graph], State]


class StepOutput(NamedTuple):
    """One reverse step t → s: the new state z_s and the clean-data estimate x̂ it was computed from."""

    prev: State
    x0_hat: State


def sample_noise(template: State, graph: Graph, generator: torch.Generator | None = None) -> State:
    """Standard normal noise shaped like ``template``; the coordinate part projected to zero CoM."""
    def draw(t: torch.Tensor, kind: str) -> torch.Tensor:
        z = torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)
        return remove_mean(z, graph.batch, graph.num_graphs) if kind == "x" else z
    return template.map(draw)


def dof(state: State, graph: Graph) -> dict[str, torch.Tensor]:
    """Degrees of freedom per molecule and field: (N − 1)·3 for x, N·F for h, P·B for e."""
    n = graph.n_atoms.to(state.x.dtype)
    out = {"x": (n - 1) * state.x.shape[1], "h": n * state.h.shape[1]}
    if state.e is not None:
        n_pairs = torch.bincount(graph.pair_batch, minlength=graph.num_graphs).to(state.x.dtype)
        out["e"] = n_pairs * state.e.shape[1]
    return out


class DiffusionChain:
    """The chain of one noise schedule, shared by every field of the state."""

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule
        self.T = schedule.T

    # ----- forward -------------------------------------------------------------------------------
    def sample_t(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 power: float = 1.0) -> torch.Tensor:
        """n training timesteps in [0, T]: uniform for ``power`` = 1 (L_simple), else t = ⌊(T + 1)·u^power⌋
        with u ~ U(0, 1), so that power > 1 draws more low-noise steps (density ∝ t^(1/power − 1)) — the
        same as weighting the loss over t by that density."""
        if power <= 0:
            raise ValueError(f"the timestep power must be positive, got {power}")
        if power == 1.0:
            return torch.randint(0, self.T + 1, (n,), generator=generator, device=device)
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return (u.pow(power) * (self.T + 1)).long().clamp_(0, self.T)

    def q_sample(self, x0: State, t: torch.Tensor, eps: State, graph: Graph) -> State:
        """z_t = α_t x + σ_t ε for integer t per molecule (the forward marginal in one shot)."""
        return affine(graph, self.schedule.alpha(t, x0.x.dtype), x0, self.schedule.sigma(t, x0.x.dtype), eps)

    def q_step(self, z_prev: State, t: torch.Tensor, graph: Graph, generator=None) -> State:
        """One forward step z_{t−1} → z_t: N(α_{t|t−1} z_{t−1}, σ²_{t|t−1} I)."""
        a_ts, s_ts = self.transition(t, t - 1, z_prev.x.dtype)
        return affine(graph, a_ts, z_prev, s_ts, sample_noise(z_prev, graph, generator))

    def renoise(self, z_s: State, s: torch.Tensor, t: torch.Tensor, graph: Graph, noise: State) -> State:
        """A forward jump z_s → z_t (t > s) drawn from q(z_t | z_s) with the given standard normal ``noise``
        (coordinates at zero CoM): RePaint's "go back and denoise again"."""
        a_ts, s_ts = self.transition(t, s, z_s.x.dtype)
        return affine(graph, a_ts, z_s, s_ts, noise)

    def transition(self, t: torch.Tensor, s: torch.Tensor, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """α_{t|s} and σ_{t|s} of q(z_t | z_s) for s < t, computed in float64."""
        a2t, a2s = self.schedule.alpha2.to(t.device)[t], self.schedule.alpha2.to(t.device)[s]
        a2_ts = a2t / a2s
        s2_ts = (1.0 - a2t) - a2_ts * (1.0 - a2s)
        return a2_ts.sqrt().to(dtype), s2_ts.clamp_min(0).sqrt().to(dtype)

    # ----- posterior -----------------------------------------------------------------------------
    def posterior(self, z_t: State, x0: State, t: torch.Tensor, s: torch.Tensor, graph: Graph
                  ) -> tuple[State, torch.Tensor]:
        """Mean (a State) and per-molecule std of q(z_s | z_t, x) for s < t."""
        sched = self.schedule
        a2t, a2s = sched.alpha2.to(t.device)[t], sched.alpha2.to(t.device)[s]
        s2t, s2s = 1.0 - a2t, 1.0 - a2s
        a2_ts = a2t / a2s
        s2_ts = s2t - a2_ts * s2s
        c_z = (a2_ts.sqrt() * s2s / s2t).to(z_t.x.dtype)
        c_x = (a2s.sqrt() * s2_ts / s2t).to(z_t.x.dtype)
        std = (s2_ts * s2s / s2t).clamp_min(0).sqrt().to(z_t.x.dtype)
        return affine(graph, c_z, z_t, c_x, x0), std

    def predict_x0(self, z_t: State, eps: State, t: torch.Tensor, graph: Graph) -> State:
        """x̂ = (z_t − σ_t ε̂)/α_t."""
        a, s = self.schedule.alpha(t, z_t.x.dtype), self.schedule.sigma(t, z_t.x.dtype)
        return z_t.combine(lambda k, z, n: (z - per_graph(s, k, graph) * n) / per_graph(a, k, graph), eps)

    # ----- training objective --------------------------------------------------------------------
    def squared_error(self, eps: State, eps_hat: State, graph: Graph) -> dict[str, torch.Tensor]:
        """Per molecule and field: Σ (ε − ε̂)² over the field's entries."""
        return {k: per_graph_sum((a - getattr(eps_hat, k)) ** 2, graph.rows(k), graph.num_graphs)
                for k, a in eps.fields().items()}

    def loss(self, model: EpsModel, x0: State, graph: Graph, weights: dict[str, float] | None = None,
             generator: torch.Generator | None = None, t: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_simple per molecule: Σ_fields w_f · mean over the field's degrees of freedom of (ε − ε̂)².

        ``t`` defaults to uniform integers in [0, T] per molecule. Returns (loss per molecule, the
        per-field mean squared errors per molecule).
        """
        weights = weights or {}
        if t is None:
            t = self.sample_t(graph.num_graphs, generator, x0.x.device)
        eps = sample_noise(x0, graph, generator)
        z_t = self.q_sample(x0, t, eps, graph)
        eps_hat = model(z_t, t.to(x0.x.dtype) / self.T, graph)
        sq = self.squared_error(eps, eps_hat, graph)
        d = dof(x0, graph)
        mse = {k: sq[k] / d[k].clamp_min(1) for k in sq}
        total = sum(weights.get(k, 1.0) * v for k, v in mse.items())
        return total, mse

    # ----- variational bound ---------------------------------------------------------------------
    def diffusion_term(self, model: EpsModel, x0: State, graph: Graph, t: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """L_{t−1} = KL(q(z_{t−1}|z_t,x) ‖ p_θ(z_{t−1}|z_t)) = ½ (SNR_{t−1}/SNR_t − 1) ‖ε − ε̂‖² for t ≥ 1,
        with the model's variance equal to the posterior's."""
        if bool((t < 1).any()):
            raise ValueError("the diffusion terms are defined for t ≥ 1; t = 0 is the reconstruction term")
        eps = sample_noise(x0, graph, generator)
        z_t = self.q_sample(x0, t, eps, graph)
        eps_hat = model(z_t, t.to(x0.x.dtype) / self.T, graph)
        sq = sum(self.squared_error(eps, eps_hat, graph).values())
        w = 0.5 * (self.schedule.snr(t - 1) / self.schedule.snr(t) - 1.0)
        return w.to(sq.dtype) * sq

    def prior_kl(self, x0: State, graph: Graph) -> torch.Tensor:
        """L_T = KL(q(z_T | x) ‖ N(0, I)) per molecule, on (N − 1)·3 coordinate dimensions."""
        T = torch.full((graph.num_graphs,), self.T, dtype=torch.long, device=x0.x.device)
        a2 = self.schedule.alpha2.to(x0.x.device)[T]
        s2 = 1.0 - a2
        d = sum(dof(x0, graph).values()).double()
        mean_sq = sum(per_graph_sum(f.double() ** 2, graph.rows(k), graph.num_graphs) for k, f in x0.fields().items())
        return (0.5 * (d * s2 + a2 * mean_sq - d - d * torch.log(s2))).to(x0.x.dtype)

    def reconstruction(self, model: EpsModel, x0: State, graph: Graph, categorical: list[tuple[str, slice, float]],
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """L_0 = −log p(x, h, e | z_0) per molecule: Gaussian for x on (N − 1)·3 dimensions; for each
        categorical block (field, columns, scale) the probability mass of its one-hot bin (±½ around the
        unscaled value), normalised over the classes; continuous feature columns not named are scored as
        Gaussians like x."""
        t0 = torch.zeros(graph.num_graphs, dtype=torch.long, device=x0.x.device)
        eps = sample_noise(x0, graph, generator)
        z0 = self.q_sample(x0, t0, eps, graph)
        eps_hat = model(z0, t0.to(x0.x.dtype), graph)
        a0, s0 = self.schedule.alpha(t0, torch.float64)[0], self.schedule.sigma(t0, torch.float64)[0]
        sq = self.squared_error(eps, eps_hat, graph)
        d = dof(x0, graph)
        nll = 0.5 * sq["x"].double() + d["x"].double() * (0.5 * math.log(2 * math.pi) + torch.log(s0 / a0))
        x_hat = self.predict_x0(z0, eps_hat, t0, graph)
        covered: dict[str, list[int]] = {"h": [], "e": []}
        for field, cols, scale in categorical:
            target = getattr(x0, field)[:, cols].double() / scale
            pred = getattr(x_hat, field)[:, cols].double() / scale
            std = (s0 / a0) / scale
            centred = pred - 1.0
            log_mass = torch.log(torch.special.ndtr((centred + 0.5) / std) - torch.special.ndtr((centred - 0.5) / std)
                                 + 1e-10)
            log_prob = log_mass - torch.logsumexp(log_mass, dim=1, keepdim=True)
            nll = nll - per_graph_sum(log_prob * target, graph.rows(field), graph.num_graphs)
            covered[field].extend(range(*cols.indices(getattr(x0, field).shape[1])))
        for field in ("h", "e"):
            f = getattr(x0, field)
            if f is None:
                continue
            rest = [c for c in range(f.shape[1]) if c not in covered[field]]
            if rest:
                err = ((getattr(eps, field)[:, rest] - getattr(eps_hat, field)[:, rest]) ** 2).double()
                n_rows = torch.bincount(graph.rows(field), minlength=graph.num_graphs).double() * len(rest)
                nll = nll + 0.5 * per_graph_sum(err, graph.rows(field), graph.num_graphs) + n_rows * (
                    0.5 * math.log(2 * math.pi) + torch.log(s0 / a0))
        return nll.to(x0.x.dtype)

    # ----- reverse steps (the scheduler; the loop is moldiff.sampling's) ----------------------------
    def timesteps(self, steps: int | None = None, spacing: str = "uniform") -> list[int]:
        """Descending timesteps T = τ_S > … > τ_1 > 0 for an S-step sampler (S = T: every step).

        ``spacing`` "uniform": τ_k = T·k/S; "quadratic": τ_k = T·(k/S)², most steps at low noise (where the
        integer grid merges the first few, S is a little smaller); "cubic": τ_k = T·(k/S)³; "logsnr": even in
        λ = log(α/σ); "karras": even in (σ/α)^(1/7)."""
        steps = self.T if steps is None else steps
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be between 1 and {self.T}, got {steps}")
        if spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; choose from {SPACINGS}")
        if spacing == "uniform":
            grid = torch.linspace(self.T, 0, steps + 1).round().long().tolist()
        elif spacing == "logsnr":  # even steps in λ = log(α/σ), as DPM-Solver places them
            lam = self.log_snr()
            targets = torch.linspace(float(lam[self.T]), float(lam[0]), steps + 1, dtype=torch.float64)
            grid = [int((lam - v).abs().argmin()) for v in targets]
        elif spacing == "karras":  # Karras et al.: even steps in ς^(1/7), ς = σ/α the noise-to-signal ratio
            lam = self.log_snr()
            rho = 7.0
            lo, hi = float(torch.exp(-lam[1])) ** (1 / rho), float(torch.exp(-lam[self.T])) ** (1 / rho)
            targets = -rho * torch.log(torch.linspace(hi, lo, steps, dtype=torch.float64))
            grid = [int((lam - v).abs().argmin()) for v in targets] + [0]
        else:
            power = 3 if spacing == "cubic" else 2
            grid = (self.T * torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) ** power).round().long().tolist()
        return sorted(set(grid), reverse=True)

    def step(self, z_t: State, eps_hat: State, t: torch.Tensor, s: torch.Tensor, graph: Graph,
             generator: torch.Generator | None = None, deterministic: bool = False,
             noise: State | None = None) -> StepOutput:
        """One reverse step from integer times ``t`` to ``s`` < t (per molecule) given the network's ε̂.

        Ancestral: z_s ~ q(z_s | z_t, x̂), the posterior of the jump t → s (exact DDPM when s = t − 1).
        Deterministic (DDIM, η = 0): z_s = α_s x̂ + σ_s ε̂. The coordinates of z_s are projected to zero CoM.
        ``noise`` (standard normal, shaped like z_t) replaces the draw from ``generator`` for the ancestral step.
        """
        x_hat = self.predict_x0(z_t, eps_hat, t, graph)
        if deterministic:
            z = affine(graph, self.schedule.alpha(s, z_t.x.dtype), x_hat, self.schedule.sigma(s, z_t.x.dtype), eps_hat)
        else:
            mean, std = self.posterior(z_t, x_hat, t, s, graph)
            noise = noise if noise is not None else sample_noise(z_t, graph, generator)
            z = mean.combine(lambda k, m, n: m + per_graph(std, k, graph) * n, noise)
        return StepOutput(State(remove_mean(z.x, graph.batch, graph.num_graphs), z.h, z.e), x_hat)

    def log_snr(self) -> torch.Tensor:
        """λ_t = log(α_t/σ_t) for t = 0 … T (float64, decreasing in t)."""
        a2 = self.schedule.alpha2.double()
        return 0.5 * (a2.log() - (1.0 - a2).log())

    def _dpm2m(self, x_hat: State, t: torch.Tensor, s: torch.Tensor, graph: Graph,
               x_hat_prev: State | None, t_prev: torch.Tensor | None):
        """The terms both DPM-Solver++(2M) variants share: h = λ_s − λ_t, α_s, σ_s, σ_t (float64) and the
        data prediction D, x̂ extrapolated along λ from the step before (x̂ itself without one)."""
        lam = self.log_snr().to(t.device)
        a2 = self.schedule.alpha2.to(t.device).double()
        h = lam[s] - lam[t]
        d = x_hat
        if x_hat_prev is not None:
            c = (h / (2.0 * (lam[t] - lam[t_prev]))).to(x_hat.x.dtype)
            d = affine(graph, 1.0 + c, x_hat, -c, x_hat_prev)
        return h, a2[s].sqrt(), (1 - a2[s]).sqrt(), (1 - a2[t]).sqrt(), d

    def dpm2m_step(self, z_t: State, x_hat: State, t: torch.Tensor, s: torch.Tensor, graph: Graph,
                   x_hat_prev: State | None = None, t_prev: torch.Tensor | None = None) -> State:
        """One step t → s of DPM-Solver++(2M), the second-order multistep solver of the probability-flow ODE in
        its data-prediction form: x̂ of this step and of the one before (``x_hat_prev`` at ``t_prev``; first
        order, i.e. DDIM, without it). Coordinates at zero CoM."""
        h, a_s, sig_s, sig_t, d = self._dpm2m(x_hat, t, s, graph, x_hat_prev, t_prev)
        dtype = z_t.x.dtype
        z = affine(graph, (sig_s / sig_t).to(dtype), z_t, (a_s * (1.0 - torch.exp(-h))).to(dtype), d)
        return State(remove_mean(z.x, graph.batch, graph.num_graphs), z.h, z.e)

    def sde_dpm2m_step(self, z_t: State, x_hat: State, t: torch.Tensor, s: torch.Tensor, graph: Graph,
                       noise: State, x_hat_prev: State | None = None, t_prev: torch.Tensor | None = None) -> State:
        """One step t → s of SDE-DPM-Solver++(2M), the second-order multistep solver of the reverse SDE in its
        data-prediction form, with standard normal ``noise``. Without ``x_hat_prev`` it is the ancestral step
        (the posterior q(z_s | z_t, x̂)) exactly; with it, x̂ is extrapolated along λ from the step before."""
        h, a_s, sig_s, sig_t, d = self._dpm2m(x_hat, t, s, graph, x_hat_prev, t_prev)
        dtype = z_t.x.dtype
        decay = torch.exp(-2.0 * h)
        z = affine(graph, (sig_s / sig_t * torch.exp(-h)).to(dtype), z_t, (a_s * (1.0 - decay)).to(dtype), d)
        std = (sig_s * (1.0 - decay).sqrt()).to(dtype)
        z = z.combine(lambda k, m, n: m + per_graph(std, k, graph) * n, noise)
        return State(remove_mean(z.x, graph.batch, graph.num_graphs), z.h, z.e)

    def final(self, z_0: State, eps_hat: State, graph: Graph, t: torch.Tensor | None = None) -> State:
        """x̂ from the last state and the network's ε̂ there (at t = 0 unless ``t`` is given; coordinates at
        zero CoM)."""
        t0 = torch.zeros(graph.num_graphs, dtype=torch.long, device=z_0.x.device) if t is None else t
        x_hat = self.predict_x0(z_0, eps_hat, t0, graph)
        return State(remove_mean(x_hat.x, graph.batch, graph.num_graphs), x_hat.h, x_hat.e)
