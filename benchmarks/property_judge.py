"""Train the judge of the conditional benchmark: one multi-task EGNN regressor of QM9's six properties.

EDM's protocol: the property predictor learns from the half of QM9's training split that the conditional
generator never sees (``train_judge``), is scored on the test split (the "QM9" lower-bound row), and judges the
generated molecules. Our generators place hydrogens with RDKit, so the judge sees what they generate and
nothing more: heavy atoms (element, formal charge, 3D coordinates) and the bonds between them, never a
hydrogen position. It is therefore a weaker judge than EDM's (which sees DFT hydrogens): its test MAE is the
row to compare against, not EDM's.

    python benchmarks/property_judge.py --minutes 30 --threads 1     # writes data/campaign/qm9-judge/
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from moldiff.checkpoint import load_checkpoint, save_checkpoint
from moldiff.config import load_config
from moldiff.data.qm9 import load_processed, with_properties
from moldiff.data.raw import PROPERTIES
from moldiff.data.store import MoleculeDataset, vocabulary_of, without_hydrogens
from moldiff.nn.egnn import EGNNConfig
from moldiff.nn.regressor import PropertyRegressor
from moldiff.representation import FeatureConfig, encode

from common import REPO, RESULTS, command_line, parser, set_threads, write_json

RUN = REPO / "data" / "campaign" / "qm9-judge"
NAMES = tuple(PROPERTIES)
# EDM reports MAE of the HOMO, LUMO and gap in meV; QM9 stores them in Hartree
REPORT_SCALE = {"alpha": 1.0, "gap": 27211.386, "homo": 27211.386, "lumo": 27211.386, "mu": 1.0, "Cv": 1.0}
REPORT_UNIT = {"alpha": "Bohr^3", "gap": "meV", "homo": "meV", "lumo": "meV", "mu": "D", "Cv": "cal/(mol K)"}
JUDGE_MODEL = EGNNConfig(hidden=128, layers=5, edge_hidden=32, attention=True, tanh=True)


def qm9_heavy() -> dict:
    """QM9 with its six properties and the halves of the training split, hydrogens removed."""
    return without_hydrogens(with_properties(load_processed(progress=False)))


def features_for(data: dict) -> FeatureConfig:
    """The judge's inputs: the shipped QM9 model's features (elements, charges, bonds) over the data's vocabulary."""
    return load_config("qm9-bonds-noh").features.with_vocabulary(vocabulary_of(data, split=None))


class Judge:
    """A trained regressor with its features and the judge half's property statistics."""

    def __init__(self, net: PropertyRegressor, features: FeatureConfig, mean: torch.Tensor, std: torch.Tensor):
        self.net, self.features, self.mean, self.std = net.eval(), features, mean, std

    @torch.no_grad()
    def predict(self, molecules: list, batch_size: int = 512) -> torch.Tensor:
        """(M, 6) predicted properties (QM9's units) of PyG molecules (``make_data``)."""
        out = []
        for k in range(0, len(molecules), batch_size):
            z, graph = encode(Batch.from_data_list(molecules[k:k + batch_size]), self.features)
            out.append(self.net(z, graph).double() * self.std + self.mean)
        return torch.cat(out) if out else torch.zeros(0, len(NAMES), dtype=torch.float64)

    def save(self, path: Path, info: dict) -> None:
        save_checkpoint({"judge": {"model": vars(JUDGE_MODEL), "features": vars(self.features),
                                   "properties": list(NAMES), "mean": self.mean, "std": self.std, **info},
                         "weights": self.net.state_dict()}, path)

    @staticmethod
    def load(path: Path = RUN / "judge.pt") -> "Judge":
        blob = load_checkpoint(path)
        j = blob["judge"]
        features = FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in j["features"].items()})
        net = PropertyRegressor(EGNNConfig(**j["model"]), features.h_dim, features.e_dim, len(j["properties"]))
        net.load_state_dict(blob["weights"])
        return Judge(net, features, j["mean"], j["std"])


def mae_table(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """MAE per property in the reported units (meV for the orbital energies)."""
    return {n: float((pred[:, k] - true[:, k]).abs().mean()) * REPORT_SCALE[n] for k, n in enumerate(NAMES)}


def split_values(data: dict, split: str) -> torch.Tensor:
    mols = data["splits"][split]
    return torch.stack([data["properties"][n][mols] for n in NAMES], dim=1)


def main(argv=None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "property_judge.json")
    ap.add_argument("--minutes", type=float, default=30.0, help="training time (wall clock, minutes)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, help="train on the first N molecules of the judge half (smoke runs)")
    ap.add_argument("--out", type=Path, default=RUN / "judge.pt")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    data = qm9_heavy()
    features = features_for(data)
    train = MoleculeDataset("train_judge", data, properties=NAMES)
    if args.limit:
        train.positions = train.positions[:args.limit]
    y_train = split_values(data, "train_judge")
    mean, std = y_train.mean(0), y_train.std(0)
    net = PropertyRegressor(JUDGE_MODEL, features.h_dim, features.e_dim, len(NAMES))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    budget = args.minutes * 60
    start, cpu0, step, epoch, log = time.monotonic(), time.process_time(), 0, 0, []
    while time.monotonic() - start < budget:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        losses = []
        for k in range(0, len(order) - args.batch_size + 1, args.batch_size):
            frac = min(1.0, (time.monotonic() - start) / budget)
            for group in opt.param_groups:  # cosine decay over the time budget
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
            batch = Batch.from_data_list([train[int(i)] for i in order[k:k + args.batch_size]])
            z, graph = encode(batch, features)
            target = (batch.y.double() - mean) / std
            loss = (net(z, graph).double() - target).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if time.monotonic() - start >= budget:
                break
        epoch += 1
        log.append({"epoch": epoch, "step": step, "minutes": round((time.monotonic() - start) / 60, 2),
                    "train_l1_normalised": sum(losses) / max(1, len(losses))})
        print(log[-1], flush=True)
    judge = Judge(net, features, mean, std)
    test = MoleculeDataset("test", data, properties=NAMES)
    pred = judge.predict([test[k] for k in range(len(test))])
    table = mae_table(pred, split_values(data, "test"))
    info = {"epochs": epoch, "steps": step, "minutes": round((time.monotonic() - start) / 60, 2),
            "cpu_hours": round((time.process_time() - cpu0) / 3600, 3), "train_molecules": len(train),
            "test_molecules": len(test), "test_mae": table}
    judge.save(args.out, info)
    write_json(args.json, {"command": command_line(), "units": REPORT_UNIT, **info, "log": log,
                           "inputs": "heavy atoms (element, formal charge, coordinates) and their bonds; no hydrogens",
                           "model": vars(JUDGE_MODEL)})
    print({n: round(v, 3) for n, v in table.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
