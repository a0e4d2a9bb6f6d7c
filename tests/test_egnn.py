"""The ε-network's symmetries, in float64: E(3) equivariance of ε_x, invariance of ε_h and ε_e,
atom permutations (with the pair features re-indexed to the canonical i < j order) and batching."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from moldiff.data.qm9 import complete_pairs, pair_position
from moldiff.state import Graph, State
from moldiff.nn import egnn as egnn_module
from moldiff.nn.egnn import EGNN, EGNNConfig

F64 = torch.float64
H_DIM = 6
# Outputs are O(1–10) (the tanh-bounded coordinate update is scaled by 15) and float64 rounding through
# three layers is ~1e-14 relative; 1e-9 leaves a wide margin while any real symmetry break is ≥ 1e-3.
TOL = dict(rtol=1e-9, atol=1e-9)


# Every layer implementation the module offers (torch.compile'd variants excluded: minutes to compile on
# CPU and the same math as "fast"); a module without the switch has the one implementation.
KERNELS = [k for k in getattr(egnn_module, "KERNELS", ("default",)) if k != "compiled"]


_IN_USE = ["fast"]


@pytest.fixture(autouse=True, params=KERNELS)
def kernel(request):
    """Run each test under each layer implementation (a constructor option of the network)."""
    _IN_USE[0] = request.param
    yield request.param


def make_net(e_dim: int, seed: int = 0, cond_dim: int = 0) -> EGNN:
    torch.manual_seed(seed)
    net = EGNN(EGNNConfig(hidden=16, layers=3, edge_hidden=8, attention=True, tanh=True), H_DIM, e_dim,
               cond_dim=cond_dim, kernel=_IN_USE[0]).double()
    # the last coordinate layer starts at gain 1e-3 (near-identity x updates): give it a normal scale so
    # that the coordinate path really moves the atoms and the equivariance checks are not vacuous
    for layer in net.layers:
        nn.init.xavier_uniform_(layer.coord_mlp[-1].weight, gain=1.0)
    return net.eval()


def inputs(graph: Graph, e_dim: int, seed: int = 1) -> tuple[State, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, p = graph.batch.numel(), graph.pair_index.shape[1]
    z = State(torch.randn(n, 3, generator=g, dtype=F64) * 1.5 + 2.0,  # deliberately not CoM-free
              torch.randn(n, H_DIM, generator=g, dtype=F64),
              torch.randn(p, e_dim, generator=g, dtype=F64) if e_dim else None)
    t = torch.rand(graph.num_graphs, generator=g, dtype=F64)
    return z, t


def orthogonal(det: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
    if torch.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    assert torch.allclose(q @ q.T, torch.eye(3, dtype=F64), atol=1e-14)
    return q


def com(x: torch.Tensor, graph: Graph) -> torch.Tensor:
    return torch.zeros(graph.num_graphs, 3, dtype=x.dtype).index_add_(0, graph.batch, x) / graph.n_atoms[:, None]


def assert_state_close(a: State, b: State):
    for u, v, k in zip(a, b, "xhe"):
        if u is None or v is None:
            assert u is None and v is None, k
        else:
            assert torch.allclose(u, v, **TOL), (k, float((u - v).abs().max()))


def nontrivial(out: State):
    """Guard against a vacuous pass: every output moves by far more than the tolerance."""
    assert out.x.abs().max() > 1e-2 and out.h.abs().max() > 1e-2
    assert out.e is None or out.e.abs().max() > 1e-2


@pytest.mark.parametrize("e_dim", [0, 4])
def test_output_shapes_and_zero_com(toy_graph, e_dim):
    graph = toy_graph([5, 4, 1])
    net = make_net(e_dim)
    z, t = inputs(graph, e_dim)
    out = net(z, t, graph)
    assert out.x.shape == z.x.shape and out.h.shape == z.h.shape and out.x.dtype == F64
    assert (out.e is None) if e_dim == 0 else (out.e.shape == z.e.shape)
    assert com(out.x, graph).abs().max() < 1e-12
    assert torch.equal(out.x[-1], torch.zeros(3, dtype=F64))  # a lone atom has nothing to move
    nontrivial(out)


@pytest.mark.parametrize("e_dim", [0, 4])
@pytest.mark.parametrize("det", [1.0, -1.0], ids=["rotation", "reflection"])
def test_rotation_and_reflection(toy_graph, e_dim, det):
    graph = toy_graph([5, 4])
    net = make_net(e_dim)
    z, t = inputs(graph, e_dim)
    q = orthogonal(det, seed=3 if det > 0 else 4)
    with torch.no_grad():
        out = net(z, t, graph)
        out_q = net(State(z.x @ q.T, z.h, z.e), t, graph)
    nontrivial(out)
    assert_state_close(out_q, State(out.x @ q.T, out.h, out.e))


@pytest.mark.parametrize("e_dim", [0, 4])
def test_translation(toy_graph, e_dim):
    graph = toy_graph([5, 4])
    net = make_net(e_dim)
    z, t = inputs(graph, e_dim)
    shift = torch.tensor([[3.0, -7.0, 0.5], [-20.0, 4.0, 11.0]], dtype=F64)  # a different shift per molecule
    with torch.no_grad():
        out = net(z, t, graph)
        out_s = net(State(z.x + shift[graph.batch], z.h, z.e), t, graph)
    nontrivial(out)
    assert_state_close(out_s, out)
    assert com(out_s.x, graph).abs().max() < 1e-12


def _permute(sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random permutation of the atoms within each molecule (new atom a is old atom perm[a]) and the
    matching map of the canonical pairs: new pair k (i < j) is old pair pair_perm[k]."""
    g = torch.Generator().manual_seed(seed)
    perm, pair_perm, atom_off, pair_off = [], [], 0, 0
    for n in sizes:
        p = torch.randperm(n, generator=g)
        i, j = complete_pairs(n)
        oi, oj = p[i], p[j]
        old = pair_position(torch.minimum(oi, oj), torch.maximum(oi, oj), n)
        perm.append(p + atom_off)
        pair_perm.append(old + pair_off)
        atom_off += n
        pair_off += n * (n - 1) // 2
    return torch.cat(perm), torch.cat(pair_perm)


