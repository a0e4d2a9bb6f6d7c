"""moldiff: 3D molecule generation with an E(3)-equivariant graph diffusion model."""
__version__ = "0.1.0"

from moldiff.api import load, load_pretrained, sample  # noqa: E402

__all__ = ["load", "load_pretrained", "sample", "__version__"]
