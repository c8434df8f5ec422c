"""Statistics engines on the benchmark corpus: tokens/s per worker for each step, peak memory per
worker, speed-up from 1 to 2 workers; co-occurrence against Stanford GloVe's `cooccur` and TF-IDF
against scikit-learn's TfidfVectorizer, measured in the same run.

    bash ../shared/bench/make-corpus.sh /work/bench-corpus      # 16 shards, ~12.9 M tokens
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.statistics_bench /work/bench-corpus \\
        [--engines processes dask beam] [--rounds 3] [--memory-mb 128] [--glove /tmp/glove]

Each statistic runs as its own engine map over the 16 shards, with the job's kernels:
  vocabulary count   read + tokenize + count words            (CountWords, firth.pipelines.statistics.steps.shard_word_counts)
  encode / tokens    read + tokenize + encode → tokens table  (the first half of EncodeShards)
  co-occurrence      token ids → CooccurrenceCounter (window 10, spilling within --memory-mb)
                     → run files, then the bounded merge per bucket (MergeCooccurrence)
  TF-IDF             token ids → term frequencies → TF-IDF table
and the whole job (compute_statistics, cache off) runs once more end to end. "per worker" is
corpus tokens / (wall seconds × workers), engine start-up excluded, a warm-up task per worker
first (numba's cache load, imports). Peak memory per worker is the largest ru_maxrss of the
worker processes; "before work" is their RSS after the warm-up (imports: the fixed overhead).

Same-run peers (the C tool is compiled outside the repository and not part of it):
  `cooccur -window-size 10 -memory 4 -verbose 0 -vocab-file vocab.txt < corpus.txt`, one thread,
  against CooccurrenceCounter on the same corpus.txt split on whitespace with the same vocabulary;
  TfidfVectorizer().fit_transform(texts) against firth's tokenize → vocabulary → encode → TF-IDF
  on the same documents, one process each.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.results import save
from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import ShardReport, iter_documents, list_shards
from firth.pipelines.corpus.tokenize import Tokenizer
from firth.pipelines.statistics import kernels
from firth.pipelines.statistics.engines import open_engine
from firth.pipelines.statistics.steps import (
    Location,
    _RunSink,
    _tfidf_table,
    _tokens_table,
    compute_statistics,
    merge_bucket,
    shard_word_counts,
)
from firth.schemas import tables


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(_, config: JobConfig) -> dict:
    """Load what the steps load (numba cache, Arrow, the tokenizer) once per worker, then report its RSS."""
    counter = kernels.CooccurrenceCounter(10, "harmonic", 8, 1 << 16, spill=lambda b, p: None, n_buckets=2)
    counter.add(np.arange(8, dtype=np.int32), np.array([0, 8]))
    counter.finish()
    kernels.term_frequencies(np.arange(8, dtype=np.int32), np.array([0, 8]))
    Tokenizer(config.tokenizer)(["warm up"])
    time.sleep(0.5)  # hold the worker so that every worker gets one
    return {"pid": os.getpid(), "rss_mb": _rss_mb()}


def noop(_) -> None:
    return None


def encode_tokens(indexed_shard, config: JobConfig, location: Location, vocabulary_tokens: pa.Array) -> dict:
    index, shard = indexed_shard
    tokenize = Tokenizer(config.tokenizer)
    parts = []
    for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri)):
        tokens, offsets = tokenize(batch.texts)
        ids, offsets = kernels.drop_out_of_vocabulary(kernels.encode(tokens, vocabulary_tokens), offsets)
        parts.append(_tokens_table(pa.array(batch.ids, pa.string()), offsets, ids))
    tables.write_parquet(pa.concat_tables(parts), location("tokens", f"shard-{index:05d}.parquet"), tables.TOKENS, {})
    return {"pid": os.getpid(), "peak_mb": _peak_mb()}


def _token_ids(location: Location, index: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    table = tables.read_parquet(location("tokens", f"shard-{index:05d}.parquet"), tables.TOKENS, {})
    lists = table["token_ids"].combine_chunks()
    return table, lists.values.to_numpy(), lists.offsets.to_numpy().astype(np.int64)


def count_cooccurrence(index: int, config: JobConfig, location: Location, vocab_size: int) -> dict:
    stats = config.statistics
    _, ids, offsets = _token_ids(location, index)
    runs = _RunSink(location, index, stats, vocab_size)
    counter = kernels.CooccurrenceCounter(stats.window, stats.weighting, vocab_size, stats.memory_bytes,
                                          spill=runs.write, n_buckets=stats.n_buckets)
    for start in range(0, len(offsets) - 1, 4096):  # the job's batch size
        stop = min(start + 4096, len(offsets) - 1)
        counter.add(ids[offsets[start]:offsets[stop]], offsets[start:stop + 1] - offsets[start])
    counter.finish()
    return {"pid": os.getpid(), "peak_mb": _peak_mb(), "runs": counter.spilled_runs}


def tfidf_shard(index: int, location: Location, idf: np.ndarray) -> dict:
    table, ids, offsets = _token_ids(location, index)
    doc_index, term_id, tf = kernels.term_frequencies(ids, offsets)
    weights = kernels.tfidf(doc_index, term_id, tf, idf)
    out = _tfidf_table(table["doc_id"].combine_chunks().take(pa.array(doc_index)), term_id, tf, weights)
    tables.write_parquet(out, location("tfidf", f"shard-{index:05d}.parquet"), tables.TFIDF, {})
    return {"pid": os.getpid(), "peak_mb": _peak_mb()}


WORKERS = (1, 2)  # the speed-up measured: 1 → 2 workers


def run_engine(engine_name: str, shard_glob: str, memory_mb: float, work: Path, rounds: int,
               whole_job: bool = True) -> dict:
    """Every step on `engine_name` with 1 and with 2 workers, both engines open at once: each round
    runs a step on one then on the other (the order alternates), so that a speed-up compares runs
    seconds apart. This machine's speed drifts by tens of percent over minutes (a virtual machine on
    a shared host: the same loop took 1.5 to 2.8 s alone), which whole runs minutes apart mismeasure."""
    from contextlib import ExitStack

    from benchmarks import statistics_bench as steps  # by module name, so that workers can import them

    def config_for(n: int) -> JobConfig:
        return JobConfig.model_validate({"table": "bench", "corpus": {"shards": [shard_glob]}, "statistics": {
            "engine": "dask" if engine_name == "processes" else engine_name, "n_workers": n, "window": 10,
            "min_count": 5, "n_buckets": 16, "memory_mb": memory_mb, "cache": False}})
    configs = {n: config_for(n) for n in WORKERS}
    shards = list_shards(configs[1].corpus)
    locations = {n: Location(str(work / f"{engine_name}-{n}"), {}) for n in WORKERS}
    result = {"engine": engine_name, "rounds": rounds, "seconds": {}, "peak_mb": {}, "rss_before_work_mb": {}}
    with ExitStack() as stack:
        engines = {n: stack.enter_context(ProcessPool(n) if engine_name == "processes" else open_engine(configs[n].statistics))
                   for n in WORKERS}
        for n, engine in engines.items():
            baseline = engine.map(partial(steps.warm_up, config=configs[n]), list(range(4 * n)), "WarmUp")
            result["rss_before_work_mb"][n] = max(b["rss_mb"] for b in baseline)

        def clocked(name: str, n: int, call):
            start = time.perf_counter()
            out = call()
            result["seconds"].setdefault(name, {}).setdefault(n, []).append(time.perf_counter() - start)
            return out

        def timed(name: str, n: int, fn, items) -> list:
            out = clocked(name, n, lambda: engines[n].map(fn, items, name))
            if out and isinstance(out[0], dict):
                peaks = result["peak_mb"].setdefault(name, {})
                peaks[n] = max(peaks.get(n, 0), max(o["peak_mb"] for o in out))
            return out

        def paired(run) -> list:
            """run(n) on each worker count, `rounds` times, alternating; the 1-worker run's last output."""
            outputs = {}
            for r in range(rounds):
                for n in (WORKERS if r % 2 == 0 else WORKERS[::-1]):
                    outputs[n] = run(n)
            return outputs[1]

        paired(lambda n: timed("empty map (engine overhead per step)", n, steps.noop, list(range(n))))
        counted = paired(lambda n: timed("vocabulary count", n, partial(
            steps.count_with_peak, config=configs[n], location=locations[n]), shards))
        word_counts = kernels.merge_word_counts([o["counts"] for o in counted])
        vocabulary = kernels.build_vocabulary(word_counts, 5, None)
        idf = kernels.idf(vocabulary["doc_count"].to_numpy(), word_counts.n_docs)
        vocabulary_tokens = vocabulary["token"].combine_chunks()
        paired(lambda n: timed("encode / tokens", n, partial(
            steps.encode_tokens, config=configs[n], location=locations[n], vocabulary_tokens=vocabulary_tokens),
            list(enumerate(shards))))
        indices = list(range(len(shards)))

        def cooccurrence(n: int) -> list:
            counts = timed("co-occurrence count", n, partial(steps.count_cooccurrence, config=configs[n],
                                                             location=locations[n], vocab_size=vocabulary.num_rows),
                           indices)
            timed("co-occurrence merge", n, partial(steps.merge_with_peak, config=configs[n], location=locations[n]),
                  list(range(16)))
            return counts
        result["spilled_runs"] = sum(c["runs"] for c in paired(cooccurrence))
        result["seconds"]["co-occurrence"] = {n: list(np.add(result["seconds"]["co-occurrence count"][n],
                                                             result["seconds"]["co-occurrence merge"][n]))
                                              for n in WORKERS}
        result["peak_mb"]["co-occurrence"] = {n: max(result["peak_mb"]["co-occurrence count"][n],
                                                     result["peak_mb"]["co-occurrence merge"][n]) for n in WORKERS}
        paired(lambda n: timed("TF-IDF", n, partial(steps.tfidf_shard, location=locations[n], idf=idf), indices))
        if whole_job:
            paired(lambda n: clocked("whole job", n, lambda: compute_statistics(
                shards, configs[n], engines[n], Location(str(work / f"{engine_name}-{n}-job"), {}))))
    result["tokens"] = int(word_counts.counts.sum())
    return result


