"""Statistics (and word2vec, one epoch) as the corpus grows: does the driver stay flat, do the workers
stay within `memory_mb` plus a fixed overhead, does the speed per worker hold? (issue 18)

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.scale_bench \\
        [--corpus zipf|bench] [--sizes 1 4 16] [--word2vec-sizes 1 4] [--workers 2] [--memory-mb 256]

Corpora, written under --out (default /work/scale-corpus, never in git) and reused when present:
  zipf   seeded synthetic Zipfian text (`--types` 5 M word types, `--exponent` 1.05, `--shard-tokens`
         2 M tokens a shard, one line a document of 50-400 words); size k× is the first k shards
         (1×: 2 M tokens, 16×: 32 M). Generated with numpy, no per-token Python.
  bench  the benchmark corpus (/work/bench-corpus: 16 shards, 12.9 M tokens) replicated k times, each
         copy's document ids prefixed with `r<copy>/`; size k× is k copies.

Each size runs in a fresh process (so its peak RSS is its own): compute_statistics on a Dask
LocalCluster of --workers processes (window 10, min_count 5, 16 buckets, cache off, the whole job's
statistics stage), after a warm-up task per worker (imports, numba's cache). Measured:
  tokens/s per worker   corpus tokens / (statistics wall seconds × workers); seconds per step too
  tokens per task-second  corpus tokens / the seconds all tasks took, summed: the cost per token,
                        whether or not every worker had work (1×, one shard, keeps a worker idle
                        in the per-shard steps, which the wall rate counts against it)
  driver peak RSS       VmHWM of the driver process (it holds the Dask scheduler too); and its RSS
                        before the run (imports, cluster started)
  worker peak RSS       VmHWM of each Dask worker process (client.run), reset before each step, so
                        that the peak of each step is known too; and its RSS after the warm-up
  spill bytes           everything under _partial/ when MergeCooccurrence starts (word parts, vocabulary
                        pieces, co-occurrence runs: all of them, none is removed before)
  output bytes          the statistics folder after the run
word2vec: one epoch (skip-gram, dim 100, window 5, 2 Ray Train workers) on the tokens table that the
statistics of that size wrote; words/s, wall seconds, driver peak RSS and the Ray worker processes'
largest RSS sampled every 0.2 s. `--lookup` only measures the bytes an EncodeShards vocabulary lookup
takes per word (pipelines/statistics/vocabulary.py LOOKUP_BYTES_PER_WORD).
"""
from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.results import save

LETTERS = 5  # 26**5 = 11.9 M names: enough for --types up to that
_PAD = 0  # a byte that marks the unused leading letters of a short name, removed before writing


