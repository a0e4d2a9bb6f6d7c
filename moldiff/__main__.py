"""``python -m moldiff`` = the ``moldiff`` command.

Run from the folder that holds a clone named ``moldiff`` (``git clone …/moldiff && python -m moldiff``), Python
imports that folder as a namespace package ``moldiff`` (the current folder comes first on ``sys.path``), and
its subfolders (the clone's ``data/``, say) would shadow the package's own (``moldiff.data``). This file is then
found by the installed package's finder; it puts the real package first again before anything else is imported.
"""
import sys
from pathlib import Path


def _unshadow() -> None:
    pkg = sys.modules.get("moldiff")
    if pkg is None or getattr(pkg, "__file__", None):  # the regular package: nothing shadows it
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the folder that holds this package
    for name in [m for m in sys.modules if m == "moldiff" or m.startswith("moldiff.")]:
        del sys.modules[name]


# what moldiff imports from outside the standard library (pyproject.toml's dependencies)
_DEPENDENCIES = {"torch", "torch_geometric", "rdkit", "networkx", "qm9pack", "numpy", "tqdm", "matplotlib", "PIL"}


def _run() -> int:
    """The command, with one line instead of a traceback when this Python lacks moldiff's dependencies (e.g.
    ``python -m moldiff`` in the clone with a Python other than the set-up one)."""
    try:
        from moldiff.cli import main

        return main()
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in _DEPENDENCIES:
            raise
        print(f"moldiff: this Python ({sys.executable}) has no {err.name!r}, which moldiff needs: activate the "
              "environment moldiff is installed in, or set one up (README, Set-up: pip install -e .)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # not when a spawned worker process imports the main module
    _unshadow()
    sys.exit(_run())
