"""Negative log-likelihood bound of held-out molecules, in nats per molecule, as EDM reports it.

−log p(x, h, e, N) ≤ −log p(N) + L_T + T · E_{t∼U{1..T}}[L_{t−1}] + L_0, with the diffusion sum estimated by
uniformly drawn timesteps per molecule (unbiased; stratified when several). Coordinates count (N − 1)·3 degrees of freedom; the one-hot
blocks are discretised at t = 0 (probability mass of each class's bin). The estimate is in the scaled units of
the chain (coordinates in Å). With implicit hydrogens (``features.implicit_h``) the molecules are heavy-atom
graphs (:func:`moldiff.data.qm9.without_hydrogens`) and p(N) counts heavy atoms: the bound is that of the
heavy-atom graph, not comparable with an explicit-H model's.
"""
from __future__ import annotations

import math

import torch
from torch_geometric.data import Batch

from moldiff.model import Generator
from moldiff.representation import encode


@torch.no_grad()
def nll_terms(gen: Generator, batch: Batch, generator: torch.Generator | None = None, t_samples: int = 1
              ) -> dict[str, torch.Tensor]:
    """Per-molecule terms of the bound for one PyG batch of molecules (see module docstring).

    The diffusion sum is estimated from ``t_samples`` timesteps per molecule, stratified over 1..T (one
    uniform draw in each of ``t_samples`` equal slices): unbiased, and far less variable than one draw.
    """
    chain, net = gen.chain, gen.network
    x0, graph = encode(batch.to(gen.device), gen.config.features)
    hist = torch.tensor(gen.stats.n_atoms_hist, dtype=torch.float64)
    n = graph.n_atoms.cpu()
    p_n = hist[n.clamp(max=len(hist) - 1)] / hist.sum()
    log_pn = torch.where(n < len(hist), torch.log(p_n), torch.full_like(p_n, -math.inf))
    diffusion = torch.zeros(graph.num_graphs, dtype=torch.float64, device=x0.x.device)
    for k in range(t_samples):
        u = torch.rand(graph.num_graphs, generator=generator, device=x0.x.device, dtype=torch.float64)
        t = (((k + u) / t_samples) * chain.T).floor().long().clamp(0, chain.T - 1) + 1
        diffusion += chain.T * chain.diffusion_term(net, x0, graph, t, generator).double() / t_samples
    prior = chain.prior_kl(x0, graph).double()
    recon = chain.reconstruction(net, x0, graph, gen.config.features.categorical_blocks(), generator).double()
    total = -log_pn.to(prior.device) + prior + diffusion + recon
    return {"nll": total, "log_pN": log_pn, "prior": prior, "diffusion": diffusion, "reconstruction": recon}


def estimate_nll(gen: Generator, molecules: list, batch_size: int = 128, seed: int = 0, t_samples: int = 1
                 ) -> dict[str, float]:
    """Mean of each term over ``molecules`` (PyG ``Data``), with the standard error of the total."""
    g = torch.Generator(device=gen.device).manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {}
    gen.network.eval()
    for start in range(0, len(molecules), batch_size):
        terms = nll_terms(gen, Batch.from_data_list(molecules[start:start + batch_size]), g, t_samples)
        for k, v in terms.items():
            parts.setdefault(k, []).append(v.cpu())
    out = {k: float(torch.cat(v).mean()) for k, v in parts.items()}
    total = torch.cat(parts["nll"])
    out["nll_stderr"] = float(total.std() / math.sqrt(len(total))) if len(total) > 1 else float("nan")
    out["molecules"] = len(total)
    return out
