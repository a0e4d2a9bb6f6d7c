"""The NLL bound of held-out molecules: finite, assembled from its terms, better for a trained model."""
import math

import pytest
import torch

from moldiff.config import load_config
from moldiff.data.qm9 import QM9, load_processed
from moldiff.likelihood import estimate_nll, nll_terms
from moldiff.train import Trainer
from torch_geometric.data import Batch


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("nll")
    trainer = Trainer(load_config("tiny"), root / "run", root / "data", limit=200, progress=False)
    untrained = {k: v.clone() for k, v in trainer.ema.model.state_dict().items()}
    trainer.fit(max_steps=150)
    return trainer, untrained


def test_terms_add_up_and_are_finite(trained):
    trainer, _ = trained
    batch = Batch.from_data_list([trainer.val_set[k] for k in range(8)])
    terms = nll_terms(trainer.generator, batch, torch.Generator().manual_seed(0))
    total = -terms["log_pN"] + terms["prior"] + terms["diffusion"] + terms["reconstruction"]
    assert torch.allclose(terms["nll"], total)
    assert all(bool(torch.isfinite(v).all()) for v in terms.values())
    assert bool((terms["prior"] >= 0).all()) and bool((terms["diffusion"] >= 0).all())


def test_training_lowers_the_bound(trained):
    """Paired comparison on the same held-out molecules and the same noise, every t enumerated."""
    trainer, untrained = trained
    batch = Batch.from_data_list([trainer.val_set[k] for k in range(len(trainer.val_set))])
    T = trainer.chain.T
    after = nll_terms(trainer.generator, batch, torch.Generator().manual_seed(1), t_samples=T)["nll"]
    trained_weights = {k: v.clone() for k, v in trainer.ema.model.state_dict().items()}
    trainer.ema.model.load_state_dict(untrained)
    before = nll_terms(trainer.generator, batch, torch.Generator().manual_seed(1), t_samples=T)["nll"]
    trainer.ema.model.load_state_dict(trained_weights)
    gain = before - after
    assert gain.mean() > 3 * gain.std() / len(gain) ** 0.5  # 3 paired standard errors


def test_estimate_reports_means_and_error(trained):
    trainer, _ = trained
    out = estimate_nll(trainer.generator, [trainer.val_set[k] for k in range(10)], batch_size=4, t_samples=5)
    assert out["molecules"] == 10 and out["nll_stderr"] > 0
    assert abs(out["nll"] - (-out["log_pN"] + out["prior"] + out["diffusion"] + out["reconstruction"])) < 1e-6


def test_nll_of_the_shipped_implicit_h_model_is_finite(tmp_path):
    """The shipped model carries heavy atoms only: its bound is that of the heavy-atom graphs of real QM9
    test molecules, finite, its terms adding up."""
    from moldiff.api import load_pretrained
    from moldiff.data.store import without_hydrogens

    gen = load_pretrained("qm9", "cpu")
    assert gen.config.features.implicit_h
    test = QM9("test", blob=without_hydrogens(load_processed(tmp_path, limit=200, progress=False)))
    out = estimate_nll(gen, [test[k] for k in range(len(test))], t_samples=4)
    assert out["molecules"] == len(test) >= 10
    assert math.isfinite(out["nll"]) and math.isfinite(out["nll_stderr"])
    parts = out["log_pN"] * -1 + out["prior"] + out["diffusion"] + out["reconstruction"]
    assert abs(parts - out["nll"]) < 1e-6 * max(1.0, abs(out["nll"]))
