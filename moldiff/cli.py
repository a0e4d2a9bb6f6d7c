"""``moldiff`` command line: train, sample, evaluate. Bad input ends in one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from moldiff.diffusion.grids import AUTO, DEFAULT_NOISE_SCALE, DEFAULT_NOISE_SCALE_FROM, SOLVERS, SPACINGS, default_sampler
from moldiff.guidance import guidance_help

EXIT_USAGE = 2  # usage errors and bad input
EXIT_FAILURE = 1  # a run that failed (I/O errors, a diverged training run)


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, never as a traceback."""


class RunFailed(Exception):
    """A run that failed on the way (exit code 1), e.g. a disk that filled: one line, never a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (exit code 143, as the default handler's death would give)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is a ``--help`` away) and exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# what moldiff imports from outside the standard library (pyproject.toml's dependencies)
_DEPENDENCIES = {"torch", "torch_geometric", "rdkit", "networkx", "qm9pack", "numpy", "tqdm", "matplotlib", "PIL"}


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _checkpoint_every(text: str) -> tuple[float | None, int | None]:
    """``--checkpoint-every``: wall-clock time with a unit (``90s``, ``10m``, ``2h``) → (minutes, None), or a bare
    integer → (None, steps)."""
    t = text.strip().lower()
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    try:
        if t[-1:] in units:
            value = float(t[:-1])
            if not 0 < value < float("inf"):
                raise ValueError
            return value * units[t[-1]], None
        steps = int(t)
        if steps <= 0:
            raise ValueError
        return None, steps
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time such as 90s, 10m or 2h, or a positive number of steps, "
                                         f"got {text!r}") from None


def _writable(path: Path) -> None:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: directory {parent} is not writable")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a directory")


# ---------------------------------------------------------------- train
def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on QM9, MOSES or your own file (resumable; runs under torchrun for DDP)")
    p.add_argument("--preset", help="named configuration: tiny, edm, qm9-bonds, qm9-bonds-noh, qm9-nodes, "
                   "moses (drug-like), qm9-cond (conditioned on QM9's properties) (default tiny)")
    p.add_argument("--config", type=Path, help="TOML file: optional 'preset = ...' and [features] [model] "
                   "[schedule] [train] tables overriding it")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"), help="checkpoint + metrics folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    p.add_argument("--max-steps", type=_positive, help="stop after this many optimisation steps in total")
    p.add_argument("--max-hours", type=float, help="stop after this many hours of this invocation")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA where present)")
    p.add_argument("--threads", type=_positive, help="CPU threads for torch (default: the cores that are idle now)")
    p.add_argument("--eval-every", type=float, metavar="EPOCHS",
                   help="evaluate this often (overrides the config, also on --resume; training is unaffected)")
    p.add_argument("--eval-samples", type=int, metavar="N", help="molecules sampled at each evaluation (0: none)")
    p.add_argument("--batch-size", type=_positive, help="molecules per step (overrides the config, also on "
                   "--resume, where the position in the epoch is kept)")
    p.add_argument("--lr", type=float, help="base learning rate (overrides the config, also on --resume)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast of the network's matrix multiplies, coordinates in fp32 (overrides the "
                        "config, also on --resume): ×1.3–1.7 per step on CPUs with bf16 instructions, same loss "
                        "curve (benchmarks/README.md); on a GPU it pays only for batches of ~1,000 molecules")
    p.add_argument("--workers", type=int, default=0, help="data-loader processes that build batches ahead "
                   "(0: in the training process; pays on a GPU)")
    p.add_argument("--checkpoint-every", type=_checkpoint_every, metavar="TIME|STEPS",
                   help="write the checkpoint this often: a time (90s, 10m, 2h) or a number of steps (500); "
                        "overrides the config, also on --resume (default: every 10 minutes)")
    p.add_argument("--snapshot-every", type=float, metavar="EPOCHS", help="also keep the EMA weights this often "
                   "as small checkpoints in RUN_DIR/snapshots/ (to score later, e.g. after a GPU run)")
    p.add_argument("--kernel", choices=["fast", "compiled", "reference"], default="fast",
                   help="EGNN layer implementation: fast (default), compiled (torch.compile: pays on a GPU), "
                        "reference (the plain formulation); the same math and checkpoints")
    p.add_argument("--data-dir", type=Path, help=f"processed-data cache (default: $MOLDIFF_DATA or data/cache)")
    p.add_argument("--limit", type=_positive, help="use only the first N molecules (records of --data, or of QM9)")
    p.add_argument("--data", type=Path, metavar="FILE", help="train on your own molecules instead of QM9: an SDF "
                   "(.sdf, .sdf.gz; 3D coordinates used as they are), a SMILES file (.smi) or a CSV with a SMILES "
                   "column (conformers from RDKit ETKDGv3 + MMFF94, seeded, made over all cores), or 'moses' (the "
                   "MOSES training set of the molsets package); processed once into shards on disk that training "
                   "streams, cached by content, split 90/5/5 with a fixed seed")
    p.add_argument("--shard-size", type=_positive, default=10_000, metavar="N",
                   help="file records per on-disk shard of --data (under DDP each process reads its own shards)")
    p.add_argument("--conformer-workers", type=_positive, metavar="N",
                   help="processes making conformers for --data (default: every core)")
    p.add_argument("--init-from", metavar="MODEL", help="start from the EMA weights of a built-in model (qm9, moses) "
                   "or a checkpoint with the same network (a condition embedding it lacks starts at zero)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _stop_on_signals(trainer) -> None:
    """SIGTERM or a first Ctrl-C: finish the step, checkpoint, exit cleanly; a second Ctrl-C stops at once."""
    import signal

    def handler(signum, frame):
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.request_stop()
        print("moldiff train: stopping after this step (checkpoint follows)", file=sys.stderr)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_train(args) -> int:
    if args.run_dir.exists() and not args.run_dir.is_dir():
        raise UserError(f"--run-dir {args.run_dir} is a file, not a folder")

    from moldiff.checkpoint import CheckpointError, load_checkpoint
    from moldiff.config import load_config
    from moldiff.io_utils import remove_stale_tmp
    from moldiff.runtime import resolve_bf16, resolve_device, set_threads

    try:
        resolve_device(args.device)  # before the dataset is processed or anything is built
        if args.resume:  # an exported sampling file or a damaged checkpoint: said at once, before the data
            load_checkpoint(args.run_dir / "checkpoint.pt", kind="training")
        cfg = None if args.resume else load_config(args.preset, args.config)
        if args.init_from:
            if args.resume:
                raise ValueError("--init-from starts a new run; --resume continues one: use one of them")
            from moldiff.pretrained import resolve_model

            load_checkpoint(resolve_model(args.init_from), kind="inference")  # said at once, before the data
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=args.init_from))
    except (ValueError, CheckpointError) as err:
        raise UserError(str(err)) from None
    for folder in (args.run_dir, args.run_dir / "snapshots"):
        if folder.is_dir():
            remove_stale_tmp(folder)
    from moldiff.train import Trainer

    try:
        set_threads(args.threads or (cfg.train.num_threads if cfg else None))
        trainer = Trainer(cfg, args.run_dir, args.data_dir, args.limit, args.device, args.resume,
                          progress=not args.no_progress, workers=args.workers,
                          snapshot_every=args.snapshot_every, kernel=args.kernel, data_file=args.data,
                          shard_size=args.shard_size, conformer_workers=args.conformer_workers)
        bf16 = trainer.cfg.train.bf16 if args.bf16 is None else args.bf16
        trainer.override(eval_every_epochs=args.eval_every, eval_samples=args.eval_samples,
                         batch_size=args.batch_size, lr=args.lr, bf16=resolve_bf16(bf16, trainer.device))
        if args.checkpoint_every is not None:
            minutes, steps = args.checkpoint_every
            trainer.override_checkpointing(minutes=minutes, steps=steps)
        _stop_on_signals(trainer)
    except (ValueError, CheckpointError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    except (RuntimeError, KeyError, TypeError) as err:
        if not args.resume:
            raise
        # the checkpoint passed the structure check but its weights or optimizer state do not fit its config
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{args.run_dir / 'checkpoint.pt'} does not fit its own config: "
                        f"{text[:160] + '…' if len(text) > 160 else text}") from None
    try:
        state = trainer.fit(args.max_steps, args.max_hours)
    except ValueError as err:  # e.g. a training split smaller than one batch
        raise UserError(str(err)) from None
    if trainer.rank == 0:
        print(f"step {state.step}, epoch {state.epoch}, {state.hours:.3f} h; checkpoint "
              f"{args.run_dir / 'checkpoint.pt'}")
    return 0


# ---------------------------------------------------------------- sample
def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate molecules (SDF, XYZ or SMILES by suffix; optional PNG grid)")
    p.add_argument("-n", "--num", type=int, default=10, help="number of molecules (10)")
    p.add_argument("-o", "--output", type=Path, default=Path("molecules.sdf"), help="output .sdf/.xyz/.smi")
    p.add_argument("--model", default="qm9", help="a built-in model, qm9 (default; QM9, up to 9 heavy atoms), "
                   "moses (drug-like, MOSES) or qm9-cond (QM9 on request: --condition), or a checkpoint file")
    p.add_argument("--checkpoint", help="checkpoint file (the same as --model FILE)")
    p.add_argument("--steps", type=int, help="sampler steps S ≤ T (default: all T)")
    p.add_argument("--ddim", action="store_true", help="deterministic DDIM-style sampler")
    p.add_argument("--spacing", choices=[AUTO, *SPACINGS], default=AUTO,
                   help="with --steps: spread the steps evenly, or most of them at low noise (quadratic, cubic); "
                        "auto (default): uniform for all T steps, quadratic for fewer (benchmarks/README.md)")
    p.add_argument("--solver", choices=[AUTO, *SOLVERS], default=AUTO,
                   help="the reverse step: the chain's own (ancestral), DPM-Solver++(2M) on the probability-flow "
                        "ODE, or SDE-DPM-Solver++(2M); auto (default): ancestral for all T steps and with --ddim, "
                        "sde-dpm2m for fewer, the best measured (--steps 20: 20 network evaluations; "
                        "benchmarks/results/few_step.md)")
    p.add_argument("--noise-scale", type=float, default=DEFAULT_NOISE_SCALE, metavar="F",
                   help=f"factor on the fresh coordinate noise of the reverse steps from --noise-scale-from on "
                        f"({DEFAULT_NOISE_SCALE:g}; 1: the chain itself; lower: closer to the model's most likely "
                        "geometry; atom types, charges and bonds keep their noise; benchmarks/results/noise_scale.md)")
    p.add_argument("--noise-scale-from", type=float, default=DEFAULT_NOISE_SCALE_FROM, metavar="FRACTION",
                   help=f"where --noise-scale starts: the steps from t ≤ FRACTION·T down ({DEFAULT_NOISE_SCALE_FROM:g};"
                        " 1: every step; over the whole chain a low scale also changes which molecules come out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0). Molecule k has its own seed from "
                   "(seed, k): the same seed gives the same molecules whatever -n and --batch-size are, up to the "
                   "rounding of batched arithmetic (< 0.05 Å), on the same device and thread count")
    p.add_argument("--atoms", type=int, help="atoms per molecule, heavy atoms for a model with implicit hydrogens "
                   "(default: drawn from the training p(N))")
    p.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                   help="ask a conditional model for a property value (repeat for several); qm9-cond takes "
                        "alpha (Bohr^3), gap, homo, lumo (Hartree), mu (Debye) and Cv (cal/(mol K)), QM9's units, "
                        "e.g. --condition gap=0.25 --condition mu=2.5")
    p.add_argument("--guidance", type=float, metavar="W", help="classifier-free guidance weight of --condition "
                   f"({guidance_help()}; measured: benchmarks/results/conditional_guidance_all.md; "
                   "0: the conditional model alone)")
    p.add_argument("--batch-size", type=int, default=250, help="molecules per batch (250)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 matrix multiplies in the network (coordinates stay fp32): about 1.6× faster on "
                        "CPUs with bf16 instructions; quality in benchmarks/README.md")
    p.add_argument("--refine", type=int, default=0, metavar="N",
                   help="N more network evaluations after the chain that move the coordinates to the model's own "
                        "clean estimate of them (t from 0.06 T down to 0.01 T; atoms and bonds unchanged; 0: off, "
                        "the default; see benchmarks/results/refine.md)")
    p.add_argument("--relax", choices=["none", "mmff"], default="none",
                   help="polish the coordinates with MMFF94 before writing (none: the model's own geometry, the "
                        "default; mmff: hydrogens then everything relaxed, as the strain judge relaxes; molecules "
                        "MMFF94 cannot take are written as generated, with moldiff_relaxed 0)")
    p.add_argument("--valid-only", action="store_true", help="write only molecules that RDKit sanitises")
    p.add_argument("--png", type=Path, help="also draw a grid of the molecules to this PNG file")
    p.add_argument("--trajectory", type=Path, metavar="XYZ", help="also write the reverse chain of the first "
                   "molecule as a multi-frame XYZ file (one frame per step, the final x̂ last; viewers play it "
                   "as a movie)")
    p.add_argument("--device", help="cpu, cuda … (default: CUDA where present)")
    p.add_argument("--threads", type=_positive, help="CPU threads (default: the cores that are idle now; the "
                   "same seed gives the same molecules at the same thread count)")
    p.add_argument("--resume", action="store_true", help="complete an interrupted run of the same command (its "
                   "finished batches are in OUTPUT.partial.sdf)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_conditions(texts: Sequence[str]) -> dict[str, float]:
    """``--condition NAME=VALUE`` options as a request; one-line errors for a malformed or repeated one."""
    from moldiff.conditioning import parse_condition

    request: dict[str, float] = {}
    for text in texts:
        try:
            name, value = parse_condition(text)
        except ValueError as err:
            raise UserError(str(err)) from None
        if name in request:
            raise UserError(f"--condition {name} is given twice")
        request[name] = value
    return request


def check_outputs(output: Path, png: Path | None) -> None:
    """The output (.sdf/.xyz/.smi) and the optional --png picture can be written."""
    if output.suffix.lower() not in (".sdf", ".xyz", ".smi"):
        raise UserError(f"{output}: unknown output type {output.suffix!r} (use .sdf, .xyz or .smi)")
    _writable(output)
    if png:
        if png.suffix.lower() != ".png":
            raise UserError(f"--png {png}: the picture must be a .png file")
        _writable(png)


def run_sample(args) -> int:
    if args.num <= 0:
        raise UserError(f"-n must be a positive number of molecules, got {args.num}")
    if args.steps is not None and args.steps <= 0:
        raise UserError(f"--steps must be a positive number of steps, got {args.steps}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if not args.noise_scale >= 0:  # NaN fails too
        raise UserError(f"--noise-scale must be a number ≥ 0, got {args.noise_scale}")
    if args.refine < 0:
        raise UserError(f"--refine must be a number of network evaluations ≥ 0, got {args.refine}")
    if not 0 <= args.noise_scale_from <= 1:
        raise UserError(f"--noise-scale-from must be a fraction of the chain in [0, 1], got {args.noise_scale_from}")
    check_outputs(args.output, args.png)
    args.request = parse_conditions(args.condition)
    if args.guidance is not None and not args.request:
        raise UserError("--guidance weighs a --condition: give one (e.g. --condition gap=0.25)")
    if args.trajectory:
        if args.trajectory.suffix.lower() != ".xyz":
            raise UserError(f"--trajectory {args.trajectory}: the trajectory must be an .xyz file")
        _writable(args.trajectory)

    from moldiff.api import load  # the heavy imports, once the arguments are known to be good
    from moldiff.checkpoint import CheckpointError
    from moldiff.chem.relax import relax
    from moldiff.io_utils import atomic_write_text, remove_stale_tmp
    from moldiff.runtime import resolve_bf16, set_threads
    from moldiff.sampling import conditioned, generate_batches

    from moldiff.pretrained import MODELS, resolve_model

    try:
        model_path = Path(args.checkpoint) if args.checkpoint else resolve_model(args.model)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    builtin = None if args.checkpoint or args.model not in MODELS else args.model
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: the run shared out over the processes
        if args.resume or args.trajectory:
            raise UserError("--resume and --trajectory are for one process; run them without torchrun")
        from moldiff.sample_shards import run_sharded

        try:
            return run_sharded(args, model_path)
        except (ValueError, CheckpointError, FileNotFoundError) as err:
            raise UserError(str(err)) from None
    remove_stale_tmp(args.output.resolve().parent)
    set_threads(args.threads)
    # finished batches, as the output's own records (the output is their text plus the rest: exactly what an
    # uninterrupted run writes), and the record of the run beside them
    partial = args.output.with_name(args.output.name + ".partial" + args.output.suffix)
    sidecar = args.output.with_name(args.output.name + ".partial.json")
    params = {"checkpoint": builtin or str(model_path.resolve()),
              "checkpoint_sha256": _sha256(model_path), "n": args.num,
              "seed": args.seed, "steps": args.steps, "spacing": args.spacing, "solver": args.solver, "ddim": args.ddim,
              "noise_scale": args.noise_scale, "noise_scale_from": args.noise_scale_from,
              "atoms": args.atoms, "valid_only": args.valid_only, "bf16": args.bf16, "batch_size": args.batch_size,
              **({"relax": args.relax} if args.relax != "none" else {}),
              **({"refine": args.refine} if args.refine else {}),
              **({"condition": args.request, "guidance": args.guidance} if args.request else {})}
    text, done, kept, n_valid = _resume_state(args, partial, sidecar, params)
    if done and args.trajectory:
        raise UserError("--trajectory records molecule 0, which the interrupted run made already: resume without it")
    fmt = args.output.suffix.lower().lstrip(".")
    report: dict = {}
    skipped: list[str] = []
    shown: list = []  # the molecules to draw (--png), at most 100
    n_relaxed = 0  # by --relax, in this invocation
    if args.png and done:
        shown = _read_back(partial, kept)

    def record() -> None:
        data = text.encode("utf-8")
        atomic_write_text(sidecar, json.dumps({**params, "done": done, "kept": kept, "valid": n_valid,
                                               "bytes": len(data), "sha256": _sha256_bytes(data)}) + "\n")

    previous = _on_sigterm()
    try:
        gen = load(model_path, args.device)
        from moldiff.hooks import Trajectory
        traj = Trajectory(len(gen.config.features.atom_types)) if args.trajectory else None
        if args.steps is not None and not 1 <= args.steps <= gen.chain.T:
            raise ValueError(f"--steps must be between 1 and {gen.chain.T}, got {args.steps}")
        solver, spacing = default_sampler(args.steps, gen.chain.T, args.ddim, args.solver, args.spacing)
        gen, extra = conditioned(gen, args.request, args.num, args.guidance,
                                 warn=lambda m: print(f"warning: {m}", file=sys.stderr))
        batches = generate_batches(gen, args.num, steps=args.steps, seed=args.seed, n_atoms=args.atoms,
                                   batch_size=args.batch_size, deterministic=args.ddim, spacing=spacing,
                                   solver=None if solver == "ancestral" else solver,
                                   bf16=resolve_bf16(args.bf16, gen.device), progress=not args.no_progress,
                                   hooks=[traj] if traj else (), start=done, report=report,
                                   noise_scale=args.noise_scale, noise_scale_from=args.noise_scale_from,
                                   refine=args.refine, **extra)
        record()  # before the first batch: a partial file is never without its record
        for first in range(done, args.num, args.batch_size):
            batch = [m for m in relax(next(batches), args.relax)
                     if not args.valid_only or m.GetIntProp("moldiff_valid")]
            n_relaxed += sum(m.GetIntProp("moldiff_relaxed") for m in batch if m.HasProp("moldiff_relaxed"))
            chunk, written, valid, messages = _records(batch, fmt, kept, args.output)
            text, kept, n_valid = text + chunk, kept + written, n_valid + valid
            skipped.extend(messages)
            shown.extend(batch[:max(0, 100 - len(shown))] if args.png else [])
            atomic_write_text(partial, text)  # a crash loses at most the batch in flight
            done = min(args.num, first + args.batch_size)
            record()
        atomic_write_text(args.output, text)
        partial.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    except (ValueError, CheckpointError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    except (KeyboardInterrupt, OSError) as err:
        kept_where = (f"molecules 0–{done - 1} of {args.num} are kept in {partial}: the same command with --resume "
                      "completes the run") if done and partial.exists() else ""
        if isinstance(err, KeyboardInterrupt):
            raise type(err)(kept_where) from None
        what = f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
        raise RunFailed(f"{what}{'; ' + kept_where if kept_where else ''}") from None
    finally:
        _restore_sigterm(previous)
    for message in skipped:
        print(message, file=sys.stderr)
    print(f"wrote {kept} molecules to {args.output} ({n_valid} of them sanitise in RDKit)")
    if args.relax != "none":
        print(f"--relax {args.relax}: {n_relaxed} molecules relaxed by MMFF94 in this run (moldiff_relaxed 1), the "
              "others written as generated; the model's own geometry is what a run without --relax writes")
    if report.get("redrawn") or report.get("dropped"):
        from moldiff.sampling import MAX_ATTEMPTS

        print(f"{report['redrawn']} samples went to NaN/inf and were redrawn alone; {report['dropped']} dropped "
              f"after {MAX_ATTEMPTS} draws", file=sys.stderr)
    if traj is not None:
        from moldiff.hooks import xyz_frames

        frames = traj.frames(gen.config.features.atom_types)
        atomic_write_text(args.trajectory, xyz_frames(frames))
        print(f"wrote the reverse chain of molecule 0 ({len(frames)} frames) to {args.trajectory}")
    if args.png:
        if not shown:
            why = f" (none of the {args.num} samples sanitises)" if args.valid_only else ""
            print(f"no molecule to draw{why}: {args.png} not written", file=sys.stderr)
        else:
            from moldiff.draw import draw_grid
            draw_grid(shown, args.png)
            print(f"drew {min(len(shown), 100)} molecules to {args.png}")
    return 0


def _sha256(path: Path | None) -> str | None:
    """The checkpoint's content hash (the built-in model's when ``path`` is None): a run resumes on the same
    weights only. None when the file cannot be read (loading it reports why)."""
    import hashlib

    if path is None:
        from moldiff.pretrained import pretrained_path

        try:
            path = pretrained_path("qm9")
        except (ValueError, FileNotFoundError):
            return None
    digest = hashlib.sha256()
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _on_sigterm():
    """SIGTERM raises :class:`Terminated` where the run is, so that it ends with a message saying what is kept
    (the default handler would end it silently). Returns the previous handler (None off the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _records(mols: list, fmt: str, before: int, output: Path) -> tuple[str, int, int, list[str]]:
    """The output records of ``mols`` (what write_molecules writes for them; records concatenate), how many were
    written and how many of those sanitise, and a message per molecule that could not be written (numbered
    after the ``before`` already written)."""
    from rdkit import rdBase

    from moldiff.chem.writers import WRITERS

    chunks, valid, messages = [], 0, []
    with rdBase.BlockLogs():
        for mol in mols:
            try:
                chunks.append(WRITERS[fmt](mol))
            except (ValueError, RuntimeError) as exc:
                messages.append(f"{output}: molecule {before + len(chunks) + len(messages) + 1}: {exc}")
                continue
            valid += bool(mol.HasProp("moldiff_valid") and mol.GetIntProp("moldiff_valid"))
    return "".join(chunks), len(chunks), valid, messages


def _read_back(path: Path, limit: int) -> list:
    """Up to 100 of the first ``limit`` molecules of a partial file, to draw them (--png on --resume)."""
    from moldiff.chem.io import read_molecules

    return read_molecules(path)[0][:min(limit, 100)]


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _resume_state(args, partial: Path, sidecar: Path, params: dict) -> tuple[str, int, int, int]:
    """(text of the finished records, molecules done, records kept, of them valid) of the run to continue;
    ("", 0, 0, 0) for a new run. A new run refuses to overwrite the finished batches of an interrupted one;
    --resume refuses a run with other parameters, or a partial file that is not the one its record describes.

    The partial file only grows, by whole batches, and its record follows each write: a record describes a
    prefix of the file (all of it unless the run died between the two writes), checked by length and hash."""
    if sidecar.exists() and not partial.exists():  # a run that ended before its first batch, or between its two
        sidecar.unlink(missing_ok=True)            # clean-ups: the record describes no data
    if not args.resume:
        if sidecar.exists():
            raise UserError(f"{partial} holds the finished batches of an interrupted run: add --resume to "
                            "complete it, or delete it to start again")
        if partial.exists():
            raise UserError(f"{partial} exists without its record {sidecar.name}: delete it to start again")
        return "", 0, 0, 0
    if not sidecar.exists():
        if partial.exists():
            raise UserError(f"{partial} exists without its record {sidecar.name}: delete it to start again")
        print(f"nothing to resume for {args.output} (no {sidecar.name}; the run was stopped before its first "
              f"batch, or has finished): making all {args.num}", file=sys.stderr)
        return "", 0, 0, 0
    try:
        state = json.loads(sidecar.read_text())
        done, kept, valid = int(state["done"]), int(state["kept"]), int(state["valid"])
        size, digest = int(state["bytes"]), str(state["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{sidecar} is damaged: delete it and {partial} to start again") from None
    changed = [k for k in params if state.get(k) != params[k]]
    if changed:
        raise UserError(f"--resume: this command differs from the interrupted run in {', '.join(changed)} "
                        f"(it had {', '.join(f'{k}={state.get(k)!r}' for k in changed)})")
    try:
        data = partial.read_bytes()[:size]
    except OSError as err:
        raise UserError(f"cannot read {partial}: {err.strerror or err}") from None
    if len(data) != size or _sha256_bytes(data) != digest:
        raise UserError(f"{partial} is not the file its record {sidecar.name} describes (changed since?): delete "
                        "both to start again")
    print(f"resuming: molecules 0–{done - 1} of {args.num} are done ({kept} kept); making the other {args.num - done}"
          if done else f"resuming: no batch had finished; making all {args.num}", file=sys.stderr)
    return data.decode("utf-8"), done, kept, valid


# ---------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    from moldiff import evaluate

    p = sub.add_parser("evaluate", help="score molecules: stability, validity, uniqueness, novelty, distances")
    evaluate.add_arguments(p)


def run_evaluate(args) -> int:
    from moldiff import evaluate

    return evaluate.run(args)


# ---------------------------------------------------------------- export
def add_export(sub) -> None:
    p = sub.add_parser("export", help="strip a training checkpoint to the small file sampling needs")
    p.add_argument("checkpoint", type=Path, help="checkpoint written by moldiff train")
    p.add_argument("output", type=Path, help="output .pt file (e.g. moldiff/pretrained/qm9.pt)")


def run_export(args) -> int:
    from moldiff.checkpoint import CheckpointError, inference_blob, load_checkpoint, save_checkpoint

    from moldiff.io_utils import remove_stale_tmp

    _writable(args.output)
    try:
        blob = inference_blob(load_checkpoint(args.checkpoint, kind="inference"))
    except CheckpointError as err:
        raise UserError(str(err)) from None
    remove_stale_tmp(args.output.resolve().parent, args.output.name)
    save_checkpoint(blob, args.output)
    size = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB; step {blob.get('step')}, {blob.get('hours', 0):.2f} h)")
    return 0


EPILOG = """exit codes: 0 success; 1 a run that failed (e.g. an I/O error mid-run, a Python without moldiff's
dependencies); 2 usage errors and bad input (unknown options, devices this machine lacks, unreadable or foreign
checkpoints, bad config files, bad molecule files, impossible requests); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moldiff")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from moldiff import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moldiff", description="3D molecule generation with graph diffusion", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"moldiff {_version()}")
    sub = parser.add_subparsers(dest="command")
    add_train(sub)
    add_sample(sub)
    from moldiff.cli_inpaint import add_inpaint, run_inpaint

    add_inpaint(sub)
    RUNNERS["inpaint"] = run_inpaint
    add_evaluate(sub)
    add_export(sub)
    return parser


RUNNERS = {"train": run_train, "sample": run_sample, "evaluate": run_evaluate, "export": run_export}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ModuleNotFoundError as err:
        return _missing_dependency(err, "moldiff")
    args = parser.parse_args(argv)
    if args.command is None:  # bare `moldiff`: the help, and the usage exit code
        parser.print_help()
        return EXIT_USAGE
    from moldiff.runtime import tune_allocator

    tune_allocator()  # process-level setting, made here at the entry and never by library code
    try:
        return RUNNERS[args.command](args)
    except UserError as err:
        print(f"moldiff {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as err:
        print(f"moldiff {args.command}: failed: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except Terminated as err:
        print(f"moldiff {args.command}: terminated{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 143
    except KeyboardInterrupt as err:
        print(f"moldiff {args.command}: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        return _missing_dependency(err, f"moldiff {args.command}")
    except OSError as err:  # a disk full, a permission lost mid-run: a failure, reported in one line
        print(f"moldiff {args.command}: failed: {err.strerror or err} ({err.filename or ''})", file=sys.stderr)
        return EXIT_FAILURE


def _missing_dependency(err: ModuleNotFoundError, who: str) -> int:
    """One line (exit code 1) for a Python that lacks one of moldiff's dependencies; other import errors are bugs."""
    if (err.name or "").split(".")[0] not in _DEPENDENCIES:
        raise err
    print(f"{who}: failed: this Python ({sys.executable}) has no {err.name!r}, which moldiff needs: activate the "
          "environment moldiff is installed in, or set one up (README, Set-up: pip install -e .)", file=sys.stderr)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
