"""GloVe's batched torch kernel on one GPU against the numba kernel, on the same co-occurrence matrix.

    .venv/bin/python benchmarks/glove_gpu.py /tmp/bench-corpus --device cuda [--x-max 100] [--epochs 15]
    .venv/bin/python benchmarks/glove_gpu.py /tmp/bench-corpus --device numba   # the numba kernel, 1 thread

The production path runs these kernels inside Ray Train workers (workers/glove/train.py); this script
calls them directly so that it runs where only torch, numba, numpy and pyarrow are installed (a
GPU machine without the rest of the stack). It computes the statistics in process with the
same per-shard kernels (pipelines/statistics/steps.py, an in-process engine), loads the whole matrix,
and per epoch trains on a fresh permutation, as glove.c does after its `shuffle`. Prints per-epoch
loss (glove.c's cost), entries/s, WordSim-353 and analogies of w + w~.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.evaluate import evaluate
from firth.pipelines.statistics.steps import Location, compute_statistics
from firth.workers.glove.model import init_state, published_vectors, sgd_numba, sgd_torch


class InProcess:
    """The engine seam's smallest implementation: run each item here, in order."""

    def map(self, fn, items, label):
        print(f"  {label}: {len(items)} items", flush=True)
        return [fn(item) for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="folder of *.jsonl.gz shards (make-corpus.sh)")
    parser.add_argument("--device", default="cuda", help="numba (the per-entry CPU kernel) or a torch device "
                        "for the batched kernel (cuda, cpu)")
    parser.add_argument("--x-max", type=float, default=100.0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16_384, help="entries per torch batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        config = JobConfig.model_validate({
            "table": "bench", "corpus": {"shards": [f"{args.corpus.rstrip('/')}/*.jsonl.gz"]},
            "statistics": {"min_count": 5, "window": 10, "output": folder},
            "model": {"dim": 100, "x_max": args.x_max, "epochs": args.epochs, "seed": args.seed}})
        start = time.perf_counter()
        summary = compute_statistics(list_shards(config.corpus), config, InProcess(), Location(folder, {}))
        statistics_s = time.perf_counter() - start
        cooc = pq.read_table(summary.cooccurrence_uri)  # (n,) i, j, x
        tokens = pq.read_table(f"{folder}/vocabulary.parquet")["token"].to_pylist()
    i, j, x = (cooc[c].to_numpy() for c in ("i", "j", "x"))
    V, model = summary.vocab_size, config.model
    print(f"statistics {statistics_s:.1f} s: V={V}, {len(x):,} entries", flush=True)

    state = init_state(V, model.dim, model.seed)  # (2, 2V, D+1)
    rng = np.random.default_rng(model.seed)
    losses, epoch_s = [], []
    if args.device == "numba":
        params, gradsq = state[0], state[1]
    else:
        import torch
        device = torch.device(args.device)
        params, gradsq = (torch.from_numpy(a).to(device) for a in state)
        ti, tj, tx = (torch.from_numpy(a).to(device) for a in (i.astype(np.int64), j.astype(np.int64), x))
    for epoch in range(model.epochs):
        order = rng.permutation(len(x))
        begin = time.perf_counter()
        if args.device == "numba":
            cost = sgd_numba(params, gradsq, i[order], j[order], x[order], V, model.x_max, model.alpha,
                             model.learning_rate)
        else:
            perm = torch.from_numpy(order).to(device)
            cost = sgd_torch(params, gradsq, ti[perm], tj[perm], tx[perm], V, model.x_max, model.alpha,
                             model.learning_rate, batch_size=args.batch_size)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        epoch_s.append(time.perf_counter() - begin)
        losses.append(cost / len(x))
        print(f"epoch {epoch + 1}: loss {losses[-1]:.5f}  {len(x) / epoch_s[-1] / 1e6:.1f} M entries/s", flush=True)
    final = params if args.device == "numba" else params.cpu().numpy()
    vectors = published_vectors(final, V)
    result = {"device": args.device, "x_max": args.x_max, "epochs": model.epochs, "batch_size": args.batch_size,
              "vocab_size": V, "entries": len(x), "statistics_s": round(statistics_s, 1),
              "training_s": round(sum(epoch_s), 1),
              "entries_per_s_millions": round(len(x) * model.epochs / sum(epoch_s) / 1e6, 2),
              "epoch_losses": [round(v, 6) for v in losses], "metrics": evaluate(tokens, vectors, 30_000)}
    if args.device.startswith("cuda"):
        import torch
        result["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
