"""``torchrun … -m moldiff sample``: the molecules of one run shared out over the processes.

Rank r of W makes molecules ⌊rN/W⌋ … ⌊(r+1)N/W⌋ − 1, each with its own seed (the same molecules a single
process makes for that seed), writes them to ``OUTPUT.rankR.SUFFIX``; rank 0 then merges the shards in molecule
order into OUTPUT (atomically) and removes them. Uniqueness and novelty are therefore judged on the merged
file, across all shards (``moldiff evaluate OUTPUT``)."""
from __future__ import annotations

from pathlib import Path


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """The molecules [start, stop) of rank ``rank``."""
    return n * rank // world, n * (rank + 1) // world


def shard_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def run_sharded(args, model_path: Path) -> int:
    """Sample this rank's share and, on rank 0, merge every rank's shard into ``args.output``."""
    import torch.distributed as dist

    from moldiff.api import load
    from moldiff.diffusion.grids import default_sampler
    from moldiff.chem.io import write_molecules
    from moldiff.chem.relax import relax
    from moldiff.io_utils import atomic_write
    from moldiff.runtime import distributed_setup, resolve_bf16
    from moldiff.sampling import conditioned, generate

    device, rank, world = distributed_setup(args.device)
    gen = load(model_path, device)
    gen, extra = conditioned(gen, getattr(args, "request", None), args.num, getattr(args, "guidance", None),
                             warn=lambda m: print(f"warning: {m}") if rank == 0 else None)
    solver, spacing = default_sampler(args.steps, gen.chain.T, args.ddim, args.solver, args.spacing)
    start, stop = shard_range(args.num, rank, world)
    mols = []
    if stop > start:
        mols = generate(gen, stop, start=start, steps=args.steps, seed=args.seed, n_atoms=args.atoms,
                        batch_size=args.batch_size, deterministic=args.ddim, spacing=spacing,
                        solver=None if solver == "ancestral" else solver, bf16=resolve_bf16(args.bf16, gen.device), progress=not args.no_progress and rank == 0,
                        noise_scale=args.noise_scale, noise_scale_from=args.noise_scale_from,
                        refine=getattr(args, "refine", 0), **extra)
    mols = relax(mols, getattr(args, "relax", "none"))
    if args.valid_only:
        mols = [m for m in mols if m.GetIntProp("moldiff_valid")]
    written, _ = write_molecules(mols, shard_path(args.output, rank))
    counts = [None] * world
    dist.all_gather_object(counts, (written, sum(m.GetIntProp("moldiff_valid") for m in mols)))
    if rank == 0:
        parts = [shard_path(args.output, r) for r in range(world)]
        atomic_write(args.output, b"".join(p.read_bytes() for p in parts))
        for p in parts:
            p.unlink(missing_ok=True)
        total, valid = sum(c[0] for c in counts), sum(c[1] for c in counts)
        print(f"wrote {total} molecules to {args.output} from {world} processes ({valid} of them sanitise in RDKit)")
    dist.barrier()
    dist.destroy_process_group()
    return 0
