"""The reader of a user's own molecules: an SDF (3D coordinates used as they are) or a SMILES/CSV file
(conformers from RDKit ETKDGv3 + MMFF94, seeded per record, made in parallel over the cores), written as shards
on disk (:mod:`moldiff.data.shards`) with a fixed-seed split, cached by the file's content."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from moldiff.data.shards import ShardedStore, read_meta, write_shard
from moldiff.data.store import MoleculeRecord, pack_records
from moldiff.io_utils import atomic_write_text
from moldiff.paths import data_dir

FORMAT = 2
SHARD_SIZE = 10_000
"""File records per shard (one shard: its own fixed-seed 90/5/5 split)."""
SPLIT_SEED = 0
VALID_FRACTION = TEST_FRACTION = 0.05


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (the cache key: the same content, the same processed store)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_of(mol, seed: int = 0):
    """A MoleculeRecord with explicit hydrogens, kekulised bond orders and formal charges, or (None, why).
    A molecule without 3D coordinates gets an ETKDGv3 conformer relaxed with MMFF94 (seeded)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    try:
        mol = Chem.Mol(mol)
        Chem.SanitizeMol(mol)
        has_3d = mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()
        mol = Chem.AddHs(mol, addCoords=has_3d)
        if not has_3d:
            params = AllChem.ETKDGv3()
            params.randomSeed = seed
            if AllChem.EmbedMolecule(mol, params) != 0:
                return None, "no conformer (ETKDGv3 failed)"
            if AllChem.MMFFHasAllMoleculeParams(mol):
                AllChem.MMFFOptimizeMolecule(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except (ValueError, RuntimeError) as err:
        return None, f"not usable: {str(err).splitlines()[0][:80]}"
    orders = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    bonds = []
    for b in mol.GetBonds():
        if b.GetBondType() not in orders:
            return None, f"bond of type {b.GetBondType()} (only single, double, triple)"
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        bonds.append((i, j, orders[b.GetBondType()]))
    return MoleculeRecord(tuple(a.GetSymbol() for a in mol.GetAtoms()), mol.GetConformer().GetPositions(),
                          np.array([a.GetFormalCharge() for a in mol.GetAtoms()]),
                          np.array(sorted(bonds), dtype=np.int64).reshape(-1, 3),
                          smiles=Chem.MolToSmiles(Chem.RemoveHs(mol))), None


def split(n: int, seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """A fixed-seed split: 5 % validation, 5 % test (at least one each from three molecules on), the rest train."""
    perm = np.random.RandomState(seed).permutation(n)
    n_valid = max(1 if n >= 3 else 0, int(round(n * VALID_FRACTION)))
    n_test = max(1 if n >= 3 else 0, int(round(n * TEST_FRACTION)))
    parts = {"valid": perm[:n_valid], "test": perm[n_valid:n_valid + n_test], "train": perm[n_valid + n_test:]}
    return {k: torch.from_numpy(np.sort(v).astype(np.int64)) for k, v in parts.items()}


def record_seed(seed: int, number: int) -> int:
    """The conformer seed of record ``number``: the same however the file is chunked or parallelised."""
    return (seed * 1_000_003 + number) % (2**31 - 1)


def _conformer_job(job: tuple[int, object, int]) -> tuple[int, MoleculeRecord | None, str | None]:
    number, mol, seed = job
    rec, why = record_of(mol, seed)
    return number, rec, why


def _spawn_pool(workers: int):
    """A pool of fresh interpreters for the conformer jobs. Spawned, not forked: a fork of a process whose other
    threads (torch's, a progress bar's) hold a lock can hang. The workers need this module only, so the
    caller's main script is kept out of them (spawn would run it again in each worker: a script without an
    ``if __name__ == "__main__"`` guard, or one read from stdin, would break)."""
    import sys

    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__spec__", "__file__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            if k == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, k)
        return multiprocessing.get_context("spawn").Pool(workers)
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _records(path: Path, limit: int | None) -> Iterator[list[tuple[int, object]]]:
    """(record number, molecule or message) of the file in order, the first ``limit`` records."""
    from moldiff.chem.io import iter_molecules

    number = 0
    for item in iter_molecules(path):
        number += 1
        yield number, item
        if limit is not None and number >= limit:
            return


def _process_chunk(items: list[tuple[int, object]], seed: int, pool) -> tuple[list[MoleculeRecord], list[int], list[str]]:
    """Records (with their numbers) and skip messages of one shard's worth of file records."""
    skipped = [f"record {n}: {item}" if not isinstance(item, str) or "record" not in item else item
               for n, item in items if isinstance(item, str)]
    jobs = [(n, mol, record_seed(seed, n)) for n, mol in items if not isinstance(mol, str)]
    results = pool.imap(_conformer_job, jobs, chunksize=16) if pool is not None else map(_conformer_job, jobs)
    records, numbers = [], []
    for (n, mol, _), (_, rec, why) in zip(jobs, results):
        if rec is None:
            source = mol.GetProp("moldiff_source") if mol.HasProp("moldiff_source") else f"record {n}"
            skipped.append(f"{source}: {why}")
        else:
            records.append(rec)
            numbers.append(n)
    return records, numbers, skipped


def _cached_without_source(root, sha256: str | None, seed: int, shard_size: int, limit: int | None):
    """The finished store of content ``sha256`` in the cache, or None."""
    if not sha256:
        return None
    suffix = f"-{sha256[:16]}-s{seed}-b{shard_size}-v{FORMAT}"
    for cache in sorted((data_dir(root) / "files").glob(f"*{suffix}")):
        store = _finished(cache, limit, {"source": str(cache), "source_sha256": sha256, "split_seed": SPLIT_SEED,
                                         "limit": limit})
        if store is not None:
            return store
    return None


def _finished(cache: Path, limit: int | None, info: dict) -> ShardedStore | None:
    """The store a finished processing pass of ``limit`` records left in ``cache`` (its index), or None."""
    index = cache / f"index-{limit if limit is not None else 'all'}.json"
    if not index.exists():
        return None
    done = json.loads(index.read_text())
    folders = [cache / f for f in done["shards"]]
    if not all((f / "meta.json").exists() for f in folders):
        return None
    return ShardedStore(folders, dict(info, skipped=done["skipped"], kept=done["kept"]))


def load_file(path: str | Path, root: str | Path | None = None, seed: int = 0, say=print,
              limit: int | None = None, workers: int | None = None, shard_size: int = SHARD_SIZE,
              sha256: str | None = None) -> ShardedStore:
    """The store of a molecule file (processed once into shards on disk, then read from there), its first
    ``limit`` records when given. Conformers are made by ``workers`` processes (default: every core).
    Bad records are skipped, counted in one line and listed (with their record numbers) in
    ``<cache>/skipped.txt``; a file with no usable record raises ValueError. An interrupted processing
    keeps its finished shards and continues from them. Where the file itself is absent, a complete cache of
    the content ``sha256`` names is used."""
    path = Path(path)
    if not path.is_file():
        cached = _cached_without_source(root, sha256, seed, shard_size, limit)
        if cached is not None:  # e.g. a GPU machine that was given the processed shards, not the file
            return cached
        from moldiff.chem.io import not_regular
        raise ValueError(f"{path}: " + (f"{not_regular(path)}, not a regular file" if not_regular(path)
                                        else "no such file"))
    digest = file_digest(path)
    name = path.name.split(".")[0] or "data"
    cache = data_dir(root) / "files" / f"{name}-{digest[:16]}-s{seed}-b{shard_size}-v{FORMAT}"
    index = cache / f"index-{limit if limit is not None else 'all'}.json"
    info = {"source": str(path), "source_sha256": digest, "split_seed": SPLIT_SEED, "limit": limit}
    finished = _finished(cache, limit, info)
    if finished is not None:
        return finished
    workers = _cores() if workers is None else max(1, workers)
    folders, skipped_all, kept, t0 = [], [], 0, time.time()
    pool = None
    if workers > 1:
        pool = _spawn_pool(workers)
    try:
        chunk: list = []
        shard = 0
        stream = _records(path, limit)
        while True:
            item = next(stream, None)
            if item is not None:
                chunk.append(item)
                if len(chunk) < shard_size:
                    continue
            if not chunk:
                break
            first, last = chunk[0][0], chunk[-1][0]
            folder = cache / f"records-{first:09d}-{last:09d}"
            if (folder / "meta.json").exists():
                meta = read_meta(folder)
                skipped = meta["skipped_messages"]
            else:
                records, numbers, skipped = _process_chunk(chunk, seed, pool)
                if records:
                    blob = pack_records(records)
                    blob["splits"] = split(len(records), SPLIT_SEED + shard)
                    write_shard(blob, folder, {"records": [first, last], "numbers": numbers,
                                               "skipped_messages": skipped, "source_sha256": digest})
                    meta = read_meta(folder)
                else:
                    meta = {"molecules": 0}
            if meta["molecules"]:
                folders.append(folder)
                kept += meta["molecules"]
            skipped_all += skipped
            say(f"{path}: records {first:,}–{last:,} done ({kept:,} molecules kept, {len(skipped_all):,} "
                f"skipped, {time.time() - t0:.0f} s)")
            shard += 1
            chunk = []
            if item is None:
                break
    finally:
        if pool is not None:
            pool.terminate()
    if not folders:
        raise ValueError(f"{path}: no usable molecule ({len(skipped_all)} record(s) skipped: "
                         f"{skipped_all[0] if skipped_all else 'empty'})")
    log = cache / f"skipped-{limit if limit is not None else 'all'}.txt"
    atomic_write_text(log, "".join(f"{line}\n" for line in skipped_all))
    atomic_write_text(index, json.dumps({"shards": [f.name for f in folders], "skipped": len(skipped_all),
                                         "kept": kept}) + "\n")
    say(f"{path}: {kept} molecules kept, {len(skipped_all)} skipped (listed in {log})")
    return ShardedStore(folders, dict(info, skipped=len(skipped_all), kept=kept))
