"""NLL bound (nats per molecule) of QM9 test molecules under a trained model.

    python benchmarks/nll.py --checkpoint data/campaign/qm9-bonds/checkpoint.pt -n 1000
"""
from __future__ import annotations

import json
import time

from moldiff.api import load, load_pretrained
from moldiff.data.qm9 import QM9, load_processed
from moldiff.data.store import without_hydrogens
from moldiff.likelihood import estimate_nll

from common import RESULTS, machine_info, parser, set_threads, write_json


def main() -> None:
    ap = parser(__doc__, threads=True, json=RESULTS / "nll.json")
    ap.add_argument("--checkpoint", help="checkpoint (default: the shipped 'qm9' model)")
    ap.add_argument("-n", type=int, default=1000, help="test molecules (the first n of the test split)")
    ap.add_argument("--t-samples", type=int, default=1, help="timesteps per molecule (stratified)")
    args = ap.parse_args()
    set_threads(args.threads)
    info = machine_info()
    gen = load(args.checkpoint) if args.checkpoint else load_pretrained("qm9")
    blob = load_processed()
    if gen.config.features.implicit_h:  # heavy-atom graphs: the bound of what the chain carries
        blob = without_hydrogens(blob)
    test = QM9("test", blob=blob)
    start = time.perf_counter()
    out = estimate_nll(gen, [test[k] for k in range(min(args.n, len(test)))], t_samples=args.t_samples)
    out.update(seconds=round(time.perf_counter() - start, 1), model=gen.info, t_samples=args.t_samples,
               command=f"python benchmarks/nll.py{' --checkpoint ' + args.checkpoint if args.checkpoint else ''} -n {args.n} "
                       f"--t-samples {args.t_samples}" + (f" --threads {args.threads}" if args.threads else ""))
    write_json(args.json, out, info=info)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
