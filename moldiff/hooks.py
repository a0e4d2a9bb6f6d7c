"""Per-step hooks of the sampling loop: called after every reverse step, each may replace the state.

A hook is any callable ``hook(t, s, out, graph) -> State | None`` with the integer times of the step t → s
(s = −1 for the final x̂), the chain's :class:`~moldiff.diffusion.chain.StepOutput` and the batch's graph;
returning a State replaces ``out.prev`` for the next step, None keeps it.
"""
from __future__ import annotations

from typing import Protocol

import torch

from moldiff.state import Graph, State


class Hook(Protocol):
    def __call__(self, t: int, s: int, out, graph: Graph) -> State | None: ...


class PinAtoms:
    """Keep the coordinates of some atoms at known positions: at every step they are set to a draw of
    q(z_s | x) = N(α_s x, σ_s² I) of the known coordinates (the inpainting step of RePaint-style samplers), and
    to the known coordinates themselves at the end. ``mask`` (N,) marks the pinned atoms of the batch,
    ``x_known`` (N, 3) holds their coordinates (other rows are ignored)."""

    def __init__(self, schedule, mask: torch.Tensor, x_known: torch.Tensor, generator: torch.Generator | None = None):
        self.schedule = schedule  # a NoiseSchedule: alpha(t, dtype) and sigma(t, dtype)
        self.mask, self.x_known, self.generator = mask.bool(), x_known, generator

    def __call__(self, t: int, s: int, out, graph: Graph) -> State:
        z = out.prev
        x = z.x.clone()
        if s < 0:
            x[self.mask] = self.x_known[self.mask].to(x.dtype)
        else:
            s_t = torch.tensor([s], device=x.device)
            eps = torch.randn(x[self.mask].shape, generator=self.generator, device=x.device, dtype=x.dtype)
            a, sd = self.schedule.alpha(s_t, x.dtype), self.schedule.sigma(s_t, x.dtype)
            x[self.mask] = a * self.x_known[self.mask].to(x.dtype) + sd * eps
        return State(x, z.h, z.e)


class Trajectory:
    """Record the reverse chain of one molecule of the first batch it sees (``molecule``): after each step
    its coordinates and the argmax of its atom-type block, ready for :meth:`frames`."""

    def __init__(self, n_types: int, molecule: int = 0):
        self.n_types, self.molecule = n_types, molecule
        self.steps: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.done = False

    def __call__(self, t: int, s: int, out, graph: Graph) -> None:
        if self.done:
            return None
        rows = graph.batch == self.molecule
        z = out.prev
        self.steps.append((s, z.x[rows].detach().float().cpu(), z.h[rows, :self.n_types].argmax(1).cpu()))
        self.done = s < 0
        return None

    def frames(self, elements: tuple[str, ...]) -> list[tuple[list[str], list[list[float]], str]]:
        """(element symbols, coordinates, comment) per recorded step, the final x̂ last."""
        return [([elements[k] for k in types.tolist()], x.tolist(), f"t={s}" if s >= 0 else "final")
                for s, x, types in self.steps]


def xyz_frames(frames: list[tuple[list[str], list[list[float]], str]]) -> str:
    """A multi-frame XYZ text (one block per frame), which molecule viewers play as a movie."""
    lines = []
    for elements, pos, comment in frames:
        lines.append(str(len(elements)))
        lines.append(comment)
        lines.extend(f"{e:<2s} {p[0]:12.6f} {p[1]:12.6f} {p[2]:12.6f}" for e, p in zip(elements, pos))
    return "\n".join(lines) + "\n"
