"""Explicit, small, frozen configs; named presets; TOML config files."""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from moldiff.conditioning import ConditionConfig
from moldiff.diffusion.schedule import ScheduleConfig
from moldiff.nn.egnn import EGNNConfig
from moldiff.representation import FeatureConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping of one training run."""

    batch_size: int = 64
    lr: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # effective decay min(decay, (1 + n)/(10 + n)): no memory of the random init
    loss_weights: tuple[tuple[str, float], ...] = (("x", 1.0), ("h", 1.0), ("e", 1.0))
    rotate: bool = True  # random-rotation augmentation of every training molecule
    t_power: float = 1.0  # training timesteps t = ⌊(T+1)·u^p⌋: 1 = uniform; > 1 = more weight at low noise
    epochs: float = 1000.0
    max_steps: int | None = None
    seed: int = 0
    checkpoint_minutes: float = 10.0
    checkpoint_steps: int | None = None
    val_molecules: int = 1000
    eval_every_epochs: float = 1.0  # validation loss (and samples, see eval_samples) this often
    eval_samples: int = 0  # molecules sampled for stability/validity at each evaluation; 0 = none
    eval_steps: int = 100  # sampler steps for those molecules
    bf16: bool = False  # bf16 autocast of the MLPs (coordinates stay fp32)
    num_threads: int | None = None
    split: str = "train"  # the split trained on (QM9 also has train_gen / train_judge, the halves of train)
    init_from: str | None = None  # a built-in model or checkpoint whose (EMA) weights start the run


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a model and its training; saved inside every checkpoint."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: EGNNConfig = field(default_factory=EGNNConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    preset: str = "custom"
    network: str = "egnn"  # the ε-network's kind, built through moldiff.nn.registry
    cond_dim: int = 0  # width of the per-molecule condition the network embeds beside t (0: unconditioned)

    def __post_init__(self) -> None:
        if self.condition.properties and self.cond_dim not in (0, self.condition.dim):
            raise ValueError(f"cond_dim = {self.cond_dim} but {len(self.condition.properties)} condition properties "
                             f"need {self.condition.dim}")

    @property
    def condition_dim(self) -> int:
        """Width of the condition the network takes: 2 per property, or ``cond_dim`` for a custom condition."""
        return self.condition.dim or self.cond_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RunConfig":
        """A RunConfig from nested plain data (a TOML file, a checkpoint): unknown tables or options and values
        of the wrong type raise ValueError naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a table of options, not {type(d).__name__}")
        unknown = set(d) - set(_TABLES) - {"preset", "network", "cond_dim"}
        if unknown:
            raise ValueError(f"unknown config table(s) or option(s): {', '.join(sorted(map(str, unknown)))}; "
                             f"the tables are {', '.join(_TABLES)}")
        parts = {name: _build(cls, d.get(name, {}), name) for name, cls in _TABLES.items()}
        top = _build(_Top, {k: d[k] for k in ("preset", "network", "cond_dim") if k in d}, "config")
        return RunConfig(**parts, preset=top.preset, network=top.network, cond_dim=top.cond_dim)


@dataclass(frozen=True)
class _Top:
    """The top-level options of a config file, typed like the tables (for checking)."""

    preset: str = "custom"
    network: str = "egnn"
    cond_dim: int = 0


_TABLES = {"features": FeatureConfig, "model": EGNNConfig, "schedule": ScheduleConfig, "train": TrainConfig,
           "condition": ConditionConfig}


def _fits(value, hint) -> bool:
    """Whether a plain value (from TOML or a checkpoint) fits a field's type hint."""
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint too complex to check here: the dataclass checks it


def _build(cls, values, table: str):
    """``cls(**values)`` after checking the option names and value types."""
    if not isinstance(values, dict):
        raise ValueError(f"[{table}] must be a table of options, not {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown {table} option(s): {', '.join(sorted(map(str, unknown)))}")
    for k, v in values.items():
        if not _fits(v, hints[k]):
            hint = getattr(hints[k], "__name__", str(hints[k]).replace("typing.", ""))
            raise ValueError(f"{table}.{k} = {v!r:.40}: expected {hint}")
    values = {k: tuple(tuple(p) if isinstance(p, list) else p for p in v) if isinstance(v, list) else v
              for k, v in values.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"[{table}]: {err}") from None