class ProcessPool:
    """The engines' ceiling: the same step functions on plain worker processes (multiprocessing,
    spawn, one item at a time), no scheduler and no runner. What it gains from a second worker is
    what these two cores give this work; an engine can only lose against it."""

    def __init__(self, workers: int):
        import multiprocessing
        self.pool = multiprocessing.get_context("spawn").Pool(workers)

    def __enter__(self) -> "ProcessPool":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.terminate()
        self.pool.join()

    def map(self, fn, items, label):
        return self.pool.map(fn, items, chunksize=1)


def count_with_peak(shard, config: JobConfig, location: Location) -> dict:
    counts, _, _ = shard_word_counts(shard, config, location)
    return {"pid": os.getpid(), "peak_mb": _peak_mb(), "counts": counts}


def merge_with_peak(bucket: int, config: JobConfig, location: Location) -> dict:
    merge_bucket(bucket, config, location)
    return {"pid": os.getpid(), "peak_mb": _peak_mb()}


def glove_cooccur_same_run(glove: Path, memory_mb: float) -> dict:
    """GloVe C `cooccur` (1 thread) and CooccurrenceCounter (this process) on the same corpus.txt and vocabulary."""
    text = (glove / "corpus.txt").read_text()
    vocabulary_words = [line.split(" ")[0] for line in (glove / "vocab.txt").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with open(glove / "corpus.txt", "rb") as source, open(os.devnull, "wb") as sink:
            subprocess.run([str(glove / "cooccur"), "-window-size", "10", "-memory", "4", "-verbose", "0",
                            "-vocab-file", str(glove / "vocab.txt")], stdin=source, stdout=sink, cwd=tmp, check=True)
        c_seconds = time.perf_counter() - start
    lines = text.splitlines()
    tokens = pa.array([w for line in lines for w in line.split()], pa.large_string())
    offsets = np.cumsum([0] + [len(line.split()) for line in lines])
    ids = kernels.encode(tokens, vocabulary_words)
    pieces = []
    counter = kernels.CooccurrenceCounter(10, "harmonic", len(vocabulary_words), int(memory_mb * 2**20),
                                          spill=lambda b, p: pieces.append(len(p)), n_buckets=16)
    warm = kernels.CooccurrenceCounter(10, "harmonic", 8, 1 << 16)
    warm.add(np.arange(8, dtype=np.int32), np.array([0, 8]))
    start = time.perf_counter()
    for first in range(0, len(offsets) - 1, 4096):
        last = min(first + 4096, len(offsets) - 1)
        counter.add(ids[offsets[first]:offsets[last]], offsets[first:last + 1] - offsets[first])
    counter.finish()
    ours = time.perf_counter() - start
    return {"tokens": len(tokens), "cooccur_seconds": c_seconds, "firth_seconds": ours,
            "cooccur_tokens_per_s": len(tokens) / c_seconds, "firth_tokens_per_s": len(tokens) / ours,
            "ratio": c_seconds / ours}


def tfidf_against_sklearn(shard_glob: str) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    config = JobConfig.model_validate({"table": "bench", "corpus": {"shards": [shard_glob]}})
    texts = [t for shard in list_shards(config.corpus)
             for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri)) for t in batch.texts]
    start = time.perf_counter()
    TfidfVectorizer().fit_transform(texts)
    sklearn_seconds = time.perf_counter() - start
    tokenize = Tokenizer(config.tokenizer)
    start = time.perf_counter()
    batches = [tokenize(texts[n:n + 4096]) for n in range(0, len(texts), 4096)]
    counts = kernels.merge_word_counts([kernels.count_words(t, o) for t, o in batches])
    vocabulary = kernels.build_vocabulary(counts, 1, None)  # every word, as TfidfVectorizer's default
    idf = kernels.idf(vocabulary["doc_count"].to_numpy(), len(texts))
    vocabulary_tokens = vocabulary["token"].combine_chunks()
    for tokens, offsets in batches:
        ids = kernels.encode(tokens, vocabulary_tokens)
        doc_index, term_id, tf = kernels.term_frequencies(ids, offsets)
        kernels.tfidf(doc_index, term_id, tf, idf)
    firth_seconds = time.perf_counter() - start
    n_tokens = int(counts.counts.sum())
    return {"documents": len(texts), "tokens": n_tokens, "sklearn_seconds": sklearn_seconds,
            "firth_seconds": firth_seconds, "ratio": sklearn_seconds / firth_seconds}


