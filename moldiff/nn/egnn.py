"""E(n)-equivariant graph network (Satorras et al. 2021) predicting ε for coordinates, atoms and pairs.

The network knows nothing of noise: it maps (x, h, e, t, graph) to three outputs, the coordinate output
E(3)-equivariant and centre-of-mass free, the atom and pair outputs invariant. Messages run over the
complete graph of each molecule (both directions of every pair); the first layer of the edge MLP is
linear in [h_i, h_j, d², d₀², e_ij], so its atom parts are computed once per atom and gathered per edge.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.utils import scatter

from moldiff.state import Graph, State, remove_mean


@dataclass(frozen=True)
class EGNNConfig:
    """Width, depth and the EDM options of the network."""

    hidden: int = 256
    layers: int = 9
    edge_hidden: int = 64  # width of the pair state, used only when pair features are in the chain
    attention: bool = True
    tanh: bool = True
    coords_range: float = 15.0
    norm_factor: float = 1.0  # sum aggregation divided by this constant


KERNELS = ("reference", "fast", "compiled")
_COMPILED: dict = {}


def _compiled_layer():
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_layer_math, dynamic=True)
    return _COMPILED["fn"]


def _layer_math(layer: "EGNNLayer", h: torch.Tensor, x: torch.Tensor, e: torch.Tensor | None,
                pair_index: torch.Tensor, d0: torch.Tensor, recv: torch.Tensor, send: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One layer without Python loops: per-atom first edge layer gathered with index_select, sums with
    index_add_. Under a bf16 autocast the wide matrix multiplies and the message sum run in bf16; distances,
    the distance embedding, the last (H → 1) coordinate layer, tanh and the coordinate update (its sum over
    neighbours included) stay fp32, and so does the atom state's residual stream."""
    cfg = layer.cfg
    i, j = pair_index
    P = i.numel()
    n = h.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        diff = x.index_select(0, i) - x.index_select(0, j)  # (P, 3)
        d2 = (diff * diff).sum(-1, keepdim=True)
        pair_part = F.linear(torch.cat([d2, d0], dim=1), layer.lin_dist.weight)
    if layer.lin_pair is not None:
        pair_part = pair_part + layer.lin_pair(e)
    pre = layer.lin_recv(h).index_select(0, recv)
    # in the autocast dtype (bf16 under autocast): an fp32 pair part would promote the whole (E, H) edge tensor
    pre = pre + layer.lin_send(h).index_select(0, send) + pair_part.to(pre.dtype).repeat(2, 1)
    m = F.silu(layer.edge_out(F.silu(pre)))
    if layer.att is not None:
        m = m * torch.sigmoid(layer.att(m))
    # summed in the messages' dtype: under autocast agg only feeds node_mlp's bf16 matmul, and an fp32 copy of
    # the (E, H) messages (forward and backward) costs more than it buys
    agg = torch.zeros(n, m.shape[1], dtype=m.dtype, device=m.device).index_add_(0, recv, m)
    if cfg.norm_factor != 1.0:
        agg = agg / cfg.norm_factor
    h_new = h + layer.node_mlp(torch.cat([h, agg.to(h.dtype)], dim=1)).to(h.dtype)
    c = F.silu(layer.coord_mlp[0](m))
    with torch.autocast(x.device.type, enabled=False):
        phi = F.linear(c.to(x.dtype), layer.coord_mlp[2].weight.to(x.dtype))
        if cfg.tanh:
            phi = torch.tanh(phi) * cfg.coords_range
        unit = diff / (d2.sqrt() + 1.0)
        rel = torch.cat([unit, -unit])  # x_recv − x_send, normalised
        upd = torch.zeros_like(x).index_add_(0, recv, rel * phi)
        if cfg.norm_factor != 1.0:
            upd = upd / cfg.norm_factor
        x_new = x + upd
    e_new = e + layer.pair_mlp(m[:P] + m[P:]) if layer.pair_mlp is not None else None
    return h_new, x_new, e_new


