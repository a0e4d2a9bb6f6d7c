"""The Python API: load a generator, sample RDKit molecules with 3D conformers."""
from __future__ import annotations

from pathlib import Path

import torch
from rdkit import Chem

from moldiff.diffusion.grids import DEFAULT_NOISE_SCALE, DEFAULT_NOISE_SCALE_FROM
from moldiff.model import Generator
from moldiff.pretrained import pretrained_path, resolve_model
from moldiff.sampling import conditioned, generate


def load_pretrained(name: str = "qm9", device: str | torch.device | None = None) -> Generator:
    """A model shipped with moldiff, by name (``"qm9"``, ``"moses"``, ``"qm9-cond"``), with its EMA weights."""
    return load(pretrained_path(name), device)


def load(path: str | Path, device: str | torch.device | None = None) -> Generator:
    """A generator from a checkpoint file written by ``moldiff train``."""
    from moldiff.runtime import resolve_device, tune_allocator

    tune_allocator()  # an entry point of the package: sampling's allocator setting is made here, once
    return Generator.from_checkpoint(path, device=resolve_device(str(device) if device is not None else None))


def sample(n: int, model: Generator | str | Path = "qm9", *, steps: int | None = None, seed: int = 0,
           n_atoms: int | None = None, deterministic: bool = False, keep_invalid: bool = True,
           batch_size: int = 250, spacing: str = "auto", solver: str = "auto", bf16: bool = False,
           progress: bool = True, threads: int | None = None, condition: dict[str, float] | None = None,
           guidance: float | None = None, noise_scale: float = DEFAULT_NOISE_SCALE,
           noise_scale_from: float = DEFAULT_NOISE_SCALE_FROM, refine: int = 0,
           relax: str = "none") -> list[Chem.Mol]:
    """Sample ``n`` molecules; ``model`` is a Generator, a built-in name (``"qm9"``, ``"moses"``, ``"qm9-cond"``)
    or a checkpoint path.

    ``condition`` asks a conditional model (``"qm9-cond"``) for property values, any subset of its properties
    in the data's units (QM9: alpha Bohr³, gap/homo/lumo Hartree, mu Debye, Cv cal/(mol K)), e.g.
    ``{"gap": 0.25}``; ``guidance`` is the classifier-free guidance weight (default per property,
    measured: :func:`moldiff.guidance.default_guidance`). A value outside the training range is a warning.

    Each ``Mol`` has a 3D conformer and the property ``moldiff_valid``; with ``keep_invalid=False``
    samples RDKit cannot sanitise are left out (so fewer than ``n`` may come back). A progress bar shows on
    stderr unless ``progress=False``. Threads are picked as the command line picks them — the cores idle now —
    unless ``threads`` is given or the caller chose torch's thread count (``torch.set_num_threads`` to a number
    other than torch's default, or $OMP_NUM_THREADS), which is then kept.
    ``bf16`` is used only where the CPU or GPU has native bf16 (else a warning and fp32).
    ``solver`` and ``spacing`` default to the best measured for ``steps``
    (:func:`moldiff.diffusion.grids.default_sampler`: the chain itself for all T steps, SDE-DPM-Solver++(2M) on
    quadratic spacing for fewer). ``noise_scale`` multiplies the coordinate noise of the reverse steps from
    ``noise_scale_from``·T down (defaults from :mod:`moldiff.diffusion.grids`; scale 1: the chain itself).
    ``refine`` adds that many network evaluations that move the coordinates to the model's own clean estimate
    (:func:`moldiff.sampling.refine_coordinates`; 0: off). ``relax="mmff"`` polishes the coordinates with MMFF94 (:func:`moldiff.chem.relax.relax_mmff`; property
    ``moldiff_relaxed``); the default ``"none"`` returns the model's own geometry.
    """
    from moldiff.chem.relax import check_method, relax as polish
    from moldiff.diffusion.grids import default_sampler
    from moldiff.runtime import resolve_bf16, set_threads, threads_chosen_by_user

    check_method(relax)
    if isinstance(model, (str, Path)):
        model = load(resolve_model(model))
    if threads is not None or not threads_chosen_by_user():
        set_threads(threads)
    import warnings

    solver, spacing = default_sampler(steps, model.chain.T, deterministic, solver, spacing)
    model, extra = conditioned(model, condition, n, guidance, warn=lambda m: warnings.warn(m, stacklevel=3))
    mols = generate(model, n, steps=steps, seed=seed, n_atoms=n_atoms, deterministic=deterministic,
                    batch_size=batch_size, spacing=spacing, solver=None if solver == "ancestral" else solver, bf16=resolve_bf16(bf16, model.device),
                    progress=progress, noise_scale=noise_scale, noise_scale_from=noise_scale_from, refine=refine,
                    **extra)
    mols = polish(mols, relax)
    return mols if keep_invalid else [m for m in mols if m.GetIntProp("moldiff_valid")]


def inpaint(fragment: Chem.Mol, n_add: int | tuple[int, int], n: int = 10, model: Generator | str | Path = "qm9", *,
            keep: list[int] | None = None, anchors: list[int] | None = None, steps: int | None = None,
            spacing: str = "uniform", seed: int = 0, jump: int | None = None, resamplings: int | None = None,
            guidance: float | None = None, keep_invalid: bool = True, batch_size: int = 100,
            threads: int | None = None) -> list[Chem.Mol]:
    """``n`` molecules that contain ``fragment`` (an RDKit ``Mol`` with a 3D conformer; its heavy atoms for a
    model with implicit hydrogens) at its coordinates, with ``n_add`` more atoms (or a range ``(lo, hi)``).
    ``keep``/``anchors``: 1-based atom numbers to keep / where new atoms may bond (default: all). Each
    returned ``Mol`` holds the fragment's atoms first, in order, and the property ``moldiff_valid``.
    ``guidance``: the reconstruction guidance weight (default :data:`moldiff.inpainting.DEFAULT_GUIDANCE`; 0: none)."""
    from moldiff.inpainting import DEFAULT_GUIDANCE, DEFAULT_JUMP, DEFAULT_RESAMPLINGS, Fragment, inpaint_molecules
    from moldiff.runtime import set_threads, threads_chosen_by_user

    if isinstance(model, (str, Path)):
        model = load(resolve_model(model))
    if threads is not None or not threads_chosen_by_user():
        set_threads(threads)
    frag = Fragment.from_mol(fragment, keep, anchors, hydrogens=not model.config.features.implicit_h)
    mols = inpaint_molecules(model, frag, n_add, n, steps=steps, spacing=spacing, seed=seed,
                             jump=jump or DEFAULT_JUMP, resamplings=resamplings or DEFAULT_RESAMPLINGS,
                             guidance=DEFAULT_GUIDANCE if guidance is None else guidance, batch_size=batch_size)
    return mols if keep_invalid else [m for m in mols if m.GetIntProp("moldiff_valid")]