@pytest.mark.parametrize("e_dim", [0, 4])
def test_atom_permutation(toy_graph, e_dim):
    sizes = [5, 4, 6]
    graph = toy_graph(sizes)
    net = make_net(e_dim)
    z, t = inputs(graph, e_dim)
    perm, pair_perm = _permute(sizes, seed=7)
    assert not torch.equal(perm, torch.arange(perm.numel()))
    assert sorted(pair_perm.tolist()) == list(range(graph.pair_index.shape[1]))
    z_p = State(z.x[perm], z.h[perm], None if z.e is None else z.e[pair_perm])
    with torch.no_grad():
        out = net(z, t, graph)
        out_p = net(z_p, t, graph)  # same sizes → same canonical pair_index, now over the new atom order
    nontrivial(out)
    assert_state_close(out_p, State(out.x[perm], out.h[perm], None if out.e is None else out.e[pair_perm]))


@pytest.mark.parametrize("e_dim", [0, 4])
def test_batch_equals_molecules_alone(toy_graph, e_dim):
    graph = toy_graph([5, 3])
    net = make_net(e_dim)
    z, t = inputs(graph, e_dim)
    with torch.no_grad():
        out = net(z, t, graph)
        first = net(State(z.x[:5], z.h[:5], None if z.e is None else z.e[:10]), t[:1], toy_graph([5]))
        second = net(State(z.x[5:], z.h[5:], None if z.e is None else z.e[10:]), t[1:], toy_graph([3]))
    nontrivial(out)
    joined = State(torch.cat([first.x, second.x]), torch.cat([first.h, second.h]),
                   None if e_dim == 0 else torch.cat([first.e, second.e]))
    assert_state_close(out, joined)


def test_time_conditioning_matters(toy_graph):
    """Sanity: the output depends on t (else the symmetry tests could pass on a t-blind net)."""
    graph = toy_graph([4])
    net = make_net(4)
    z, t = inputs(graph, 4)
    with torch.no_grad():
        a, b = net(z, t, graph), net(z, t + 0.5, graph)
    assert (a.h - b.h).abs().max() > 1e-4 and (a.x - b.x).abs().max() > 1e-6


@pytest.mark.parametrize("e_dim", [0, 4])
def test_batch_of_single_atoms_has_no_pairs(e_dim):
    """One-atom molecules (CH4, NH3, H2O with implicit H) have no pairs: the net still runs, and moves nothing."""
    net = EGNN(EGNNConfig(hidden=16, layers=2, edge_hidden=8), 5, e_dim)
    graph = Graph(torch.tensor([0, 1, 2]), torch.zeros(2, 0, dtype=torch.long), 3)
    z = State(torch.zeros(3, 3), torch.randn(3, 5), torch.zeros(0, e_dim) if e_dim else None)
    out = net(z, torch.full((3,), 0.5), graph)
    assert out.h.shape == (3, 5) and torch.isfinite(out.h).all()
    assert torch.equal(out.x, torch.zeros(3, 3))
    assert out.e is None if not e_dim else out.e.shape == (0, e_dim)


# ----- the conditioning channel ----------------------------------------------------------------------
@pytest.mark.parametrize("e_dim", [0, 4])
def test_no_condition_equals_the_unconditioned_network(toy_graph, e_dim):
    """cond=None leaves the condition's embedding out: the same weights without the channel give the same ε̂;
    a real condition changes ε̂."""
    graph = toy_graph([4, 3])
    cond_net, plain = make_net(e_dim, cond_dim=2), make_net(e_dim)
    assert torch.count_nonzero(cond_net.embed_cond.weight) == 0  # built as the unconditioned network
    torch.nn.init.normal_(cond_net.embed_cond.weight, generator=torch.Generator().manual_seed(5))  # as trained
    weights = {k: v for k, v in cond_net.state_dict().items() if not k.startswith("embed_cond")}
    plain.load_state_dict(weights)
    z, t = inputs(graph, e_dim)
    for a, b in zip(cond_net(z, t, graph), plain(z, t, graph)):
        if a is not None:
            assert torch.equal(a, b)
    cond = torch.randn(2, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    moved = cond_net(z, t, graph, cond)
    assert not torch.allclose(moved.h, plain(z, t, graph).h)
    with pytest.raises(ValueError, match="shape"):
        cond_net(z, t, graph, cond[:1])
    with pytest.raises(ValueError, match="no condition"):
        plain(z, t, graph, cond)


def test_conditioned_network_stays_equivariant(toy_graph):
    graph = toy_graph([5, 2])
    net = make_net(4, cond_dim=3)
    torch.nn.init.normal_(net.embed_cond.weight, generator=torch.Generator().manual_seed(6))
    z, t = inputs(graph, 4)
    cond = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    q = orthogonal(-1.0, 7)
    out = net(z, t, graph, cond)
    rot = net(State(z.x @ q.T, z.h, z.e), t, graph, cond)
    assert torch.allclose(rot.x, out.x @ q.T, **TOL)
    assert torch.allclose(rot.h, out.h, **TOL) and torch.allclose(rot.e, out.e, **TOL)


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        EGNN(EGNNConfig(hidden=8, layers=1), H_DIM, kernel="nope")
