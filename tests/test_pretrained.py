"""The model that ships inside the package loads by name and samples molecules with 3D conformers."""
import pytest
import torch

import moldiff
from moldiff.pretrained import pretrained_path


def test_shipped_model_loads_without_dataset_or_flags():
    blob = torch.load(pretrained_path("qm9"), weights_only=True)
    assert "optimizer" not in blob and {"config", "stats", "model"} <= set(blob)
    gen = moldiff.load_pretrained("qm9", device="cpu")
    assert gen.config.features.include_bonds
    assert sum(gen.stats.n_atoms_hist) == 100_000  # p(N) of the QM9 training split travels with the model


def test_shipped_model_samples_rdkit_molecules():
    mols = moldiff.sample(3, "qm9", steps=5, seed=0)
    assert len(mols) == 3
    for mol in mols:
        assert mol.GetNumAtoms() > 0 and mol.GetConformer().Is3D()
        assert mol.HasProp("moldiff_valid")


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="unknown pretrained model"):
        moldiff.load_pretrained("zinc")
