"""Conditional generation: the condition reaches the network, dropped conditions are the unconditioned path,
a tiny model trained on real QM9 molecules follows a toy property, training and sampling end to end, and
bad requests are one-line errors."""
import dataclasses
import math

import pytest
import torch
from torch_geometric.data import Batch

from moldiff.conditioning import (ConditionConfig, Guided, check_request, drop_for_training, encode, parse_condition,
                                  property_stats, request_values, size_histogram)
from moldiff.config import RunConfig, load_config
from moldiff.data.qm9 import load_processed, with_properties, without_hydrogens
from moldiff.data.store import DatasetStats, MoleculeDataset, vocabulary_of
from moldiff.diffusion.chain import DiffusionChain
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.model import Generator, build_network
from moldiff.representation import decode, encode as encode_state
from moldiff.sampling import conditioned, empty_graph, generate, iter_chain
from moldiff.state import State


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """1,000 real QM9 molecules, hydrogens removed, with QM9's six properties and a toy one: the O count."""
    blob = without_hydrogens(with_properties(load_processed(tmp_path_factory.mktemp("qm9"), limit=1000,
                                                            progress=False)))
    o = blob["elements"].index("O")
    per_mol = torch.repeat_interleave(torch.arange(len(blob["atom_ptr"]) - 1), blob["atom_ptr"].diff())
    blob["properties"]["n_oxygen"] = torch.bincount(per_mol[blob["atom_type"].long() == o],
                                                    minlength=len(blob["atom_ptr"]) - 1).double()
    return blob


def tiny_conditional(blob, properties=("n_oxygen",)) -> RunConfig:
    cfg = load_config("tiny")
    return dataclasses.replace(cfg, condition=ConditionConfig(properties),
                               features=cfg.features.with_vocabulary(vocabulary_of(blob, split=None)))


def batch_of(blob, cfg, n=8):
    data = MoleculeDataset("train", blob, properties=cfg.condition.properties)
    batch = Batch.from_data_list([data[k] for k in range(n)])
    return batch, *encode_state(batch, cfg.features)


def test_the_condition_reaches_the_network(heavy):
    cfg = tiny_conditional(heavy)
    net = build_network(cfg)
    assert torch.count_nonzero(net.embed_cond.weight) == 0  # built as the unconditioned network
    torch.nn.init.normal_(net.embed_cond.weight)
    batch, x0, graph = batch_of(heavy, cfg)
    t = torch.full((graph.num_graphs,), 0.5)
    stats = property_stats({"n_oxygen": heavy["properties"]["n_oxygen"]}, heavy["atom_ptr"].diff())
    low = net(x0, t, graph, encode(torch.zeros(graph.num_graphs, 1, dtype=torch.float64), stats, ["n_oxygen"]))
    high = net(x0, t, graph, encode(torch.full((graph.num_graphs, 1), 3.0, dtype=torch.float64), stats, ["n_oxygen"]))
    assert (low.h - high.h).abs().max() > 1e-3 and (low.x - high.x).abs().max() > 1e-4


def test_a_dropped_condition_is_the_unconditioned_path(heavy):
    cfg = tiny_conditional(heavy, properties=("gap", "mu"))
    net = build_network(cfg)
    torch.nn.init.normal_(net.embed_cond.weight)
    batch, x0, graph = batch_of(heavy, cfg)
    t = torch.full((graph.num_graphs,), 0.3)
    stats = property_stats({k: heavy["properties"][k] for k in ("gap", "mu")}, heavy["atom_ptr"].diff())
    dropped = encode(torch.full((graph.num_graphs, 2), math.nan, dtype=torch.float64), stats, ["gap", "mu"])
    assert torch.equal(dropped, torch.zeros_like(dropped))
    a, b = net(x0, t, graph, dropped), net(x0, t, graph, None)
    assert torch.equal(a.x, b.x) and torch.equal(a.h, b.h)
    # guidance of weight w with nothing given is the network itself; w = 0 is the conditional path alone
    given = encode(torch.tensor([[0.25, 2.0]] * graph.num_graphs, dtype=torch.float64), stats, ["gap", "mu"])
    assert torch.equal(Guided(net, 0.0)(x0, t, graph, given).h, net(x0, t, graph, given).h)
    guided = Guided(net, 2.0)(x0, t, graph, given)
    c, u = net(x0, t, graph, given), net(x0, t, graph, None)
    assert torch.allclose(guided.h, u.h + 3.0 * (c.h - u.h), atol=1e-6)


def test_training_drops_all_or_a_random_subset():
    g = torch.Generator().manual_seed(0)
    values = torch.arange(6.0).repeat(20_000, 1)
    kept = torch.isfinite(drop_for_training(values, 0.1, g))
    none = (kept.sum(1) == 0).float().mean()
    assert abs(none - 0.1) < 0.01
    counts = torch.bincount(kept.sum(1), minlength=7)[1:].double() / len(values)
    assert torch.allclose(counts, torch.full((6,), 0.9 / 6, dtype=torch.float64), atol=0.01)  # subset sizes 1…6 equally likely
    assert torch.allclose(kept.double().mean(0), kept.double().mean(), atol=0.015)  # no property favoured


