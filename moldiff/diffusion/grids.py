"""Names of the sampler options, kept free of torch so the CLI can check its arguments before the heavy imports."""
from __future__ import annotations

SPACINGS = ("uniform", "quadratic", "cubic", "logsnr", "karras")  # how an S-step sampler spreads its steps over [0, T]
SOLVERS = ("ancestral", "dpm2m", "sde-dpm2m")  # the reverse-step rules the chain offers