def budget_probe(ids_path: str, vocab_size: int, memory_mb: float, fan_in: int, work: str) -> dict:
    """In a fresh process: count the co-occurrences of a saved id stream within `memory_mb`, spilling run
    files, then merge every bucket; RSS before (ids loaded) and the process's peak after each phase."""
    from firth.pipelines.statistics import spill_files
    data = np.load(ids_path)
    ids, offsets = data["ids"], data["offsets"]
    warm = kernels.CooccurrenceCounter(10, "harmonic", 8, 1 << 16, spill=lambda b, p: None, n_buckets=2)
    warm.add(np.arange(8, dtype=np.int32), np.array([0, 8]))
    warm.finish()
    before = _rss_mb()
    n_runs = [0]

    def spill(bucket, piece):
        spill_files.write_run(piece, f"{work}/bucket-{bucket:02d}/run-{n_runs[0]:06d}.parquet", {})
        n_runs[0] += 1
    counter = kernels.CooccurrenceCounter(10, "harmonic", vocab_size, int(memory_mb * 2**20), spill=spill,
                                          n_buckets=16)
    for first in range(0, len(offsets) - 1, 4096):
        last = min(first + 4096, len(offsets) - 1)
        counter.add(ids[offsets[first]:offsets[last]], offsets[first:last + 1] - offsets[first])
    counter.finish()
    after_count = _peak_mb()
    entries = sum(spill_files.merge_run_files(spill_files.list_runs(f"{work}/bucket-{b:02d}", {}), lambda k, u: None,
                                           f"{work}/merge-{b:02d}", {}, int(memory_mb * 2**20), fan_in)
                  for b in range(16))
    return {"memory_mb": memory_mb, "rss_before_mb": before, "peak_count_mb": after_count,
            "peak_merge_mb": _peak_mb(), "runs": n_runs[0], "entries": entries}


