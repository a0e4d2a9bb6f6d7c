"""Training: Adam, warm-up, gradient clipping, EMA with warm-up, atomic resumable checkpoints, metrics log,
and DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on GPU).

Every random draw of step k (noise, t, rotations) comes from a generator seeded by (seed, rank, k) and the
data order of epoch n from one seeded by (seed, n), so a run resumed from a checkpoint continues exactly as
the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from moldiff.checkpoint import inference_blob, load_checkpoint, save_checkpoint
from moldiff.config import RunConfig
from moldiff.data.qm9 import QM9, DatasetStats, load_processed, without_hydrogens
from moldiff.diffusion.state import State
from moldiff.io_utils import atomic_write_text
from moldiff.model import Generator, build_network
from moldiff.representation import encode
from moldiff.runtime import tune_allocator

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA where present, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one training step: a pure function of (seed, rank, step)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1))
    return g


def random_rotations(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n uniformly random proper rotations (QR of Gaussian matrices, signs fixed, det = +1)."""
    a = torch.randn(n, 3, 3, generator=generator, device=device)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(1)
    return q


class EMA:
    """Exponential moving average of the weights; with warm-up the decay is min(d, (1+n)/(10+n))."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to the base learning rate, constant afterwards."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def append_metrics(path: Path, row: dict) -> None:
    """Append one JSON row to the metrics log, rewriting it atomically."""
    old = path.read_text() if path.exists() else ""
    atomic_write_text(path, old + json.dumps(row) + "\n")


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    hours: float = 0.0  # wall-clock hours of training and evaluation, all devices
    gpu_hours: float = 0.0  # the part of ``hours`` spent on a GPU
    cpu_hours: float = 0.0  # CPU time of the training process over the same spans, all its threads (core-hours)


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C / SIGTERM to the trainer, which stops cleanly and then ends them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    """One training run in ``run_dir``; ``resume`` continues from its checkpoint."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, data_root: str | Path | None = None,
                 limit: int | None = None, device: str | None = None, resume: bool = False,
                 progress: bool = True, workers: int = 0, snapshot_every: float | None = None):
        tune_allocator()
        self.workers = workers
        if snapshot_every is not None and snapshot_every <= 0:
            raise ValueError(f"--snapshot-every must be positive, got {snapshot_every}")
        self.snapshot_every = snapshot_every
        self.run_dir = Path(run_dir)
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.device = pick_device(device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        ckpt_path = self.run_dir / CHECKPOINT
        blob = None
        if resume:
            blob = load_checkpoint(ckpt_path)
            cfg = RunConfig.from_dict(blob["config"])
        elif ckpt_path.exists():
            raise ValueError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --run-dir")
        self.cfg = cfg
        tc = cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        data = load_processed(data_root, limit, progress=progress and self.rank == 0)
        if cfg.features.implicit_h:
            data = without_hydrogens(data)
        self.train_set = QM9("train", blob=data)
        self.val_set = QM9("valid", blob=data)
        self.stats = DatasetStats.from_blob(data) if blob is None else DatasetStats.from_dict(blob["stats"])
        torch.manual_seed(tc.seed)
        self.net = build_network(cfg).to(self.device)
        self.ema = EMA(self.net, tc.ema_decay, tc.ema_warmup)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
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
        self.generator = Generator.from_config(cfg, self.stats, self.ema.model)
        self.chain = self.generator.chain
        self.weights = dict(tc.loss_weights)
        self.progress = progress and self.rank == 0
        self.stop_requested = False

    def request_stop(self) -> None:
        """Finish the current step, write the checkpoint and return from :meth:`fit` (e.g. on SIGTERM)."""
        self.stop_requested = True

    def override_evaluation(self, every_epochs: float | None = None, samples: int | None = None) -> None:
        """Change how often and how much the run evaluates; the optimisation itself is unaffected."""
        changes = {}
        if every_epochs is not None:
            if every_epochs <= 0:
                raise ValueError(f"--eval-every must be positive, got {every_epochs}")
            changes["eval_every_epochs"] = every_epochs
        if samples is not None:
            if samples < 0:
                raise ValueError(f"--eval-samples must be ≥ 0, got {samples}")
            changes["eval_samples"] = samples
        if changes:
            self._set_train(**changes)

    def _set_train(self, **changes) -> None:
        """Replace fields of the run's TrainConfig (the overrides below)."""
        self.cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(self.cfg.train, **changes))

    def override_batch_size(self, batch_size: int | None) -> None:
        """Continue the run with another batch size (e.g. on a GPU); the position in the epoch is kept."""
        if batch_size is None or batch_size == self.cfg.train.batch_size:
            return
        if batch_size <= 0:
            raise ValueError(f"--batch-size must be positive, got {batch_size}")
        old = self.cfg.train.batch_size
        self.state.step_in_epoch = self.state.step_in_epoch * old // batch_size
        self._set_train(batch_size=batch_size)

    def override_lr(self, lr: float | None) -> None:
        """Continue the run with another base learning rate (e.g. a final low-rate segment)."""
        if lr is None:
            return
        if not lr > 0:
            raise ValueError(f"--lr must be positive, got {lr}")
        self._set_train(lr=lr)

    def override_bf16(self, bf16: bool | None) -> None:
        """Continue the run with or without bf16 autocast (``None``: as configured)."""
        if bf16 is not None:
            self._set_train(bf16=bool(bf16))

    # ------------------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches (dataset positions) of one epoch, in a seeded order."""
        g = torch.Generator().manual_seed(self.cfg.train.seed * 7_777 + epoch)
        perm = torch.randperm(len(self.train_set), generator=g)
        bs = self.cfg.train.batch_size
        per_rank = bs * self.world
        n_batches = len(perm) // per_rank
        return [perm[k * per_rank + self.rank:(k + 1) * per_rank:self.world] for k in range(n_batches)]

    def collate(self, idx: torch.Tensor) -> Batch:
        return Batch.from_data_list([self.train_set[int(i)] for i in idx]).to(self.device)

    def batch_stream(self, batches: list[torch.Tensor]):
        """Collated batches in the given order; with ``workers`` > 0, built by that many loader processes
        ahead of the training step (the order, and so the run, is the same)."""
        if self.workers <= 0:
            return (self.collate(idx) for idx in batches)
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=[idx.tolist() for idx in batches], num_workers=self.workers,
            collate_fn=Batch.from_data_list, pin_memory=self.device.type == "cuda", prefetch_factor=4,
            worker_init_fn=_ignore_stop_signals)
        return (b.to(self.device, non_blocking=True) for b in loader)

    def train_step(self, batch: Batch) -> float:
        """One optimisation step; returns the batch's mean loss."""
        tc = self.cfg.train
        g = step_generator(tc.seed, self.rank, self.state.step, self.device)
        x0, graph = encode(batch, self.cfg.features)
        if tc.rotate:
            rot = random_rotations(graph.num_graphs, g, self.device)
            x0 = State(torch.einsum("nij,nj->ni", rot[graph.batch], x0.x), x0.h, x0.e)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.state.step, tc)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.bf16):
            t = self.chain.sample_t(graph.num_graphs, g, self.device, tc.t_power)
            loss, _ = self.chain.loss(self.model, x0, graph, self.weights, generator=g, t=t)
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

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean L_simple of the EMA network on a fixed subset of the validation split (fixed noise)."""
        n = min(self.cfg.train.val_molecules, len(self.val_set))
        g = torch.Generator(device=self.device).manual_seed(12345)
        total, count = 0.0, 0
        for start in range(0, n, 256):
            batch = Batch.from_data_list([self.val_set[k] for k in range(start, min(n, start + 256))]).to(self.device)
            x0, graph = encode(batch, self.cfg.features)
            loss, _ = self.chain.loss(self.ema.model, x0, graph, self.weights, generator=g)
            total += float(loss.sum())
            count += graph.num_graphs
        return total / max(count, 1)

    def checkpoint_blob(self) -> dict:
        """The full training state, as the checkpoint stores it."""
        return {
            "config": self.cfg.to_dict(), "stats": self.stats.to_dict(),
            "model": self.net.state_dict(), "ema": self.ema.model.state_dict(), "ema_updates": self.ema.updates,
            "optimizer": self.opt.state_dict(), "run_state": vars(self.state).copy(),
            "step": self.state.step, "epoch": self.state.epoch, "hours": self.state.hours,
        }

    def save(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.checkpoint_blob(), self.run_dir / CHECKPOINT)

    def save_snapshot(self) -> Path:
        """The EMA weights now, as a small sampling checkpoint in ``run_dir/snapshots/`` (e.g. to score later,
        where RDKit is, the epochs a GPU machine trained)."""
        path = self.run_dir / "snapshots" / f"step{self.state.step:07d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
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

    def fit(self, max_steps: int | None = None, max_hours: float | None = None) -> RunState:
        """Train until the configured epochs, ``max_steps`` (total) or ``max_hours`` (this call) is reached."""
        from tqdm import tqdm

        tc = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            atomic_write_text(self.run_dir / "config.json", json.dumps(self.cfg.to_dict(), indent=2) + "\n")
        max_steps = max_steps if max_steps is not None else tc.max_steps
        self.steps_per_epoch = len(self.epoch_batches(0))
        eval_every = max(1, int(round(tc.eval_every_epochs * self.steps_per_epoch)))
        snap_every = max(1, int(round(self.snapshot_every * self.steps_per_epoch))) if self.snapshot_every else 0
        total_steps = int(math.ceil(tc.epochs * self.steps_per_epoch))
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        start_wall = time.monotonic()
        last_save = time.monotonic()
        losses: list[float] = []
        bar = tqdm(total=total_steps, initial=self.state.step, disable=not self.progress, desc="training",
                   mininterval=5.0, unit="step")
        stop = False
        while self.state.step < total_steps and not stop:
            batches = self.epoch_batches(self.state.epoch)
            stream = self.batch_stream(batches[self.state.step_in_epoch:])
            while self.state.step_in_epoch < len(batches) and not stop:
                t0, c0 = time.monotonic(), time.process_time()
                losses.append(self.train_step(next(stream)))
                self.state.step_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", refresh=False)
                done = self.state.step >= total_steps
                if self.state.step % eval_every == 0 or done:
                    self.add_hours(time.monotonic() - t0, time.process_time() - c0)
                    t0, c0 = time.monotonic(), time.process_time()
                    row = self.evaluate(sum(losses) / len(losses))
                    losses = []
                    if self.rank == 0:
                        append_metrics(self.run_dir / METRICS, row)
                        bar.write(json.dumps(row))
                if snap_every and self.state.step % snap_every == 0 and self.rank == 0:
                    self.save_snapshot()
                end_of_epoch = self.state.step_in_epoch >= len(batches)
                if end_of_epoch:
                    self.state.epoch += 1
                    self.state.step_in_epoch = 0
                self.add_hours(time.monotonic() - t0, time.process_time() - c0)
                out_of_time = max_hours is not None and (time.monotonic() - start_wall) / 3600 >= max_hours
                stop = done or out_of_time or self.stop_requested
                due = (time.monotonic() - last_save) / 60 >= tc.checkpoint_minutes or bool(
                    tc.checkpoint_steps and self.state.step % tc.checkpoint_steps == 0)
                if due or stop or end_of_epoch:
                    self.save()
                    last_save = time.monotonic()
                if end_of_epoch:
                    break  # the next epoch has its own batch order
        bar.close()
        if self.world > 1:
            dist.barrier()
        return self.state
