"""GloVe's CUDA kernel (workers/glove/kernel_cuda.py) on one GPU, or the CPU kernel, on the benchmark
corpus's co-occurrence matrix; no Ray.

    # the GPU check's input (benchmarks/gpu_check.py export): vocabulary.parquet, tokens/, evaluation files
    python3 benchmarks/glove_gpu.py --data DIR --device cuda [--x-max 100] [--epochs 15] [--out FILE]
    # a statistics folder of a firth run (vocabulary.parquet, cooccurrence/; window 10 for the reference figures)
    python3 benchmarks/glove_gpu.py --stats DIR --device cuda
    .venv/bin/python benchmarks/glove_gpu.py --data DIR --device numba --epochs 3   # the CPU kernel, one thread
    .venv/bin/python benchmarks/glove_gpu.py --data TINY --device sim --epochs 1    # the CUDA kernel in numba's simulator

It needs what the GPU machine has: torch, numba (numba-cuda there), numpy, pyarrow, scipy, fsspec
(`firth` importable: benchmarks/gpu_check.sh puts it on the path). With --data the matrix is counted
from the tokens tables by the statistics' own kernel (pipelines/statistics/kernels/cooccur.py;
window 10, harmonic, the settings of glove_bench.py), one process per tokens file, merged exactly:
the matrix `firth run` trains on. Then per epoch: a permutation drawn on the device and one kernel
launch (one worker: no sync points), the cost read once per epoch. Training time is the sum of the
epochs' times, each ended by that read; the kernel's JIT compile is done before, by a one-entry launch.
Prints per-epoch loss (glove.c's cost), entries/s, WordSim-353 and analogies of w + w~.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

WINDOW = 10  # glove_bench.py's statistics.window
SIM_LAUNCH = {"blocks": 1, "warps": 8, "lanes": 4}  # the simulator runs a thread per Python thread: fewer


def count_tokens_file(args: tuple[str, int, int]):
    """The co-occurrence of one tokens file (documents as lists of in-vocabulary ids), exact units."""
    from firth.pipelines.statistics.kernels.cooccur import cooccurrence

    path, vocab_size, window = args
    column = pq.read_table(path, columns=["token_ids"]).column(0).combine_chunks()
    return cooccurrence(column.values.to_numpy(), column.offsets.to_numpy(), window, "harmonic", 1,
                        vocab_size=vocab_size)[0]


def cooccurrence_of_tokens(folder: str, vocab_size: int, window: int) -> tuple[np.ndarray, ...]:
    from firth.pipelines.statistics.kernels.cooccur import merge_cooccurrence

    files = sorted(glob.glob(os.path.join(folder, "tokens", "shard-*.parquet")))
    if not files:
        raise SystemExit(f"{folder}: no tokens/shard-*.parquet; export them with benchmarks/gpu_check.py export")
    with ProcessPoolExecutor(min(len(files), os.cpu_count() or 1)) as pool:
        merged = merge_cooccurrence(list(pool.map(count_tokens_file, [(f, vocab_size, window) for f in files])))
    return merged.i, merged.j, merged.x


def read_matrix(args) -> tuple[list[str], tuple[np.ndarray, ...]]:
    folder = args.data or args.stats
    tokens = pq.read_table(os.path.join(folder, "vocabulary.parquet"))["token"].to_pylist()
    if args.data:
        return tokens, cooccurrence_of_tokens(args.data, len(tokens), args.window)
    table = pq.read_table(os.path.join(args.stats, "cooccurrence"))
    return tokens, tuple(table[c].to_numpy() for c in ("i", "j", "x"))


def train(state: np.ndarray, entries: tuple[np.ndarray, ...], vocab_size: int, args) -> tuple[list[float], list[float]]:
    """Epoch losses and seconds; `state` (2, 2V, D+1) holds the result."""
    from firth.workers.glove.model import sgd_numba

    i, j, x = entries
    n, losses, seconds = len(x), [], []
    rng = np.random.default_rng(args.seed)
    if args.device == "numba":
        for _ in range(args.epochs):
            order = rng.permutation(n)
            begin = time.perf_counter()
            cost = sgd_numba(state[0], state[1], i[order], j[order], x[order], vocab_size, args.x_max, 0.75, 0.05)
            seconds.append(time.perf_counter() - begin)
            losses.append(cost / n)
            print(f"epoch {len(losses)}: loss {losses[-1]:.5f}  {n / seconds[-1] / 1e6:.2f} M entries/s", flush=True)
        return losses, seconds

    import torch

    from firth.workers.glove.kernel_cuda import DeviceGlove

    device = torch.device("cpu" if args.device == "sim" else args.device)
    launch = SIM_LAUNCH if args.device == "sim" else {}
    warm = torch.from_numpy(state.copy()).to(device)  # compiles the kernel on a throw-away copy
    DeviceGlove(warm, i[:1], j[:1], x[:1], vocab_size, args.x_max, 0.75, 0.05, **launch).train(0, 1)
    state_t = torch.from_numpy(state).to(device)  # in the simulator: `state`'s own memory
    on_device = DeviceGlove(state_t, i, j, x, vocab_size, args.x_max, 0.75, 0.05, **launch)
    for epoch in range(args.epochs):
        begin = time.perf_counter()
        on_device.shuffle(int(rng.integers(2**62)))
        on_device.train(0, n)
        losses.append(on_device.epoch_cost() / n)  # waits for the device
        seconds.append(time.perf_counter() - begin)
        print(f"epoch {epoch + 1}: loss {losses[-1]:.5f}  {n / seconds[-1] / 1e6:.1f} M entries/s", flush=True)
    state[...] = state_t.cpu().numpy()
    return losses, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="an exported folder: vocabulary.parquet, tokens/, evaluation files")
    source.add_argument("--stats", help="a statistics folder with vocabulary.parquet and cooccurrence/")
    parser.add_argument("--device", default="cuda", help="cuda[:N] (the CUDA kernel), sim (the same kernel in "
                        "numba's CUDA simulator, tiny inputs only) or numba (the per-entry CPU kernel, one thread)")
    parser.add_argument("--x-max", type=float, default=100.0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=WINDOW, help="co-occurrence window (--data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-entries", type=int, help="train on the first N entries only (a dry run in the simulator)")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    if args.device == "sim":
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba loads (the co-occurrence workers inherit it: harmless)

    from benchmarks.word2vec_vs_gensim import evaluation
    from firth.workers.glove.model import init_state, published_vectors

    start = time.perf_counter()
    tokens, entries = read_matrix(args)
    entries = tuple(a[:args.max_entries] for a in entries)
    prepare_s = time.perf_counter() - start
    vocab_size, n = len(tokens), len(entries[0])
    print(f"co-occurrence {prepare_s:.1f} s: V={vocab_size:,}, {n:,} entries", flush=True)
    state = init_state(vocab_size, args.dim, args.seed)
    losses, seconds = train(state, entries, vocab_size, args)
    result = {"device": args.device, "x_max": args.x_max, "epochs": args.epochs, "dim": args.dim,
              "window": args.window if args.data else "the statistics'",
              "vocab_size": vocab_size, "entries": n, "prepare_s": round(prepare_s, 1),
              "training_s": round(sum(seconds), 3), "entries_per_s_millions": round(n * args.epochs / sum(seconds) / 1e6, 2),
              "epoch_losses": [round(v, 6) for v in losses],
              **evaluation(tokens, published_vectors(state[0], vocab_size), args.data)}
    if args.device.startswith("cuda"):
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