def test_sizes_follow_the_requested_property(heavy):
    sizes = heavy["atom_ptr"].diff()
    alpha = heavy["properties"]["alpha"]
    stats = property_stats({"alpha": alpha}, sizes)
    hist = torch.bincount(sizes).tolist()
    p_low = torch.tensor(size_histogram(hist, stats, {"alpha": float(alpha.quantile(0.05))}))
    p_high = torch.tensor(size_histogram(hist, stats, {"alpha": float(alpha.quantile(0.95))}))
    n = torch.arange(len(hist), dtype=torch.float64)
    assert float((p_high * n).sum()) > float((p_low * n).sum()) + 1.0  # polarisability grows with size
    assert torch.allclose(torch.tensor(size_histogram(hist, stats, {})), torch.tensor(hist) / sum(hist))


def test_a_tiny_conditional_model_follows_its_request(heavy):
    """Trained for 150 steps on 1,000 real QM9 molecules with their O count as the condition, the
    model's samples (9 heavy atoms each) hold far fewer O atoms when asked for 0 than when asked for 3."""
    torch.manual_seed(0)
    cfg = tiny_conditional(heavy)
    names = cfg.condition.properties
    stats = DatasetStats.from_blob(heavy, properties=names)
    net = build_network(cfg)
    chain = DiffusionChain(NoiseSchedule(cfg.schedule))
    data = MoleculeDataset("train", heavy, properties=names)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(150):
        idx = torch.randint(len(data), (32,), generator=g)
        batch = Batch.from_data_list([data[int(i)] for i in idx])
        x0, graph = encode_state(batch, cfg.features)
        cond = encode(drop_for_training(batch.y.double(), 0.1, g), stats.properties, names)
        loss, _ = chain.loss(lambda z, t, gr: net(z, t, gr, cond), x0, graph, generator=g)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    net.eval()
    gen = Generator(cfg, net, chain, stats, {})

    def oxygens(value: float) -> float:
        guided, extra = conditioned(gen, {"n_oxygen": value}, 100, guidance=1.0)
        template, graph = empty_graph([9] * 100, cfg.features.h_dim, cfg.features.e_dim, torch.device("cpu"))
        with torch.no_grad():
            *_, (_, out) = iter_chain(guided.network, chain, template, graph, generator=torch.Generator().manual_seed(2),
                                      cond=extra["cond"])
        elements = decode(out, cfg.features).elements(cfg.features)
        return elements.count("O") / 100

    low, high = oxygens(0.0), oxygens(3.0)
    data_mean = float(heavy["properties"]["n_oxygen"].mean())
    assert high - low > 1.5, (low, high, data_mean)  # measured: 0.35 and 3.48 O atoms per molecule (mean 0.99)
    assert low < data_mean < high


def test_conditional_training_and_sampling_end_to_end(tmp_path):
    """A run of the conditional recipe (QM9 properties, the generator's half) at toy size, initialised from an
    unconditioned run's checkpoint: it starts as that model, keeps the statistics, and samples on request."""
    from moldiff.train import Trainer

    root = tmp_path / "data"
    base = Trainer(load_config("tiny"), tmp_path / "base", root, limit=400, progress=False)
    base.fit(max_steps=2)
    base.save()
    cfg = load_config("tiny")
    cfg = dataclasses.replace(cfg, condition=ConditionConfig(("gap", "mu")),
                              train=dataclasses.replace(cfg.train, split="train_gen",
                                                        init_from=str(tmp_path / "base" / "checkpoint.pt")))
    run = Trainer(cfg, tmp_path / "cond", root, limit=400, progress=False)
    assert len(run.train_set) == len(base.train_set) - len(base.train_set) // 2  # the generator's half
    batch = Batch.from_data_list([run.val_set[k] for k in range(4)])
    x0, graph = encode_state(batch, run.cfg.features)
    t = torch.full((4,), 0.4)
    before = base.ema.model(x0, t, graph)
    after = run.net(x0, t, graph, run.condition(batch.y.double()))
    assert torch.allclose(before.h, after.h, atol=1e-6)  # the condition embedding starts at zero
    run.fit(max_steps=3)
    run.save()
    gen = Generator.from_checkpoint(tmp_path / "cond" / "checkpoint.pt")
    assert set(gen.stats.properties) == {"gap", "mu"}
    guided, extra = conditioned(gen, {"gap": 0.3}, 3)
    mols = generate(guided, 3, steps=5, **extra)
    assert len(mols) == 3 and all(m.GetNumAtoms() > 0 for m in mols)


def test_bad_requests_are_one_line_errors(heavy):
    stats = property_stats({"gap": heavy["properties"]["gap"]}, heavy["atom_ptr"].diff())
    for text, why in [("gap", "NAME=VALUE"), ("=0.2", "NAME=VALUE"), ("gap=", "NAME=VALUE"),
                      ("gap=high", "not a number"), ("gap=nan", "finite"), ("gap=inf", "finite")]:
        with pytest.raises(ValueError, match=why):
            parse_condition(text)
    assert parse_condition(" gap = 0.25 ") == ("gap", 0.25)
    with pytest.raises(ValueError, match="unknown property 'polarisability'.*gap"):
        check_request({"polarisability": 70.0}, ["gap"], stats)
    with pytest.raises(ValueError, match="takes no condition"):
        check_request({"gap": 0.2}, [], stats)
    assert check_request({"gap": 0.25}, ["gap"], stats) == []
    (warning,) = check_request({"gap": 5.0}, ["gap"], stats)
    assert "outside the training range" in warning
    assert request_values({"gap": 0.2}, ["mu", "gap"]).isnan().tolist() == [[True, False]]