def budget_scan(shard_glob: str, budgets: list[float]) -> list[dict]:
    """Peak memory of co-occurrence counting and merging over 4 shards (all words: min_count 1) per budget."""
    import multiprocessing

    from benchmarks import statistics_bench as steps

    config = JobConfig.model_validate({"table": "bench", "corpus": {"shards": [shard_glob]}})
    tokenize = Tokenizer(config.tokenizer)
    batches = [tokenize(batch.texts) for shard in list_shards(config.corpus)[:4]
               for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri))]
    vocabulary = kernels.build_vocabulary(kernels.merge_word_counts([kernels.count_words(*b) for b in batches]), 1, None)
    ids = np.concatenate([kernels.encode(t, vocabulary["token"].combine_chunks()) for t, _ in batches])
    offsets = np.concatenate([[0]] + [o[1:] + base for (_, o), base in
                                      zip(batches, np.cumsum([0] + [o[-1] for _, o in batches[:-1]]))])
    results = []
    with tempfile.TemporaryDirectory(prefix="firth-budget-") as work:
        np.savez(f"{work}/ids.npz", ids=ids, offsets=offsets)
        for budget in budgets:
            with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: a clean ru_maxrss
                result = pool.apply(steps.budget_probe, (f"{work}/ids.npz", vocabulary.num_rows, budget, 64,
                                                         f"{work}/runs-{budget}"))
            result["tokens"], result["vocab_size"] = len(ids), vocabulary.num_rows
            results.append(result)
            print(json.dumps({"budget": result}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="folder of *.jsonl.gz shards")
    parser.add_argument("--engines", nargs="+", choices=["processes", "dask", "beam"],
                        default=["processes", "dask", "beam"],
                        help="processes: the same steps on plain worker processes, the engines' ceiling")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each step per worker count, 1 and 2 workers alternating; the table shows medians")
    parser.add_argument("--memory-mb", type=float, default=128)
    parser.add_argument("--glove", default="/tmp/glove", help="folder with a compiled cooccur, corpus.txt, vocab.txt")
    parser.add_argument("--budget-scan", nargs="*", type=float, metavar="MB",
                        help="only measure co-occurrence peak memory at these budgets (default 16 64 256)")
    parser.add_argument("--skip-peers", action="store_true", help="leave out the cooccur and scikit-learn runs")
    parser.add_argument("--skip-job", action="store_true", help="leave out the whole-job run per engine")
    args = parser.parse_args()
    if args.budget_scan is not None:
        budget_scan(str(Path(args.corpus) / "*.jsonl.gz"), args.budget_scan or [16, 64, 256])
        return
    shard_glob = str(Path(args.corpus) / "*.jsonl.gz")
    if not glob.glob(shard_glob):
        parser.error(f"{shard_glob}: no shards; build them with ../shared/bench/make-corpus.sh")
    report = {"load_average_at_start": os.getloadavg(), "memory_mb": args.memory_mb}
    if (Path(args.glove) / "cooccur").exists() and not args.skip_peers:
        report["cooccur"] = glove_cooccur_same_run(Path(args.glove), args.memory_mb)
        print(json.dumps({"cooccur": report["cooccur"]}), flush=True)
    if not args.skip_peers:
        report["tfidf"] = tfidf_against_sklearn(shard_glob)
        print(json.dumps({"tfidf": report["tfidf"]}), flush=True)
    report["engines"] = []
    with tempfile.TemporaryDirectory(prefix="firth-statistics-bench-") as work:
        for engine_name in args.engines:
            result = run_engine(engine_name, shard_glob, args.memory_mb, Path(work), args.rounds, not args.skip_job)
            report["engines"].append(result)
            print(json.dumps(result), flush=True)
    report["load_average_at_end"] = os.getloadavg()
    print_table(report)
    print(json.dumps(report, indent=1))
    save("statistics_bench", report)


def print_table(report: dict) -> None:
    """Medians over the rounds; a speed-up is the median of the rounds' own 1 → 2 worker ratios."""
    print(f"\nload average at start {report['load_average_at_start']}, at end {report['load_average_at_end']}")
    print("| engine | statistic | 1 worker: s (M tokens/s) | 2 workers: s (M tokens/s per worker) | "
          "speed-up 1 → 2: median (range) | peak MB per worker (before work) |")
    print("|---|---|---|---|---|---|")
    for r in report["engines"]:
        tokens, before = r["tokens"], max(r["rss_before_work_mb"].values())
        for name, runs in r["seconds"].items():
            one, two = (runs[n] for n in WORKERS)
            s1, s2 = float(np.median(one)), float(np.median(two))
            if name.startswith("empty map"):
                print(f"| {r['engine']} | {name} | {s1:.2f} | {s2:.2f} | | |")
                continue
            ratios = [a / b for a, b in zip(one, two)]
            peaks = r["peak_mb"].get(name)  # none for the whole job: it runs the job's own steps
            peak = f"{max(peaks.values()):.0f} ({before:.0f})" if peaks else ""
            print(f"| {r['engine']} | {name} | {s1:.2f} ({tokens / s1 / 1e6:.2f}) | {s2:.2f} ({tokens / s2 / 2e6:.2f}) | "
                  f"{np.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {peak} |")
    if "cooccur" in report:
        c = report["cooccur"]
        print(f"\nco-occurrence, window 10, one thread, {c['tokens']} tokens of corpus.txt: GloVe cooccur "
              f"{c['cooccur_tokens_per_s'] / 1e6:.2f} M tokens/s, firth {c['firth_tokens_per_s'] / 1e6:.2f} M tokens/s "
              f"({c['ratio']:.2f}×)")
    t = report.get("tfidf")
    if t:
        print(f"TF-IDF, {t['documents']} documents, one process: scikit-learn {t['sklearn_seconds']:.1f} s, "
              f"firth {t['firth_seconds']:.1f} s ({t['ratio']:.2f}×)")


if __name__ == "__main__":
    main()
