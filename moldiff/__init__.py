"""moldiff: 3D molecule generation with an E(3)-equivariant graph diffusion model.

``moldiff.sample(n)`` returns RDKit molecules with 3D conformers from the built-in QM9 model (or
``model="moses"``, drug-like); ``moldiff.inpaint(fragment, n_add)`` keeps a fragment and generates the rest;
``moldiff.load_pretrained("qm9")`` and ``moldiff.load(path)`` return a :class:`moldiff.model.Generator`.
The API is loaded on first use, so torch-free parts (``moldiff.chem``) stay torch-free.
"""
__version__ = "0.1.0"
__all__ = ["inpaint", "load", "load_pretrained", "sample", "__version__"]


def __getattr__(name: str):
    if name in ("inpaint", "load", "load_pretrained", "sample"):
        from moldiff import api
        return getattr(api, name)
    raise AttributeError(f"module 'moldiff' has no attribute {name!r}")
