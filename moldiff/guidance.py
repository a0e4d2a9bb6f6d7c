"""Measured default weights of classifier-free guidance for conditional sampling (no torch: the CLI's help reads it)."""
from __future__ import annotations

from typing import Mapping

DEFAULT_GUIDANCE = 4.0  # the weight of a property that GUIDANCE_BY_PROPERTY does not name
# Per property (benchmarks/results/conditional_guidance_all.md: qm9-cond, 300 samples per property and weight,
# w in {0, 1, 2, 4}): the weight with the lowest judged MAE among those whose samples stay >= 95 % valid. The
# size-driven alpha and Cv follow best at w = 1 (larger weights overshoot), the others at 2-4.
GUIDANCE_BY_PROPERTY: dict[str, float] = {"alpha": 1.0, "Cv": 1.0, "gap": 4.0, "mu": 4.0, "homo": 2.0, "lumo": 2.0}


def default_guidance(request: Mapping[str, float]) -> float:
    """The weight of a request when none is given: the smallest measured weight among its properties, so that
    none is over-amplified (for requests of several properties this rule is a choice, not a measurement)."""
    return min((GUIDANCE_BY_PROPERTY.get(name, DEFAULT_GUIDANCE) for name in request), default=DEFAULT_GUIDANCE)


def guidance_help() -> str:
    """The measured defaults in words (for ``--help``)."""
    table = ", ".join(f"{name} {w:g}" for name, w in GUIDANCE_BY_PROPERTY.items())
    return f"default per property: {table}; the smallest of those requested"