class EGNNLayer(nn.Module):
    """One equivariant message-passing layer updating h, x and (optionally) the pair state e."""

    def __init__(self, cfg: EGNNConfig, with_pairs: bool, kernel: str = "fast"):
        super().__init__()
        H, He = cfg.hidden, cfg.edge_hidden
        self.cfg = cfg
        self.kernel = kernel
        self.lin_recv = nn.Linear(H, H)
        self.lin_send = nn.Linear(H, H, bias=False)
        self.lin_dist = nn.Linear(2, H, bias=False)
        self.lin_pair = nn.Linear(He, H, bias=False) if with_pairs else None
        self.edge_out = nn.Linear(H, H)
        self.att = nn.Linear(H, 1) if cfg.attention else None
        self.node_mlp = nn.Sequential(nn.Linear(2 * H, H), nn.SiLU(), nn.Linear(H, H))
        last = nn.Linear(H, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(H, H), nn.SiLU(), last)
        self.pair_mlp = nn.Sequential(nn.Linear(H, He), nn.SiLU(), nn.Linear(He, He)) if with_pairs else None
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, x: torch.Tensor, e: torch.Tensor | None, pair_index: torch.Tensor,
                d0: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Same math as :meth:`forward_reference`; ``edges`` = (recv, send) may be passed precomputed."""
        if edges is None:
            i, j = pair_index
            edges = (torch.cat([i, j]), torch.cat([j, i]))
        if self.kernel == "compiled":
            return _compiled_layer()(self, h, x, e, pair_index, d0, edges[0], edges[1])
        return _layer_math(self, h, x, e, pair_index, d0, edges[0], edges[1])

    def forward_reference(self, h: torch.Tensor, x: torch.Tensor, e: torch.Tensor | None, pair_index: torch.Tensor,
                d0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The original, plain formulation (advanced indexing, PyG scatter); kept as the reference the
        fast path is tested against."""
        i, j = pair_index
        P = i.numel()
        recv = torch.cat([i, j])  # edge k: message from send[k] to recv[k]
        send = torch.cat([j, i])
        diff = x[i] - x[j]  # (P, 3)
        d2 = (diff * diff).sum(-1, keepdim=True)
        pair_part = self.lin_dist(torch.cat([d2, d0], dim=1))
        if self.lin_pair is not None:
            pair_part = pair_part + self.lin_pair(e)
        pre = self.lin_recv(h)[recv] + self.lin_send(h)[send] + pair_part.repeat(2, 1)
        m = self.act(self.edge_out(self.act(pre)))
        if self.att is not None:
            m = m * torch.sigmoid(self.att(m))
        n = h.shape[0]
        agg = scatter(m, recv, dim=0, dim_size=n, reduce="sum") / self.cfg.norm_factor
        h_new = h + self.node_mlp(torch.cat([h, agg], dim=1))
        phi = self.coord_mlp(m)
        if self.cfg.tanh:
            phi = torch.tanh(phi) * self.cfg.coords_range
        unit = diff / (d2.sqrt() + 1.0)
        rel = torch.cat([unit, -unit])  # x_recv − x_send, normalised
        x_new = x + scatter(rel * phi, recv, dim=0, dim_size=n, reduce="sum") / self.cfg.norm_factor
        e_new = e + self.pair_mlp(m[:P] + m[P:]) if self.pair_mlp is not None else None
        return h_new, x_new, e_new


