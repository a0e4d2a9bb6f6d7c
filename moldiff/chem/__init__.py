"""Chemistry: atoms+bonds -> RDKit molecules, bond perception, the EDM protocol and the benchmark metrics.

No torch here. Modules, one job each:

- ``build``: ``build_mol`` — the one place where moldiff makes a ``Chem.Mol``
- ``protocol``: EDM's distance-based bond orders and stability
- ``perceive``: chemically correct bonds and charges with ``rdDetermineBonds``
- ``metrics``: every benchmark metric, one definition each; ``evaluate`` is the entry point
- ``reference``: training-split statistics (novelty, distribution distances), cached
- ``io``: SDF / XYZ / SMILES files with per-record errors; atomic writes
- ``graph``: networkx round trip
"""
from moldiff.chem.build import build_mol
from moldiff.chem.metrics import evaluate, evaluate_structures
from moldiff.chem.perceive import perceive_mol
from moldiff.chem.protocol import protocol_bonds, protocol_mol

__all__ = ["build_mol", "evaluate", "evaluate_structures", "perceive_mol", "protocol_bonds", "protocol_mol"]
