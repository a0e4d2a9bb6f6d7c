"""The fast EGNN paths give the reference path's outputs (correctness only; benchmarks/speed.py does timing)."""
from __future__ import annotations

import os

import pytest
import torch

from moldiff.state import State
from moldiff.nn import egnn
from moldiff.nn.egnn import EGNN, EGNNConfig

SIZES = [3, 9, 19, 1, 12]


def _inputs(graph, h_dim: int, e_dim: int, seed: int = 0) -> tuple[State, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, p = int(graph.batch.numel()), int(graph.pair_index.shape[1])
    x = torch.randn(n, 3, generator=g) * 1.5
    h = torch.randn(n, h_dim, generator=g)
    e = torch.randn(p, e_dim, generator=g) if e_dim else None
    t = torch.rand(graph.num_graphs, generator=g)
    return State(x, h, e), t


def _net(e_dim: int, seed: int = 0, coord_std: float = 0.3, **cfg) -> EGNN:
    torch.manual_seed(seed)
    net = EGNN(EGNNConfig(hidden=32, layers=3, edge_hidden=16, **cfg), h_dim=6, e_dim=e_dim)
    # make the coordinate branch matter: the default init (gain 0.001) would hide a wrong coordinate update
    with torch.no_grad():
        for layer in net.layers:
            layer.coord_mlp[2].weight.normal_(0, coord_std)
    return net


def _run(net, z, t, graph, kernel: str, bf16: bool = False) -> State:
    old = net.set_kernel(kernel)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(z, t, graph)
    finally:
        net.set_kernel(old)


@pytest.mark.parametrize("e_dim", [0, 4])
@pytest.mark.parametrize("cfg", [{}, {"attention": False, "tanh": False, "norm_factor": 3.0}])
def test_fast_matches_reference_fp32(toy_graph, e_dim, cfg):
    graph = toy_graph(SIZES)
    net = _net(e_dim, **cfg)
    z, t = _inputs(graph, 6, e_dim)
    ref = _run(net, z, t, graph, "reference")
    fast = _run(net, z, t, graph, "fast")
    for a, b in zip(ref, fast):
        if a is None:
            assert b is None
            continue
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_fast_gradients_match_reference(toy_graph):
    graph = toy_graph(SIZES)
    z, t = _inputs(graph, 6, 4)
    grads = {}
    for kernel in ("reference", "fast"):
        net = _net(4)
        out = _run(net, z, t, graph, kernel)
        (out.x.square().sum() + out.h.square().sum() + out.e.square().sum()).backward()
        grads[kernel] = {k: p.grad.clone() for k, p in net.named_parameters()}
    assert grads["reference"].keys() == grads["fast"].keys()
    for k, g in grads["reference"].items():
        torch.testing.assert_close(grads["fast"][k], g, rtol=1e-4, atol=1e-6, msg=k)


def test_parameter_names_and_checkpoint_loading_unchanged():
    net = _net(0)
    names = set(net.state_dict())
    for k in ("embed_h.weight", "layers.0.lin_recv.weight", "layers.0.lin_recv.bias", "layers.0.lin_send.weight",
              "layers.0.lin_dist.weight", "layers.0.edge_out.weight", "layers.0.att.weight",
              "layers.0.node_mlp.0.weight", "layers.0.node_mlp.2.weight", "layers.0.coord_mlp.0.weight",
              "layers.0.coord_mlp.2.weight", "out_h.2.weight"):
        assert k in names
    assert "layers.0.coord_mlp.2.bias" not in names
    other = _net(0, seed=1)
    other.load_state_dict(net.state_dict(), strict=True)


def test_bf16_keeps_coordinates_fp32_and_stays_close(toy_graph):
    graph = toy_graph(SIZES)
    net = _net(4, coord_std=0.02)  # a trained-like regime: updates of a fraction of an ångström per layer
    z, t = _inputs(graph, 6, 4)
    ref = _run(net, z, t, graph, "fast")
    seen = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: seen.append(out[1].dtype)) for layer in net.layers]
    low = _run(net, z, t, graph, "fast", bf16=True)
    for hk in hooks:
        hk.remove()
    assert seen and all(d == torch.float32 for d in seen)  # every layer's coordinates stay fp32
    assert low.x.dtype == torch.float32
    # bf16 matmuls: a few per cent of the output scale (measured 2.6 % for x, 4.3 % for h), not more
    scale_x, scale_h = ref.x.abs().max(), ref.h.abs().max()
    assert (low.x - ref.x).abs().max() < 0.1 * scale_x
    assert (low.h.float() - ref.h).abs().max() < 0.1 * scale_h


def test_layer_coordinate_update_is_fp32_under_autocast(toy_graph):
    graph = toy_graph([7, 5])
    net = _net(0, coord_std=0.02)
    z, t = _inputs(graph, 6, 0)
    layer = net.layers[0]
    h = torch.randn(12, 32)
    i, j = graph.pair_index
    d0 = ((z.x[i] - z.x[j]) ** 2).sum(-1, keepdim=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_new, x_new, _ = layer(h, z.x, None, graph.pair_index, d0)
    assert x_new.dtype == torch.float32 and h_new.dtype == torch.float32
    x_ref = layer.forward_reference(h, z.x, None, graph.pair_index, d0)[1]
    # only the message MLP ran in bf16; the update itself is fp32 arithmetic
    assert (x_new - x_ref).abs().max() < 0.05 * (x_ref - z.x).abs().max() + 1e-6


def test_fast_path_is_equivariant(toy_graph):
    graph = toy_graph(SIZES)
    net = _net(0)
    z, t = _inputs(graph, 6, 0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    out = _run(net, z, t, graph, "fast")
    rot = _run(net, State(z.x @ q.T + 2.0, z.h), t, graph, "fast")
    torch.testing.assert_close(rot.x, out.x @ q.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rot.h, out.h, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(os.environ.get("MOLDIFF_TEST_COMPILE") != "1",
                    reason="torch.compile takes about a minute on 2 cores; set MOLDIFF_TEST_COMPILE=1")
def test_compiled_matches_reference(toy_graph):
    graph = toy_graph(SIZES)
    net = _net(4)
    z, t = _inputs(graph, 6, 4)
    ref = _run(net, z, t, graph, "reference")
    comp = _run(net, z, t, graph, "compiled")
    for a, b in zip(ref, comp):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_unknown_kernel_rejected():
    with pytest.raises(ValueError):
        _net(0).set_kernel("nope")