def zipf_shards(folder: Path, types: int, exponent: float, shard_tokens: int, n_shards: int, seed: int) -> list[Path]:
    """Shards zipf-NNNNN.txt of `shard_tokens` tokens each; shard n is drawn from seed (seed, n), so the first
    k shards of a larger corpus are the k-shard corpus. Word of rank r (0 = most frequent): r in base 26, a-z."""
    if types > 26 ** LETTERS:
        raise ValueError(f"--types {types}: at most {26 ** LETTERS} distinct {LETTERS}-letter words")
    folder.mkdir(parents=True, exist_ok=True)
    cdf = np.cumsum(np.arange(1, types + 1, dtype=np.float64) ** -exponent)  # (types,)
    cdf /= cdf[-1]
    paths = []
    for n in range(n_shards):
        path = folder / f"zipf-{n:05d}.txt"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, n])
        ranks = np.minimum(np.searchsorted(cdf, rng.random(shard_tokens)), types - 1)  # (tokens,)
        letters = np.full((shard_tokens, LETTERS + 1), _PAD, np.uint8)  # name, then a separator
        rest = ranks.copy()
        for position in range(LETTERS - 1, -1, -1):  # last letter first; leading zeros stay padding
            used = (rest > 0) | (position == LETTERS - 1)
            letters[used, position] = ord("a") + rest[used] % 26
            rest //= 26
        letters[:, LETTERS] = ord(" ")
        ends = np.cumsum(rng.integers(50, 401, shard_tokens // 50 + 1))  # document lengths 50..400
        letters[ends[ends <= shard_tokens] - 1, LETTERS] = ord("\n")
        letters[-1, LETTERS] = ord("\n")
        flat = letters.ravel()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(flat[flat != _PAD].tobytes())
        tmp.rename(path)
    return paths


def replicated_bench(source: Path, folder: Path, copies: int) -> list[Path]:
    """`copies` copies of the benchmark corpus's shards, copy c's document ids prefixed with "r<c>/"."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for copy in range(copies):
        for shard in sorted(source.glob("*.jsonl.gz")):
            path = folder / f"r{copy}-{shard.name}"
            paths.append(path)
            if path.exists():
                continue
            tmp = path.with_suffix(".tmp")
            with gzip.open(shard, "rt") as f, gzip.open(tmp, "wt", compresslevel=1) as out:
                for line in f:
                    record = json.loads(line)
                    record["id"] = f"r{copy}/{record['id']}"
                    out.write(json.dumps(record) + "\n")
            tmp.rename(path)
    return paths


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """This process's peak RSS since it started its program (VmHWM). Not ru_maxrss: Linux carries that
    across fork and exec, so a process spawned by a larger parent starts at the parent's RSS (here the
    second size's driver reported 219 MB against 175 MB when it ran first; the sizes are spawned in turn)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _reset_peak() -> None:
    """Start this process's VmHWM again from its current RSS (Linux: 5 written to clear_refs), so that
    the next read is the peak of what ran since: a worker's peak per step, not per lifetime."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _warm(_) -> float:
    """On a worker: load what the steps load (kernels, numba's cache), hold the worker a moment."""
    from firth.pipelines.statistics import kernels

    counter = kernels.CooccurrenceCounter(10, "harmonic", 8, 1 << 16, spill=lambda b, p: None, n_buckets=2)
    counter.add(np.arange(8, dtype=np.int32), np.array([0, 8]))
    counter.finish()
    kernels.word_buckets(["warm"], 2)
    time.sleep(0.5)
    return _rss_mb()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _timed(fn, item):
    """On a worker: fn(item) and the seconds it took."""
    start = time.perf_counter()
    result = fn(item)
    return result, time.perf_counter() - start


class _Clocked:
    """The engine, with seconds per step (wall, and the tasks' own seconds summed: the work the step
    cost, whether or not every worker had a task), the largest worker's peak RSS in each step, and the
    bytes under _partial/ when MergeCooccurrence starts."""

    def __init__(self, engine, partial_dir: Path):
        self.engine, self.partial_dir = engine, partial_dir
        self.seconds: dict[str, float] = {}
        self.task_seconds: dict[str, float] = {}
        self.driver_peak_after: dict[str, float] = {}  # the driver's peak after each step: which one grew it
        self.worker_peak_in: dict[str, float] = {}  # the largest worker's peak within each step
        self.worker_peak: dict[str, float] = {}  # worker address -> its peak over every step
        self.spill_bytes = 0

    def map(self, fn, items, label):
        if label == "MergeCooccurrence":
            self.spill_bytes = _du(self.partial_dir)
        self.engine.client.run(_reset_peak)
        start = time.perf_counter()
        try:
            timed = self.engine.map(partial(_timed, fn), items, label)
        finally:
            self.seconds[label] = self.seconds.get(label, 0) + time.perf_counter() - start
            self.driver_peak_after[label] = _peak_mb()
            step_peaks = self.engine.client.run(_peak_mb)  # worker address -> MB
            self.worker_peak_in[label] = max(self.worker_peak_in.get(label, 0), *step_peaks.values())
            for address, mb in step_peaks.items():
                self.worker_peak[address] = max(self.worker_peak.get(address, 0), mb)
        self.task_seconds[label] = self.task_seconds.get(label, 0) + sum(seconds for _, seconds in timed)
        return [result for result, _ in timed]


def measure_statistics(shards: list[str], workers: int, memory_mb: float, output: str) -> dict:
    """In a fresh process: the statistics stage on Dask over `shards`, with its memory and speed."""
    from firth.pipelines.config import JobConfig
    from firth.pipelines.corpus.shards import list_shards
    from firth.pipelines.statistics.engines import open_engine
    from firth.pipelines.statistics.steps import Location, compute_statistics

    config = JobConfig.model_validate({"table": "scale", "corpus": {"shards": shards}, "statistics": {
        "n_workers": workers, "window": 10, "min_count": 5, "n_buckets": 16, "memory_mb": memory_mb,
        "cache": False}})
    location = Location(output, {})
    listed = list_shards(config.corpus)
    with open_engine(config.statistics) as engine:
        engine.map(_warm, list(range(4 * workers)), "WarmUp")
        worker_rss_before = sorted(engine.client.run(_rss_mb).values())
        driver_rss_before = _rss_mb()
        clocked = _Clocked(engine, Path(output) / "_partial")
        start = time.perf_counter()
        summary = compute_statistics(listed, config, clocked, location)
        seconds = time.perf_counter() - start
    return {"shards": len(listed), "tokens": summary.n_tokens, "vocab_size": summary.vocab_size,
            "cooccurrence_entries": summary.n_cooccurrence_entries, "seconds": seconds,
            "tokens_per_s_per_worker": summary.n_tokens / seconds / workers, "step_seconds": clocked.seconds,
            "task_seconds": clocked.task_seconds,
            "tokens_per_task_second": summary.n_tokens / sum(clocked.task_seconds.values()),
            "driver_peak_after_step_mb": clocked.driver_peak_after,
            "driver_rss_before_mb": driver_rss_before, "driver_peak_mb": _peak_mb(),
            "worker_rss_after_warm_up_mb": worker_rss_before,
            "worker_peak_mb": sorted(clocked.worker_peak.values()),
            "worker_peak_in_step_mb": clocked.worker_peak_in,
            "spill_bytes": clocked.spill_bytes, "output_bytes": _du(Path(output)), "load_average": os.getloadavg()}


def measure_word2vec(statistics_uri: str, workers: int) -> dict:
    """In a fresh process: one word2vec epoch on Ray Train over the statistics' tokens table."""
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    import psutil
    import pyarrow.parquet as pq
    import ray

    from firth.pipelines.config import Word2VecConfig
    from firth.workers.word2vec.train import train_word2vec

    vocabulary = pq.read_table(Path(statistics_uri) / "vocabulary.parquet")
    config = Word2VecConfig(epochs=1, num_workers=workers)
    peaks: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:  # Ray's worker processes are this process's descendants (raylet's children)
        while not done.wait(0.2):
            for child in psutil.Process().children(recursive=True):
                try:
                    if "TrainWorker" in " ".join(child.cmdline()) or "ray::" in child.name():
                        peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
    for attempt in range(3):  # Ray gives its raylet 30 s to register: too little on a loaded machine
        try:
            ray.init(num_cpus=workers, include_dashboard=True, _node_ip_address="127.0.0.1")
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with tempfile.TemporaryDirectory(prefix="firth-scale-w2v-") as checkpoints:
            start = time.perf_counter()
            result = train_word2vec(str(Path(statistics_uri) / "tokens"), vocabulary["token"].to_pylist(),
                                    vocabulary["count"].to_numpy(), config, checkpoint_uri=checkpoints,
                                    progress=False)
            seconds = time.perf_counter() - start
    finally:
        done.set()
        ray.shutdown()
    return {"vocab_size": vocabulary.num_rows, "seconds": seconds, "words_per_s": result.words_per_sec,
            "driver_peak_mb": _peak_mb(), "ray_worker_peak_mb": sorted(peaks.values())[-workers:],
            "load_average": os.getloadavg()}


def lookup_bytes_per_word() -> list[dict]:
    """Arrow's allocation peak of kernels.encode (pc.index_in builds a hash set of the vocabulary each call)."""
    import pyarrow as pa

    from firth.pipelines.statistics import kernels
    out = []
    rng = np.random.default_rng(0)
    for words in (100_000, 400_000, 1_600_000):
        tokens = pa.array([f"w{n:x}q" for n in rng.permutation(words)], pa.large_string())
        batch = pa.array([f"w{n:x}q" for n in rng.integers(0, 2 * words, 200_000)], pa.large_string())
        peak = _in_fresh_process(_encode_peak, tokens, batch)  # a fresh Arrow pool: its peak starts at 0
        out.append({"words": words, "token_bytes_per_word": tokens.nbytes / words,
                    "hash_set_bytes_per_word": (peak - 4 * len(batch)) / words})
    return out


def _encode_peak(tokens, batch) -> int:
    import pyarrow as pa

    from firth.pipelines.statistics import kernels
    base = pa.total_allocated_bytes()
    kernels.encode(batch, tokens)
    return pa.default_memory_pool().max_memory() - base


def _in_fresh_process(fn, *args):
    """fn(*args) in a new interpreter (not a daemon: it starts Dask's or Ray's own processes)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["zipf", "bench"], default="zipf")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--word2vec-sizes", nargs="*", type=int, default=[1, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=float, default=256)
    parser.add_argument("--types", type=int, default=5_000_000)
    parser.add_argument("--exponent", type=float, default=1.05)
    parser.add_argument("--shard-tokens", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bench-corpus", default="/work/bench-corpus")
    parser.add_argument("--out", default="/work/scale-corpus", help="where the generated corpora go (not git)")
    parser.add_argument("--lookup", action="store_true", help="only measure the encode lookup's bytes per word")
    args = parser.parse_args()
    if args.lookup:
        print(json.dumps(lookup_bytes_per_word(), indent=1))
        return
    out = Path(args.out)
    if args.corpus == "zipf":
        shards = zipf_shards(out / f"zipf-{args.types}-{args.exponent}-{args.shard_tokens}-{args.seed}", args.types,
                             args.exponent, args.shard_tokens, max(args.sizes), args.seed)
        per_size = {k: [str(p) for p in shards[:k]] for k in args.sizes}
    else:
        copies = replicated_bench(Path(args.bench_corpus), out / "bench-replicated", max(args.sizes))
        per_copy = len(copies) // max(args.sizes)
        per_size = {k: [str(p) for p in copies[:k * per_copy]] for k in args.sizes}
    report = {"corpus": args.corpus, "workers": args.workers, "memory_mb": args.memory_mb,
              "zipf": {"types": args.types, "exponent": args.exponent, "shard_tokens": args.shard_tokens,
                       "seed": args.seed} if args.corpus == "zipf" else None,
              "load_average_at_start": os.getloadavg(), "statistics": {}, "word2vec": {}}
    name = "scale" if args.corpus == "zipf" else f"scale-{args.corpus}"
    with tempfile.TemporaryDirectory(prefix="firth-scale-", dir=out) as work:
        outputs = {k: str(Path(work) / f"stats-{k}") for k in args.sizes}
        for k in args.sizes:  # statistics first: word2vec (Ray) is the part a loaded machine may refuse to start
            result = _in_fresh_process(measure_statistics, per_size[k], args.workers, args.memory_mb, outputs[k])
            report["statistics"][k] = result
            print(json.dumps({f"statistics {k}x": result}), flush=True)
            if k not in args.word2vec_sizes:
                shutil.rmtree(outputs[k])
            save(name, report)  # kept as it grows: a long run cut short still leaves its figures
        for k in args.word2vec_sizes:
            try:
                report["word2vec"][k] = _in_fresh_process(measure_word2vec, outputs[k], args.workers)
            except Exception as e:  # recorded, not fatal: the statistics figures stand on their own
                report["word2vec"][k] = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps({f"word2vec {k}x": report["word2vec"][k]}), flush=True)
            save(name, report)
    report["load_average_at_end"] = os.getloadavg()
    print_table(report)
    save(name, report)


def print_table(report: dict) -> None:
    base = report["statistics"][min(report["statistics"])]
    print(f"\nworkers {report['workers']}, memory_mb {report['memory_mb']}, load average at start "
          f"{report['load_average_at_start']}, at end {report['load_average_at_end']}")
    print("| size | shards | tokens | vocabulary | co-occurrence entries | s | tokens/s per worker (vs 1×) | "
          "tokens per task-second (vs 1×) | driver peak MB (before run) | worker peak MB (after warm-up) | "
          "spill MB | output MB | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, r in report["statistics"].items():
        print(f"| {k}× | {r['shards']} | {r['tokens'] / 1e6:.1f} M | {r['vocab_size']:,} | "
              f"{r['cooccurrence_entries'] / 1e6:.1f} M | {r['seconds']:.1f} | {r['tokens_per_s_per_worker']:,.0f} "
              f"({r['tokens_per_s_per_worker'] / base['tokens_per_s_per_worker']:.2f}) | "
              f"{r['tokens_per_task_second']:,.0f} ({r['tokens_per_task_second'] / base['tokens_per_task_second']:.2f}) | "
              f"{r['driver_peak_mb']:.0f} "
              f"({r['driver_rss_before_mb']:.0f}) | {max(r['worker_peak_mb']):.0f} "
              f"({max(r['worker_rss_after_warm_up_mb']):.0f}) | {r['spill_bytes'] / 2**20:.0f} | "
              f"{r['output_bytes'] / 2**20:.0f} | {r['load_average'][0]:.1f} |")
    for k, r in report["statistics"].items():
        steps = ", ".join(f"{step} {mb:.0f}" for step, mb in r.get("worker_peak_in_step_mb", {}).items())
        print(f"{k}×, the largest worker's peak MB in each step: {steps}")
    for k, r in report["word2vec"].items():
        if "error" in r:
            print(f"word2vec {k}×: {r['error']}")
            continue
        print(f"word2vec {k}×: {r['seconds']:.1f} s, {r['words_per_s']:,.0f} words/s, driver peak "
              f"{r['driver_peak_mb']:.0f} MB, Ray workers' peak {max(r['ray_worker_peak_mb'], default=0):.0f} MB")


if __name__ == "__main__":
    main()
