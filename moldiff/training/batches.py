"""The batches of each epoch: a seeded order per epoch, split across DDP ranks, collated in the training
process or by loader workers (the same batches either way)."""
from __future__ import annotations

import torch
from torch_geometric.data import Batch


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C / SIGTERM to the trainer, which stops cleanly and then ends them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class EpochBatches:
    """Batches of dataset positions for each epoch (order seeded by (seed, epoch)) and their collation.

    By default every rank holds the whole dataset and takes its share of one permutation. With
    ``local_count`` the dataset is this rank's own (its shards): each rank permutes its molecules (seeded by
    (seed, epoch, rank)) and uses ``local_count`` of them, the same number on every rank."""

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1,
                 workers: int = 0, local_count: int | None = None):
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.rank, self.world, self.workers, self.local_count = rank, world, workers, local_count

    def __call__(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches (dataset positions) of one epoch."""
        if self.local_count is not None:
            g = torch.Generator().manual_seed((self.seed * 7_777 + epoch) * 1_009 + self.rank)
            perm = torch.randperm(len(self.dataset), generator=g)[:self.local_count]
            return [perm[k * self.batch_size:(k + 1) * self.batch_size]
                    for k in range(len(perm) // self.batch_size)]
        g = torch.Generator().manual_seed(self.seed * 7_777 + epoch)
        perm = torch.randperm(len(self.dataset), generator=g)
        per_rank = self.batch_size * self.world
        return [perm[k * per_rank + self.rank:(k + 1) * per_rank:self.world] for k in range(len(perm) // per_rank)]

    def collate(self, idx: torch.Tensor) -> Batch:
        return Batch.from_data_list([self.dataset[int(i)] for i in idx]).to(self.device)

    def stream(self, batches: list[torch.Tensor]):
        """Collated batches in the given order; with ``workers`` > 0, built by that many loader processes
        ahead of the training step (the order, and so the run, is the same)."""
        if self.workers <= 0:
            return (self.collate(idx) for idx in batches)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[idx.tolist() for idx in batches], num_workers=self.workers,
            collate_fn=Batch.from_data_list, pin_memory=self.device.type == "cuda", prefetch_factor=4,
            worker_init_fn=_ignore_stop_signals)
        return (b.to(self.device, non_blocking=True) for b in loader)
