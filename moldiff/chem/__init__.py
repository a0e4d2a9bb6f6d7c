"""Chemistry: atoms+bonds -> RDKit molecules, bond perception, the EDM protocol and the benchmark metrics.

No torch here, and no dataset (``moldiff.data`` builds the QM9 reference with ``reference_build``). Modules, one
job each; imports run one way (``reference_build`` → ``metrics`` → ``reference``):

- ``build``: ``build_mol`` — the one place where moldiff makes a ``Chem.Mol``; ``assign_stereo_from_3d``
- ``protocol``: EDM's distance-based bond orders and stability
- ``perceive``: chemically correct bonds and charges with ``rdDetermineBonds``
- ``metrics``: every benchmark metric, one definition each; ``evaluate`` is the entry point
- ``reference``: reference statistics (novelty, distribution distances) and their cache file
- ``reference_build``: ``build_reference`` from (elements, positions, SMILES) records
- ``io``: SDF / XYZ / SMILES files (optionally .gz) with per-record errors; atomic writes
- ``readers`` / ``writers``: one record of each format, parsed line by line within size limits / written
- ``text``: file content made safe for the terminal (``printable``) and for one-line titles
- ``graph``: networkx round trip
"""
from moldiff.chem.build import build_mol
from moldiff.chem.metrics import evaluate, evaluate_structures
from moldiff.chem.perceive import perceive_mol
from moldiff.chem.protocol import protocol_bonds, protocol_mol

__all__ = ["build_mol", "evaluate", "evaluate_structures", "perceive_mol", "protocol_bonds", "protocol_mol"]
