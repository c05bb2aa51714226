"""Held-out NLL of a trained recipe run, solved eagerly against replayed as CUDA graphs, alone and in threads.

A study's cell phase runs exact NLL in many threads of one process (the ``threads`` executor):
each network evaluation and its vector-Jacobian products are hundreds of kernels launched from
Python under one interpreter lock. ``heldout_nll(graph=True)`` records each batch's solve once
and replays it. This script trains one run of ``--arch``'s recipe for ``--train-steps`` steps,
then times ``heldout_nll`` on ``--rows`` test rows of builtin:sonar-gsm8k-1k with
``graph=False`` and ``graph=True``, taking turns ``--repeats`` times, first alone, then with
``--threads`` copies at once (one CUDA stream each, as the executor runs them). Both ways must
give the same NLL up to the GPU's rounding; the script prints the largest difference.

    python benchmarks/bench_nll.py --arch mamba --threads 4 --out DIR
    python benchmarks/bench_nll.py --arch mlp-tiny --device cpu --rows 16 --steps 2 --train-steps 5   # smoke test

Writes DIR/bench_nll.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowstudy.data import load_dataset  # noqa: E402
from flowstudy.metrics.likelihood import heldout_nll  # noqa: E402
from flowstudy.train import Trainer  # noqa: E402
from flowstudy.run import load_run  # noqa: E402
from flowstudy.train.config import resolve_config  # noqa: E402

DATA = "builtin:sonar-gsm8k-1k"


def trained_run(arch: str, steps: int, device: str, root: str):
    cfg = resolve_config(None, {"arch": arch, "steps": steps, "device": device, "val_every": 10**9})
    Trainer(cfg, f"{root}/run", progress=False).fit()
    return load_run(f"{root}/run", "last", device=device)


def timed(fn, threads: int, device: str) -> tuple[float, list]:
    """Wall seconds of ``threads`` concurrent calls of fn (each on its own CUDA stream), and their results."""
    results: list = [None] * threads

    def work(i: int) -> None:
        if device == "cuda":
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                results[i] = fn()
            stream.synchronize()
        else:
            results[i] = fn()

    tic = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - tic, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mamba")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20, help="RK4 steps (the study's nll_steps)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device (--device cpu for a smoke test)")
    if args.device == "cuda":
        from flowstudy.cudagraphs import prepare_threads

        prepare_threads(torch.device("cuda"))
    test = load_dataset(f"{DATA}:test").embeddings
    train = load_dataset(DATA).embeddings
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as root:
        run = trained_run(args.arch, args.train_steps, args.device, root)
        nll = {graph: (lambda graph=graph: heldout_nll(run, test, train, estimator="exact", steps=args.steps, rows=args.rows, graph=graph))
               for graph in (False, True)}
        values = {}
        for threads in sorted({1, args.threads}):
            for _ in range(args.repeats):
                for graph, fn in nll.items():
                    seconds, results = timed(fn, threads, args.device)
                    values.setdefault(graph, []).extend(r.model.nats_per_dim for r in results)
                    rows.append({"threads": threads, "graph": graph, "graph_ran": results[0].graph, "seconds": seconds,
                                 "nll_per_s": threads / seconds, "nfe": results[0].nfe})
                    print(json.dumps(rows[-1]), flush=True)
    diff = max(abs(a - b) for a in values[False] for b in values[True])
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    header = f"{device}; torch {torch.__version__}; {args.arch} recipe, {args.train_steps} training steps; {args.rows} rows, RK4 {args.steps} steps, exact"
    print(f"\n{header}; largest NLL difference, eager vs graph: {diff:.2e} nats/dim\n")
    print("| threads | graph asked | graphs recorded | wall s (all threads) | NLL evaluations / s |")
    print("| ---: | --- | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['threads']} | {r['graph']} | {r['graph_ran']} | {r['seconds']:.2f} | {r['nll_per_s']:.3f} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_nll.json").write_text(json.dumps({"header": header, "max_difference": diff, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