class EGNN(nn.Module):
    """ε-predictor: (State z_t, t ∈ [0, 1] per molecule, Graph, optional condition) → State of ε predictions.

    ``kernel`` picks the layer implementation: "fast" (index_select / index_add_, geometry pinned to fp32 under
    autocast; identical to the reference in fp32), "compiled" (the same function through torch.compile) or
    "reference" (the plain formulation the others are tested against). It never changes the fp32 math, the
    parameters or checkpoints. ``cond_dim`` > 0 adds a per-molecule condition, embedded beside t.
    """

    def __init__(self, cfg: EGNNConfig, h_dim: int, e_dim: int = 0, cond_dim: int = 0, kernel: str = "fast"):
        super().__init__()
        self.cfg, self.h_dim, self.e_dim, self.cond_dim = cfg, h_dim, e_dim, cond_dim
        H = cfg.hidden
        self.embed_h = nn.Linear(h_dim + 1, H)
        self.embed_cond = nn.Linear(cond_dim, H, bias=False) if cond_dim else None
        if self.embed_cond is not None:  # starts as the unconditioned network (e.g. one fine-tuned to take a condition)
            nn.init.zeros_(self.embed_cond.weight)
        self.embed_e = nn.Linear(e_dim + 1, cfg.edge_hidden) if e_dim else None
        self.layers = nn.ModuleList(EGNNLayer(cfg, bool(e_dim)) for _ in range(cfg.layers))
        self.out_h = nn.Sequential(nn.Linear(H, H), nn.SiLU(), nn.Linear(H, h_dim))
        self.out_e = nn.Sequential(nn.Linear(cfg.edge_hidden, cfg.edge_hidden), nn.SiLU(),
                                   nn.Linear(cfg.edge_hidden, e_dim)) if e_dim else None
        self.set_kernel(kernel)

    def set_kernel(self, name: str) -> str:
        """Switch the layer implementation ("reference", "fast" or "compiled"); returns the previous one."""
        if name not in KERNELS:
            raise ValueError(f"unknown EGNN kernel {name!r}; choose from {', '.join(KERNELS)}")
        old = getattr(self, "kernel", name)
        self.kernel = name
        for layer in self.layers:
            layer.kernel = name
        return old

    def forward(self, z: State, t: torch.Tensor, graph: Graph, cond: torch.Tensor | None = None) -> State:
        """ε̂ for the state ``z`` at times ``t``.

        Shapes: z.x (N, 3), z.h (N, h_dim), z.e (P, e_dim) or None; t (G,) in [0, 1]; graph.batch (N,),
        graph.pair_index (2, P); cond (G, cond_dim) or None (unconditioned: the condition's embedding is left
        out). Returns a State of the same shapes; its x is equivariant and CoM-free, h and e invariant.
        """
        t_atom = t[graph.batch].unsqueeze(1).to(z.h.dtype)
        h = self.embed_h(torch.cat([z.h, t_atom], dim=1))
        if cond is not None:
            if self.embed_cond is None:
                raise ValueError("this network takes no condition (cond_dim = 0)")
            if cond.shape != (graph.num_graphs, self.cond_dim):
                raise ValueError(f"cond must have shape ({graph.num_graphs}, {self.cond_dim}), got {tuple(cond.shape)}")
            h = h + self.embed_cond(cond.to(h.dtype))[graph.batch]
        i, j = graph.pair_index
        diff0 = z.x[i] - z.x[j]
        d0 = (diff0 * diff0).sum(-1, keepdim=True)
        e = None
        if self.embed_e is not None:
            e = self.embed_e(torch.cat([z.e, t[graph.pair_batch].unsqueeze(1).to(z.e.dtype)], dim=1))
        x = z.x
        if self.kernel == "reference":
            for layer in self.layers:
                h, x, e = layer.forward_reference(h, x, e, graph.pair_index, d0)
        else:
            # the atom and pair residual streams keep the coordinates' precision under autocast (fp32; fp64 nets)
            h = h.to(z.x.dtype)
            e = e.to(z.x.dtype) if e is not None else None
            edges = (torch.cat([i, j]), torch.cat([j, i]))
            for layer in self.layers:
                h, x, e = layer(h, x, e, graph.pair_index, d0, edges)
        eps_x = remove_mean(x - z.x, graph.batch, graph.num_graphs)
        eps_e = self.out_e(e) if self.out_e is not None else None
        return State(eps_x, self.out_h(h), eps_e)
