"""Multi-worker word2vec sync schemes: quality and bytes moved, with N logical workers in one process.

    # skip-gram at 1, 2, 4, 8 workers, "touched" combine, 16 syncs/epoch, on the bench statistics
    .venv/bin/python benchmarks/sync_schemes.py --stats /tmp/h7/fullstats --workers 1,2,4,8 --combine touched --syncs 16
    # explore on a subset: the first 3 tokens files, 2 epochs, several schemes at 4 workers
    .venv/bin/python benchmarks/sync_schemes.py --stats /tmp/h7/fullstats --files 3 --epochs 2 \
        --workers 4 --combine sum,touched,mean --syncs 4,16
    # the all-reduce time of each payload measured, gloo on loopback between 2 processes
    .venv/bin/python benchmarks/sync_schemes.py --gloo

Each logical worker is the real trainer's `_Word2VecWorker` (workers/word2vec/train.py: the
WorkerLoop with the CPU numba kernel, 1 thread, on its `deal`t share of the units, its own copy of
the state, its SparseDeltaSync at the harness's sync points), run side by side in threads by
workers/raytrain/logical.py, whose all-reduce sums over the logical workers' tensors where Ray
Train's workers call torch.distributed. The result is the bytes N Ray workers reach
(tests/workers/test_word2vec.py checks it against a 2-worker Ray run); quality does not depend on
speed, so this measures it without N machines.

Settings: benchmarks/word2vec_vs_gensim.py's (dim 100, window 5, negative 5, sample 1e-3,
5 epochs, alpha 0.025 -> 0.0001), skip-gram with negative sampling, seed 1. Evaluation:
pipelines/evaluate.py (WordSim-353 and SimLex-999 Spearman ρ, analogies over 30 k words).
Bytes per sync: the two all-reduce payloads of SparseDeltaSync, (rows,) int32 + (U, D) float32,
averaged over the run's syncs. Results merge into benchmarks/results/sync_schemes.json by
(files, epochs, workers, combine, syncs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

from benchmarks.results import RESULTS, machine, save
from benchmarks.word2vec_vs_gensim import SETTINGS, evaluation, read_statistics, units_of

GLOO_SIZES_MB = (0.6, 2.0, 8.0, 30.0, 60.0)  # payloads timed by --gloo (the dense state is ~59 MB)
# --project's assumptions (not measured here): per-GPU skip-gram speed, the target on one
# H100; all-reduce bus bandwidth within a node (NVLink 4, NCCL ring, well below its 450 GB/s peak)
# and between nodes (100 Gb/s Ethernet); a fixed latency per all-reduce call (SparseDeltaSync makes 2)
GPU_WORDS_PER_S = 20e6
LINKS_BYTES_PER_S = {"nvlink": 300e9, "ethernet_100g": 12.5e9}
CALL_LATENCY_S = 50e-6


def run(stats: str, files: int | None, epochs: int, workers: int, combine: str, syncs: int, block_words: int,
        seed: int) -> dict:
    """Train skip-gram with `workers` logical workers; quality and what the syncs moved."""
    import torch

    from firth.pipelines.config import Word2VecConfig
    from firth.workers.raytrain.logical import train_logical
    from firth.workers.word2vec.model import word_vectors
    from firth.workers.word2vec.train import _Word2VecWorker, worker_loop

    tokens, counts, paths = read_statistics(stats)
    whole = not files or files >= len(paths)
    paths = paths[:files] if files else paths
    config = Word2VecConfig(**(SETTINGS | {"epochs": epochs}), architecture="skipgram", num_workers=workers,
                            syncs_per_epoch=syncs, sync=combine, block_words=block_words, seed=seed)
    loop = worker_loop(str(Path(paths[0]).parent), tokens, counts, config, {}, units=units_of(paths))
    layout = loop["layout"]
    torch.set_num_threads(1)
    start = time.perf_counter()
    models, sums = train_logical(_Word2VecWorker, loop, workers, epochs)
    seconds = time.perf_counter() - start
    states = [m.worker.state for m in models]
    if any(not np.array_equal(states[0], s) for s in states[1:]):
        raise AssertionError("the logical workers' states differ after the last sync")
    sync = models[0].sync
    rows, dim = layout.n_rows, layout.dim
    total = sums.sum(axis=0)  # (loss sum, examples, words kept, words) over the epochs
    per_sync = sync.bytes_moved / max(sync.syncs, 1)
    return {"files": len(paths), "whole_corpus": whole, "words": int(total[3] / epochs), "epochs": epochs, "workers": workers,
            "combine": combine, "syncs_per_epoch": syncs if workers > 1 else 0, "block_words": block_words,
            "seed": seed, "loss": sums[-1][0] / max(sums[-1][1], 1.0), "seconds": seconds, "load_average": os.getloadavg(),
            "state_rows": rows, "rows_per_sync": sync.rows_moved / max(sync.syncs, 1),
            "bytes_per_sync": per_sync, "bytes_per_epoch": per_sync * (syncs if workers > 1 else 0),
            "dense_bytes_per_sync": rows * dim * 4,
            **evaluation(tokens, word_vectors(layout, states[0]), None)}


def gloo_times(sizes_mb: tuple[float, ...], repeats: int = 5) -> dict[str, float]:
    """Median seconds of one float32 SUM all-reduce of each size, gloo between 2 local processes."""
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_gloo_worker, args=(2, sizes_mb, repeats, queue), nprocs=2, join=True)
    return queue.get()


def _gloo_worker(rank: int, world: int, sizes_mb, repeats: int, queue) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("GLOO_PORT", "29533"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    times = {}
    for mb in sizes_mb:
        tensor = torch.ones(int(mb * 2**20 / 4))
        dist.all_reduce(tensor)  # warm-up: connections, buffers
        samples = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            samples.append(time.perf_counter() - start)
        times[f"{mb:g}"] = float(np.median(samples))
    dist.destroy_process_group()
    if rank == 0:
        queue.put(times)


def project(runs: list[dict]) -> list[dict]:
    """Expected words/s on N GPUs from each full-corpus run's syncs and bytes (a projection, the
    assumptions above): an epoch is words / (N x GPU_WORDS_PER_S) of training plus syncs_per_epoch
    ring all-reduces of bytes_per_sync, each 2 (N-1)/N x bytes / bandwidth + 2 call latencies."""
    out = []
    for run in runs:
        workers, words = run["workers"], run["words"]
        compute = words / (workers * GPU_WORDS_PER_S)
        row = {k: run[k] for k in ("workers", "combine", "syncs_per_epoch", "epochs", "bytes_per_sync",
                                   "bytes_per_epoch")}
        for link, bandwidth in LINKS_BYTES_PER_S.items():
            per_sync = (2 * (workers - 1) / workers * run["bytes_per_sync"] / bandwidth + 2 * CALL_LATENCY_S
                        if workers > 1 else 0.0)
            sync_s = per_sync * run["syncs_per_epoch"]
            row[link] = {"sync_s_per_epoch": sync_s, "words_per_s": words / (compute + sync_s),
                         "ideal_words_per_s": workers * GPU_WORDS_PER_S}
        out.append(row)
    return out


def merge(entries: list[dict], key: str) -> None:
    """Add runs (or the gloo figures) to results/sync_schemes.json, keeping earlier ones of other settings."""
    path = RESULTS / "sync_schemes.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    runs = {tuple(r[k] for k in ("files", "epochs", "workers", "combine", "syncs_per_epoch")): r
            for r in earlier.get("runs", [])}
    stamp = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    figures = {k: v for k, v in earlier.items() if k in ("gloo",)}
    if key == "gloo":
        figures["gloo"] = entries[0] | stamp | {"command": " ".join(sys.argv)}
    for entry in entries if key == "runs" else []:
        entry = entry | stamp | {"command": " ".join(sys.argv)}
        runs[tuple(entry[k] for k in ("files", "epochs", "workers", "combine", "syncs_per_epoch"))] = entry
    full = [r for r in runs.values() if r.get("whole_corpus") and r["workers"] > 1]  # bytes: any epochs
    assumptions = {"gpu_words_per_s": GPU_WORDS_PER_S, "link_bytes_per_s": LINKS_BYTES_PER_S,
                   "call_latency_s": CALL_LATENCY_S, "corpus_words": full[0]["words"] if full else None}
    figures["projection"] = {"assumptions": assumptions, "runs": project(full)}
    save("sync_schemes", figures | {"runs": sorted(runs.values(), key=lambda r: (
        -r["files"], -r["epochs"], r["combine"], r["syncs_per_epoch"], r["workers"]))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", help="a statistics folder (vocabulary.parquet, tokens/)")
    parser.add_argument("--files", type=int, default=None, help="only the first N tokens files (a subset)")
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    parser.add_argument("--workers", default="1,2,4,8", help="logical workers, comma-separated")
    parser.add_argument("--combine", default="touched", help="sync combines (sum, touched, mean), comma-separated")
    parser.add_argument("--syncs", default="16", help="syncs per epoch, comma-separated")
    parser.add_argument("--block-words", type=int, default=50_000, help="words per kernel call (sync granularity)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gloo", action="store_true", help="time gloo all-reduces of the payload sizes, then stop")
    args = parser.parse_args()
    if args.gloo:
        times = gloo_times(GLOO_SIZES_MB)
        print(json.dumps(times, indent=1))
        merge([{"processes": 2, "transport": "gloo, loopback", "size_mb_to_seconds": times,
                "load_average": os.getloadavg()}], "gloo")
        return
    if not args.stats:
        parser.error("give --stats (or --gloo)")
    for workers in map(int, args.workers.split(",")):
        for combine in args.combine.split(",") if workers > 1 else ["sum"]:
            for syncs in map(int, args.syncs.split(",")) if workers > 1 else [1]:
                figures = run(args.stats, args.files, args.epochs, workers, combine, syncs, args.block_words,
                              args.seed)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}),
                      flush=True)
                merge([figures], "runs")


if __name__ == "__main__":
    main()