PRESETS: dict[str, dict] = {
    # A few thousand parameters and a short chain: tests and smoke runs.
    "tiny": {"model": {"hidden": 32, "layers": 2, "edge_hidden": 16},
             "schedule": {"timesteps": 50},
             "train": {"batch_size": 16, "lr": 1e-3, "val_molecules": 64, "eval_steps": 10}},
    # EDM's QM9 model: node features (one-hot + Z) and coordinates; EGNN 9 × 256 with attention.
    "edm": {"model": {"hidden": 256, "layers": 9, "attention": True, "tanh": True},
            "train": {"batch_size": 64, "lr": 1e-4, "ema_decay": 0.9999}},
    # Bonds and formal charges in the chain, sized for quality per CPU-hour.
    "qm9-bonds": {"features": {"include_z": False, "include_charge": True, "include_bonds": True},
                  "model": {"hidden": 128, "layers": 6, "edge_hidden": 64},
                  "train": {"batch_size": 64, "lr": 5e-4, "warmup_steps": 500, "ema_decay": 0.999,
                            "eval_every_epochs": 0.5, "eval_samples": 500, "eval_steps": 100}},
    # The node-only control of qm9-bonds: EDM's features (one-hot + Z) and coordinates, the same network size
    # and training, so that the two quality-per-CPU-hour curves differ only in what the chain carries.
    "qm9-nodes": {"model": {"hidden": 128, "layers": 6},
                  "train": {"batch_size": 64, "lr": 5e-4, "warmup_steps": 500, "ema_decay": 0.999,
                            "eval_every_epochs": 0.5, "eval_samples": 500, "eval_steps": 100}},
}


def _merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in extra.items():
        if isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out


# qm9-bonds with implicit hydrogens: heavy atoms only in the chain (the one-hot holds the heavy elements of the
# data; p(N) of heavy atoms); RDKit adds the hydrogens, with 3D coordinates, when a sample is decoded.
PRESETS["qm9-bonds-noh"] = _merge(PRESETS["qm9-bonds"], {"features": {"implicit_h": True}})

# Drug-like molecules (MOSES: ~22 heavy atoms, ~230 atom pairs, six times QM9's): the qm9-bonds-noh recipe
# (implicit hydrogens, bonds and charges in the chain, the same network) at half the batch, so that a step
# costs about three of QM9's; evaluation sparser and smaller (an epoch is ~2,800 steps).
PRESETS["moses"] = _merge(PRESETS["qm9-bonds-noh"], {
    "train": {"batch_size": 32, "eval_every_epochs": 0.25, "eval_samples": 100, "eval_steps": 100,
              "val_molecules": 500, "checkpoint_minutes": 5.0}})

# The conditional QM9 model: qm9-bonds-noh taking EDM's six properties (any subset, classifier-free guidance),
# trained on the generator's half of the training split (the property predictor that judges it learns from the
# other half), starting from the shipped QM9 model's weights; the new condition embedding learns at 10× the
# rate (at the cool-down rate alone, 1e-4, it had barely moved after 8 epochs: data/campaign/qm9-cond-lr1e4).
PRESETS["qm9-cond"] = _merge(PRESETS["qm9-bonds-noh"], {
    "condition": {"properties": ["alpha", "gap", "homo", "lumo", "mu", "Cv"], "embed_lr_scale": 10.0},
    "train": {"split": "train_gen", "init_from": "qm9", "lr": 2e-4, "warmup_steps": 100, "bf16": True,
              "eval_every_epochs": 2.0, "eval_samples": 200}})

LEGACY_CHARGES = (-1, 0, 1)  # the charge classes of configs saved before the vocabulary was stored


def config_from_checkpoint(d: dict) -> RunConfig:
    """The RunConfig a checkpoint stores; configs saved before the vocabulary was part of the config (they
    name ``atom_types`` but no ``charges``) get the charge classes and bond orders those models were built with."""
    features = dict(d.get("features", {}))
    if features.get("atom_types") and "charges" not in features:
        features["charges"] = list(LEGACY_CHARGES) if features.get("include_charge") else []
        features.setdefault("bond_orders", [1, 2, 3])
    return RunConfig.from_dict({**d, "features": features})


def load_config(preset: str | None = None, path: str | Path | None = None) -> RunConfig:
    """A RunConfig from a preset name, a TOML file (which may name a ``preset`` to start from), or both."""
    values: dict = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {path} is not valid TOML: {err}") from None
    name = preset or values.pop("preset", None) or "tiny"
    values.pop("preset", None)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    merged = _merge(PRESETS[name], values)
    merged["preset"] = name if path is None else f"{name}+{Path(path).name}"
    return RunConfig.from_dict(merged)
