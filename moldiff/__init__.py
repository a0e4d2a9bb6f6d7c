"""moldiff: 3D molecule generation with an E(3)-equivariant graph diffusion model."""
__version__ = "0.1.0"
