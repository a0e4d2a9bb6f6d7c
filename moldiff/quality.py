"""Sample a generator and score the molecules: the figures the training log and benchmarks record."""
from __future__ import annotations

import time

from moldiff.chem.metrics import evaluate
from moldiff.model import Generator
from moldiff.sampling import generate

SUMMARY = {
    "atom_stability": "atom_stable", "molecule_stability": "mol_stable", "validity": "valid",
    "connected_validity": "connected_valid", "uniqueness": "unique",
    "sanitises_as_given": "own_valid", "charge_molecule_stability": "own_mol_stable",
}


def summarise(report: dict) -> dict:
    """The headline proportions of a metrics report, flat: {short name: value}."""
    out = {}
    for name, short in SUMMARY.items():
        entry = report["metrics"].get(name, {})
        if "value" in entry:
            out[short] = round(float(entry["value"]), 4)
    return out


def sample_quality(gen: Generator, n: int, steps: int | None, seed: int = 0, batch_size: int = 100) -> dict:
    """Sample ``n`` molecules with ``steps`` sampler steps and return the headline metrics and timing."""
    start = time.perf_counter()
    mols = generate(gen, n, steps=steps, seed=seed, batch_size=batch_size)
    seconds = time.perf_counter() - start
    was_training = gen.network.training
    gen.network.eval()
    out = {"samples": n, "sample_steps": steps or gen.chain.T, "sample_seconds": round(seconds, 1)}
    out.update(summarise(evaluate(mols)))
    gen.network.train(was_training)
    return out
