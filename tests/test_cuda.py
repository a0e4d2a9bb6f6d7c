"""The same model on a GPU: the network agrees with the CPU, a training step and the reverse chain run.

Skipped where CUDA is absent (CI); run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
Needs neither RDKit nor the QM9 cache.
"""
from __future__ import annotations

import pytest
import torch

from moldiff.config import load_config
from moldiff.diffusion.chain import DiffusionChain
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.state import Graph, State
from moldiff.model import build_network
from moldiff.sampling import empty_graph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _inputs(graph: Graph, h_dim: int, e_dim: int) -> tuple[State, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n, p = graph.batch.numel(), graph.pair_index.shape[1]
    z = State(torch.randn(n, 3, generator=g), torch.randn(n, h_dim, generator=g),
              torch.randn(p, e_dim, generator=g) if e_dim else None)
    return z, torch.rand(graph.num_graphs, generator=g)


def _to(state: State, device: str) -> State:
    return State(state.x.to(device), state.h.to(device), None if state.e is None else state.e.to(device))


@pytest.mark.parametrize("preset", ["tiny", "qm9-bonds"])
def test_network_matches_cpu(preset, toy_graph):
    cfg = load_config(preset)
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    graph = toy_graph([5, 9, 3])
    z, t = _inputs(graph, net.h_dim, net.e_dim)
    with torch.no_grad():
        cpu = net(z, t, graph)
        gpu = net.to("cuda")(_to(z, "cuda"), t.cuda(), toy_graph([5, 9, 3], "cuda"))
    for a, b in zip((cpu.x, cpu.h, cpu.e), (gpu.x, gpu.h, gpu.e)):
        if a is not None:  # TF32 may be on: tolerance of a few 1e-3 relative
            torch.testing.assert_close(b.cpu(), a, rtol=5e-3, atol=5e-3)


def test_training_step_and_sampling_on_cuda(toy_graph):
    cfg = load_config("qm9-bonds")
    net = build_network(cfg).cuda()
    chain = DiffusionChain(NoiseSchedule(cfg.schedule))
    graph = toy_graph([6, 11], "cuda")
    template, _ = empty_graph([6, 11], net.h_dim, net.e_dim, torch.device("cuda"))
    g = torch.Generator(device="cuda").manual_seed(0)
    x0 = State(torch.randn_like(template.x), template.h, template.e)  # any state serves as data here
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss, _ = chain.loss(net, x0, graph, generator=g)
    loss.mean().backward()
    opt.step()
    assert torch.isfinite(loss).all()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    from moldiff.sampling import run_chain
    seen = []
    final = run_chain(net.eval(), chain, template, graph, steps=5, generator=g,
                      hooks=[lambda t, s, out, graph: seen.append(s)])
    assert seen[-1] == -1 and final.x.is_cuda and torch.isfinite(final.x).all()
