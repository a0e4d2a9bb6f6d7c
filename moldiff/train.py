"""A training run: data, network, EMA, optimiser and chain assembled around :class:`moldiff.training.loop.Loop`,
with atomic resumable checkpoints, a metrics log, and DistributedDataParallel under ``torchrun`` (gloo on CPU,
NCCL on GPU; set up by :mod:`moldiff.runtime`).

Every random draw of step k (noise, t, rotations) comes from a generator seeded by (seed, rank, k) and the
data order of epoch n from one seeded by (seed, n), so a run resumed from a checkpoint continues exactly as
the uninterrupted run would have. Overrides on resume replace fields of the saved config
(``dataclasses.replace``); the optimisation itself is what the config says.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from moldiff.checkpoint import CheckpointError, inference_blob, load_checkpoint, save_checkpoint
from moldiff.config import RunConfig, config_from_checkpoint
from moldiff.data.files import SHARD_SIZE, load_file
from moldiff.data.qm9 import load_processed, with_properties
from moldiff.data.store import DatasetStats, MoleculeDataset, vocabulary_of, without_hydrogens
from moldiff.io_utils import atomic_write_text
from moldiff.model import Generator, build_network
from moldiff.conditioning import drop_for_training, encode as encode_condition
from moldiff.representation import encode
from moldiff.runtime import distributed_setup
from moldiff.state import State
from moldiff.training.batches import EpochBatches
from moldiff.training.callbacks import Checkpoints, Evaluate, Snapshots, append_metrics  # noqa: F401
from moldiff.training.loop import Loop
from moldiff.training.parts import EMA, RunState, lr_at, random_rotations, step_generator  # noqa: F401

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
_OVERRIDE_RULES = {  # field: (flag, check, what it must be)
    "eval_every_epochs": ("--eval-every", lambda v: v > 0, "positive"),
    "eval_samples": ("--eval-samples", lambda v: v >= 0, "≥ 0"),
    "batch_size": ("--batch-size", lambda v: v > 0, "positive"),
    "lr": ("--lr", lambda v: v > 0, "positive"),
    "checkpoint_minutes": ("--checkpoint-every", lambda v: v > 0, "positive"),
    "checkpoint_steps": ("--checkpoint-every", lambda v: v > 0, "positive"),
}


class Trainer:
    """One training run in ``run_dir``; ``resume`` continues from its checkpoint. ``kernel`` picks the EGNN
    layer implementation (see :class:`moldiff.nn.egnn.EGNN`). With ``data_file`` the run trains on that file's
    molecules (its first ``limit`` records), streamed from shards on disk; under DDP each rank reads its own."""

    def __init__(self, cfg: RunConfig | None, run_dir: str | Path, data_root: str | Path | None = None,
                 limit: int | None = None, device: str | None = None, resume: bool = False,
                 progress: bool = True, workers: int = 0, snapshot_every: float | None = None,
                 kernel: str = "fast", data_file: str | Path | None = None, shard_size: int = SHARD_SIZE,
                 conformer_workers: int | None = None):
        if snapshot_every is not None and snapshot_every <= 0:
            raise ValueError(f"--snapshot-every must be positive, got {snapshot_every}")
        self.workers, self.snapshot_every = workers, snapshot_every
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ValueError(f"--run-dir {self.run_dir} is a file, not a folder")
        self.device, self.rank, self.world = distributed_setup(device)
        ckpt_path = self.run_dir / CHECKPOINT
        blob = None
        if resume:
            blob = load_checkpoint(ckpt_path, kind="training")
            cfg = config_from_checkpoint(blob["config"])
        elif ckpt_path.exists():
            raise ValueError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --run-dir")
        tc = cfg.train
        saved = blob.get("data", {}) if blob is not None else {}
        self._saved_data = saved
        if blob is not None and data_file is None:
            data_file = saved.get("source")  # a run on a user's file resumes on that file
            limit = saved.get("limit", limit)
        self.data_info: dict = {}
        self.local_train: int | None = None  # per-rank training molecules when ranks read their own shards
        if data_file is not None:
            shard_size = saved.get("shard_size", shard_size)
            store = self._open_file(data_file, data_root, limit, conformer_workers, shard_size,
                                    not cfg.features.implicit_h)
            digest = store.info["source_sha256"]
            self.data_info = {"source": str(data_file), "sha256": digest, "split_seed": store.info["split_seed"],
                              "limit": limit, "shard_size": shard_size}
            if saved.get("sha256", digest) != digest:
                raise ValueError(f"{data_file} is not the file this run was trained on (its content changed)")
            data = store.summary_blob()
            shards = store.rank_shards(self.rank, self.world)
            self.train_set = store.dataset("train", shards)
            self.val_set = store.dataset("valid")
            if self.world > 1:
                self.local_train = min(sum(store.metas[k]["counts"]["train"] for k in store.rank_shards(r, self.world))
                                       for r in range(self.world))
        else:
            data = load_processed(data_root, limit, progress=progress and self.rank == 0)
            if cfg.condition.properties:
                data = with_properties(data)
            if cfg.features.implicit_h:
                data = without_hydrogens(data)
            props = cfg.condition.properties
            if props and not set(props) <= set(data.get("properties", {})):
                raise ValueError(f"QM9 holds no property {sorted(set(props) - set(data['properties']))}; "
                                 f"it has {', '.join(data['properties'])}")
            self.train_set = MoleculeDataset(tc.split, data, properties=props)
            self.val_set = MoleculeDataset("valid", data, properties=props)
        self.cfg = dataclasses.replace(cfg, features=cfg.features.with_vocabulary(vocabulary_of(data, split=None)))
        self.stats = DatasetStats.from_blob(data, tc.split, cfg.condition.properties) if blob is None else \
            DatasetStats.from_dict(blob["stats"])
        torch.manual_seed(tc.seed)
        self.net = build_network(self.cfg, kernel).to(self.device)
        if blob is None and tc.init_from:
            self._init_weights(tc.init_from)
        self.ema = EMA(self.net, tc.ema_decay, tc.ema_warmup)
        self.opt = torch.optim.Adam(self._param_groups(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.state = RunState()
        if blob is not None:
            self.net.load_state_dict(blob["model"])
            self.ema.model.load_state_dict(blob["ema"])
            self.ema.updates = int(blob["ema_updates"])
            self.opt.load_state_dict(blob["optimizer"])
            self.state = RunState(**blob["run_state"])
        self.model = self.net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.model = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.generator = Generator.from_config(self.cfg, self.stats, self.ema.model)
        self.chain = self.generator.chain
        self.progress = progress and self.rank == 0
        self.stop_requested = False

    def _param_groups(self) -> list[dict]:
        """The optimiser's parameter groups: the condition embedding at ``condition.embed_lr_scale`` times the
        learning rate (a new part of a fine-tuned network), everything else at the learning rate."""
        scale = self.cfg.condition.embed_lr_scale
        embed = [p for n, p in self.net.named_parameters() if n.startswith("embed_cond")]
        if scale == 1.0 or not embed:
            return [{"params": list(self.net.parameters())}]
        rest = [p for n, p in self.net.named_parameters() if not n.startswith("embed_cond")]
        return [{"params": rest}, {"params": embed, "lr_scale": scale}]

    def _init_weights(self, source: str) -> None:
        """Start from the EMA weights of a built-in model or checkpoint; only a condition embedding the source
        lacks stays as built (zero: the run starts as the source model)."""
        from moldiff.pretrained import resolve_model

        path = resolve_model(source)
        src = load_checkpoint(path, kind="inference")
        weights = src.get("ema") if isinstance(src.get("ema"), dict) else src["model"]
        missing, unexpected = self.net.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("embed_cond") for k in missing):
            raise CheckpointError(f"--init-from {source}: its network does not fit this config "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def _open_file(self, path, root, limit, workers, shard_size, hydrogens: bool):
        """The file's store (processed by rank 0 while the other ranks wait, then opened by all); ``moses``
        names the MOSES training set."""
        sha256 = self._saved_data.get("sha256")
        if str(path) == "moses":
            from moldiff.data.moses import moses_file
            try:
                path = moses_file("train")
            except ValueError:
                if not sha256:  # without molsets a resumed run can still use its processed shards
                    raise
        say = print if self.rank == 0 else (lambda line: None)
        if self.world > 1:
            import torch.distributed as dist
            if self.rank == 0:
                load_file(path, root, say=say, limit=limit, workers=workers, shard_size=shard_size,
                          sha256=sha256).view(hydrogens)
            dist.barrier()
        return load_file(path, root, say=say, limit=limit, workers=workers, shard_size=shard_size,
                         sha256=sha256).view(hydrogens)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.cfg.train.loss_weights)

    def request_stop(self) -> None:
        """Finish the current step, write the checkpoint and return from :meth:`fit` (e.g. on SIGTERM)."""
        self.stop_requested = True

    # ----- overrides of the saved config (also on resume) -------------------------------------------
    def override(self, **changes) -> None:
        """Replace fields of the run's TrainConfig (``dataclasses.replace``), e.g. ``override(lr=1e-4)``; None
        values are ignored. A new batch size keeps the position in the epoch."""
        changes = {k: v for k, v in changes.items() if v is not None}
        for k, v in changes.items():
            rule = _OVERRIDE_RULES.get(k)
            if rule and not rule[1](v):
                raise ValueError(f"{rule[0]} must be {rule[2]}, got {v}")
        if "batch_size" in changes:
            self.state.step_in_epoch = self.state.step_in_epoch * self.cfg.train.batch_size // changes["batch_size"]
        if changes:
            self.cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(self.cfg.train, **changes))

    def override_checkpointing(self, minutes: float | None = None, steps: int | None = None) -> None:
        """Checkpoint every ``minutes`` of wall clock or every ``steps`` steps (the other one is turned off)."""
        if minutes is not None or steps is not None:
            self.override(checkpoint_minutes=math.inf if minutes is None else minutes, checkpoint_steps=steps)
            if minutes is not None:
                self.cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(self.cfg.train, checkpoint_steps=None))

    def batches(self) -> EpochBatches:
        """The epochs' batches of this rank under the current config."""
        return EpochBatches(self.train_set, self.cfg.train.batch_size, self.cfg.train.seed, self.device, self.rank,
                            self.world, self.workers, local_count=self.local_train)

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches (dataset positions) of one epoch, in a seeded order."""
        return self.batches()(epoch)

    # ----- one step ---------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> float:
        """One optimisation step; returns the batch's mean loss."""
        tc = self.cfg.train
        g = step_generator(tc.seed, self.rank, self.state.step, self.device)
        x0, graph = encode(batch, self.cfg.features)
        if tc.rotate:
            rot = random_rotations(graph.num_graphs, g, self.device)
            x0 = State(torch.einsum("nij,nj->ni", rot[graph.batch], x0.x), x0.h, x0.e)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.state.step, tc) * group.get("lr_scale", 1.0)
        model = self.model
        if self.cfg.condition.properties:
            values = drop_for_training(batch.y, self.cfg.condition.drop_all, g)
            cond = self.condition(values)
            model = lambda z, t, graph: self.model(z, t, graph, cond)  # noqa: E731
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.bf16):
            t = self.chain.sample_t(graph.num_graphs, g, self.device, tc.t_power)
            loss, _ = self.chain.loss(model, x0, graph, self.weights, generator=g, t=t)
        loss = loss.float().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.state.step}; stopping before it "
                                     "spoils the checkpoint")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), tc.clip_grad)
        self.opt.step()
        self.ema.update(self.net)
        self.state.step += 1
        return float(loss.detach())

    def condition(self, values: torch.Tensor) -> torch.Tensor:
        """The network's condition for (G, P) property values (NaN: not given)."""
        return encode_condition(values, self.stats.properties, self.cfg.condition.properties).to(self.device)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean L_simple of the EMA network on a fixed subset of the validation split (fixed noise)."""
        n = min(self.cfg.train.val_molecules, len(self.val_set))
        g = torch.Generator(device=self.device).manual_seed(12345)
        total, count = 0.0, 0
        for start in range(0, n, 256):
            batch = Batch.from_data_list([self.val_set[k] for k in range(start, min(n, start + 256))]).to(self.device)
            x0, graph = encode(batch, self.cfg.features)
            model = self.ema.model
            if self.cfg.condition.properties:  # every property given
                cond = self.condition(batch.y)
                model = lambda z, t, graph, net=self.ema.model: net(z, t, graph, cond)  # noqa: E731
            loss, _ = self.chain.loss(model, x0, graph, self.weights, generator=g)
            total += float(loss.sum())
            count += graph.num_graphs
        return total / max(count, 1)

    # ----- records ----------------------------------------------------------------------------------
    def checkpoint_blob(self) -> dict:
        """The full training state, as the checkpoint stores it."""
        return {
            "config": self.cfg.to_dict(), "stats": self.stats.to_dict(),
            "model": self.net.state_dict(), "ema": self.ema.model.state_dict(), "ema_updates": self.ema.updates,
            "optimizer": self.opt.state_dict(), "run_state": vars(self.state).copy(),
            "step": self.state.step, "epoch": self.state.epoch, "hours": self.state.hours,
            **({"data": self.data_info} if self.data_info else {}),
        }

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.checkpoint_blob(), self.run_dir / CHECKPOINT)

    def save_snapshot(self) -> Path:
        """The EMA weights now, as a small sampling checkpoint in ``run_dir/snapshots/`` (e.g. to score later,
        where RDKit is, the epochs a GPU machine trained)."""
        path = self.run_dir / "snapshots" / f"step{self.state.step:07d}.pt"
        blob = inference_blob(self.checkpoint_blob())
        blob["epoch"] = self.epochs_done()
        save_checkpoint(blob, path)
        return path

    def epochs_done(self) -> float:
        """Epochs trained so far, with the fraction of the current one."""
        return round(self.state.epoch + self.state.step_in_epoch / max(1, self.steps_per_epoch), 4)

    def evaluate(self, train_loss: float) -> dict:
        """Validation loss, and stability/validity of freshly sampled molecules when configured."""
        tc = self.cfg.train
        row = {"epoch": self.epochs_done(),
               "step": self.state.step, "hours": round(self.state.hours, 5),
               "gpu_hours": round(self.state.gpu_hours, 5), "cpu_hours": round(self.state.cpu_hours, 5),
               "threads": torch.get_num_threads(), "device": str(self.device),
               "lr": lr_at(self.state.step, tc), "batch_size": tc.batch_size, "bf16": tc.bf16,
               "world_size": self.world, "train_loss": train_loss, "val_loss": self.validation_loss(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if tc.eval_samples:
            from moldiff.quality import sample_quality
            row.update(sample_quality(self.generator, tc.eval_samples, tc.eval_steps, seed=0))
        return row

    def add_hours(self, seconds: float, cpu_seconds: float = 0.0) -> None:
        """Count ``seconds`` of this run's wall clock (and of its GPU time on CUDA) and ``cpu_seconds`` of the
        process's CPU time: on a shared machine the wall clock overstates what a run cost, its CPU time does not."""
        self.state.hours += seconds / 3600.0
        self.state.cpu_hours += cpu_seconds / 3600.0
        if self.device.type == "cuda":
            self.state.gpu_hours += seconds / 3600.0

    # ----- the run ----------------------------------------------------------------------------------
    def fit(self, max_steps: int | None = None, max_hours: float | None = None) -> RunState:
        """Train until the configured epochs, ``max_steps`` (total) or ``max_hours`` (this call) is reached."""
        from tqdm import tqdm

        tc = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            atomic_write_text(self.run_dir / "config.json", json.dumps(self.cfg.to_dict(), indent=2) + "\n")
        max_steps = max_steps if max_steps is not None else tc.max_steps
        self.steps_per_epoch = len(self.epoch_batches(0))
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training split holds {len(self.train_set)} molecules, fewer than one batch of "
                             f"{tc.batch_size * self.world}: lower --batch-size")
        total_steps = int(math.ceil(tc.epochs * self.steps_per_epoch))
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        bar = tqdm(total=total_steps, initial=self.state.step, disable=not self.progress, desc="training",
                   mininterval=5.0, unit="step")
        per_epoch = lambda epochs: max(1, int(round(epochs * self.steps_per_epoch)))  # noqa: E731
        callbacks = [
            _Progress(bar),
            Evaluate(per_epoch(tc.eval_every_epochs), self.evaluate,
                     self.run_dir / METRICS if self.rank == 0 else None, bar.write),
            Snapshots(per_epoch(self.snapshot_every) if self.snapshot_every and self.rank == 0 else 0,
                      self.save_snapshot),
            Checkpoints(self.save, tc.checkpoint_minutes, tc.checkpoint_steps),
        ]
        batches = self.batches()
        loop = Loop(self.state, batches, batches.stream, self.train_step, callbacks, total_steps,
                    max_hours, should_stop=lambda: self.stop_requested, add_time=self.add_hours)
        loop.run()
        bar.close()
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()
        return self.state


class _Progress:
    """The progress bar, with the running mean of the last 50 losses."""

    def __init__(self, bar):
        self.bar = bar
        self.recent: list[float] = []

    def on_step(self, loop) -> None:
        self.recent = (self.recent + loop.losses[-1:])[-50:]
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{sum(self.recent) / max(len(self.recent), 1):.4f}", refresh=False)

    def on_end(self, loop) -> None:
        pass
