"""Names of the sampler options and the default choice among them, kept free of torch so the CLI can check its
arguments before the heavy imports."""
from __future__ import annotations

SPACINGS = ("uniform", "quadratic", "cubic", "logsnr", "karras")  # how an S-step sampler spreads its steps over [0, T]
SOLVERS = ("ancestral", "dpm2m", "sde-dpm2m")  # the reverse-step rules the chain offers
AUTO = "auto"  # let default_sampler choose
# the factor on the fresh coordinate noise of the reverse steps from t ≤ DEFAULT_NOISE_SCALE_FROM·T down (1: the chain
# itself; < 1: coordinates at a lower temperature); kept at the chain itself: benchmarks/results/noise_scale.md
DEFAULT_NOISE_SCALE = 1.0
DEFAULT_NOISE_SCALE_FROM = 1.0


def default_sampler(steps: int | None, timesteps: int, deterministic: bool = False,
                    solver: str = AUTO, spacing: str = AUTO) -> tuple[str, str]:
    """The (solver, spacing) to use for ``steps`` of a ``timesteps``-step chain; an explicit choice is kept.

    All T steps: the chain itself (ancestral, uniform). Fewer: SDE-DPM-Solver++(2M) on quadratic spacing, the
    best measured at few steps (benchmarks/results/few_step.md: QM9 at 20 evaluations, 94.8 % molecule
    stability against 90.0 % for the ancestral step; benchmarks/results/moses_sampler.md: the drug-like model).
    ``deterministic`` (DDIM) keeps the chain's own step, since the SDE solver draws noise.
    """
    few = steps is not None and steps < timesteps
    if solver == AUTO:
        solver = "sde-dpm2m" if few and not deterministic else "ancestral"
    if spacing == AUTO:
        spacing = "quadratic" if few else "uniform"
    return solver, spacing
