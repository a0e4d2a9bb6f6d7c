"""Conditioning on per-molecule properties: the condition vector, its random dropping in training,
classifier-free guidance, and molecule sizes drawn from p(N | condition).

A request names any subset of the model's properties (in the data's own units). The network sees
``[(v − mean)/std · given, given]`` per property (width 2·P): a property that is not given is all zeros, so a
request with nothing given is exactly the unconditioned path (the network embeds the condition without bias).
Training drops the whole condition with probability ``drop_all`` and otherwise keeps a random subset of a
uniformly random size, so one model answers any subset; guidance mixes the two paths,
ε = ε_u + (1 + w)(ε_c − ε_u) (Ho & Salimans 2022): w = 0 is the conditional model alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from moldiff.state import State

SIZE_BINS = 20  # quantile bins per property of the p(N | property) tables


@dataclass(frozen=True)
class ConditionConfig:
    """The properties a model is conditioned on (empty: an unconditioned model) and how training drops them."""

    properties: tuple[str, ...] = ()
    drop_all: float = 0.1  # probability that a training molecule sees no condition at all
    embed_lr_scale: float = 1.0  # learning rate of the condition embedding, in units of the run's (fine-tuning)

    def __post_init__(self) -> None:
        if len(set(self.properties)) != len(self.properties):
            raise ValueError(f"condition.properties names a property twice: {list(self.properties)}")
        if not 0.0 <= self.drop_all < 1.0:
            raise ValueError(f"condition.drop_all must be in [0, 1), got {self.drop_all}")
        if not self.embed_lr_scale > 0:
            raise ValueError(f"condition.embed_lr_scale must be positive, got {self.embed_lr_scale}")

    @property
    def dim(self) -> int:
        """Width of the condition vector the network embeds."""
        return 2 * len(self.properties)


def property_stats(values: Mapping[str, torch.Tensor], sizes: torch.Tensor, bins: int = SIZE_BINS) -> dict:
    """Training-split statistics of each property: mean, std, range, and the counts of molecule sizes per
    quantile bin (``edges`` holds the bins' inner edges) for p(N | property)."""
    out = {}
    sizes = sizes.long()
    for name, v in values.items():
        v = v.double()
        ok = torch.isfinite(v)
        v, n = v[ok], sizes[ok]
        edges = torch.quantile(v, torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
        b = torch.bucketize(v, edges)
        counts = torch.zeros(bins, int(sizes.max()) + 1, dtype=torch.long)
        counts.index_put_((b, n), torch.ones_like(n), accumulate=True)
        out[name] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
                     "edges": edges.tolist(), "size_counts": counts.tolist()}
    return out


def encode(values: torch.Tensor, stats: Mapping[str, dict], names: Sequence[str]) -> torch.Tensor:
    """(G, P) values in the data's units, NaN where not given → the (G, 2P) condition vector."""
    mean = torch.tensor([stats[n]["mean"] for n in names], dtype=torch.float64)
    std = torch.tensor([stats[n]["std"] for n in names], dtype=torch.float64)
    given = torch.isfinite(values)
    z = torch.where(given, (values.double().cpu() - mean) / std, torch.zeros((), dtype=torch.float64))
    return torch.cat([z, given.double()], dim=1).float()


def drop_for_training(values: torch.Tensor, drop_all: float, generator: torch.Generator) -> torch.Tensor:
    """The values with properties hidden (NaN) at random: all of them with probability ``drop_all``, else a
    random subset of uniformly random size 1…P is kept."""
    G, P = values.shape
    dev = generator.device
    none = torch.rand(G, generator=generator, device=dev) < drop_all
    keep_count = torch.randint(1, P + 1, (G,), generator=generator, device=dev)
    rank = torch.rand(G, P, generator=generator, device=dev).argsort(1).argsort(1)
    keep = (rank < keep_count.unsqueeze(1)) & ~none.unsqueeze(1)
    return torch.where(keep.to(values.device), values, torch.full_like(values, math.nan))


def request_values(request: Mapping[str, float], names: Sequence[str]) -> torch.Tensor:
    """(1, P): the requested values in the model's property order, NaN where not requested."""
    return torch.tensor([[float(request.get(n, math.nan)) for n in names]], dtype=torch.float64)


def check_request(request: Mapping[str, float], names: Sequence[str], stats: Mapping[str, dict]) -> list[str]:
    """ValueError for a property the model does not know or a value that is not a finite number; returns a
    warning for each value outside the training split's range."""
    if not names:
        raise ValueError("this model takes no condition (it was trained without properties)")
    warnings = []
    for name, value in request.items():
        if name not in names:
            raise ValueError(f"unknown property {name!r}; this model is conditioned on {', '.join(names)}")
        if not math.isfinite(value):
            raise ValueError(f"--condition {name}={value}: the value must be a finite number")
        lo, hi = stats[name]["min"], stats[name]["max"]
        if not lo <= value <= hi:
            warnings.append(f"{name}={value:g} is outside the training range [{lo:g}, {hi:g}]: "
                            "expect molecules that do not have it")
    return warnings


def parse_condition(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` → (name, value); ValueError in one line otherwise."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"--condition {text!r}: write NAME=VALUE, e.g. gap=0.25")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--condition {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"--condition {text!r}: the value must be a finite number")
    return name, number


def size_histogram(n_atoms_hist: Sequence[int], stats: Mapping[str, dict], request: Mapping[str, float],
                   smoothing: float = 0.5) -> list[float]:
    """p(N | request) ∝ p(N) ∏_k p(N | bin of property k) / p(N), over the sizes of the training split (each
    property's table smoothed by ``smoothing`` counts per size); p(N) when nothing is requested."""
    prior = torch.tensor(n_atoms_hist, dtype=torch.float64)
    support = prior > 0
    log_p = torch.where(support, prior.clamp_min(1e-300).log(), torch.full_like(prior, -math.inf))
    p_n = prior / prior.sum()
    for name, value in request.items():
        s = stats[name]
        b = int(torch.bucketize(torch.tensor([value], dtype=torch.float64), torch.tensor(s["edges"])))
        counts = torch.zeros_like(prior)
        row = torch.tensor(s["size_counts"][b], dtype=torch.float64)[:len(prior)]
        counts[:len(row)] = row
        cond = (counts + smoothing * support) / (counts + smoothing * support).sum()
        log_p = log_p + torch.where(support, cond.clamp_min(1e-300).log() - p_n.clamp_min(1e-300).log(), 0.0)
    p = torch.exp(log_p - log_p.max())
    return (p / p.sum()).tolist()


class Guided(nn.Module):
    """Classifier-free guidance around a conditional ε-network: ε_u + (1 + w)(ε_c − ε_u); the network alone
    for w = 0 or without a condition."""

    def __init__(self, network: nn.Module, weight: float):
        super().__init__()
        self.network, self.weight = network, float(weight)

    def forward(self, z: State, t: torch.Tensor, graph, cond: torch.Tensor | None = None) -> State:
        eps_c = self.network(z, t, graph, cond)
        if cond is None or self.weight == 0.0:
            return eps_c
        eps_u = self.network(z, t, graph, None)
        w = self.weight
        return eps_c.combine(lambda k, c, u: u + (1.0 + w) * (c - u), eps_u)
