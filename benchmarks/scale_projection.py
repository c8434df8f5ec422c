"""A 10 B-token corpus with a 2 M-word vocabulary, on paper: how many nodes, how long, and what
runs out first (issue 18, item 5). Every input is either read from a measured result in
benchmarks/results/ (named beside it) or an assumption, listed as such; nothing here is a measurement.

    python benchmarks/scale_projection.py            # prints the table, writes results/scale_projection.json

Model of the work (all stages scale with the corpus; the per-worker rates are those measured on
this repository's benchmarks, one worker process per core):
  statistics     tokens / (tokens/s per Dask worker)                         core-seconds
  co-occurrence  entries = tokens x (entries per token), an upper bound: the largest ratio measured
                 (it falls as a corpus grows over a fixed vocabulary: pairs repeat)
  GloVe          entries x epochs / (entries/s per core, or per GPU)        core- or GPU-seconds
  word2vec       words x epochs / (words/s per core, or per GPU)             core- or GPU-seconds
  syncs          word2vec's SparseDeltaSync moves the changed rows of the state; the bytes per sync
                 scale with the state (2 V D float32) times the fraction of rows a sync carried in
                 the measured runs; a ring all-reduce moves about twice that per worker.
Wall time on a cluster = work / (workers) + syncs' time, assuming the work divides evenly (the
per-shard steps do for thousands of shards; MergeCooccurrence parallelises over `n_buckets`).
"""
from __future__ import annotations

import json
import statistics as stats_lib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

from benchmarks.results import RESULTS, save

TOKENS, VOCAB, DIM = 10e9, 2e6, 100  # the corpus
EPOCHS = {"glove": 15, "word2vec": 5}
# Assumptions: not measured here.
CORES_PER_NODE = 32  # a CPU node
GPUS_PER_NODE = 8
LINK_BYTES_PER_S = {"within a node (NVLink, NCCL ring)": 300e9, "between nodes (100 Gb/s Ethernet)": 12.5e9}
S3_BYTES_PER_S_PER_NODE = 1.0e9  # sustained object-store throughput of one node
GPU_TARGETS = {"sg": 20e6, "cbow": 40e6, "fasttext": 5e6, "glove_entries": 29_191_339 * 15 / 6.0}  # issue 15's targets
# Measured, but only written in benchmarks/README.md (no JSON): the sources.
GLOVE_ENTRIES_PER_S_CORE = (2.1e6, "benchmarks/README.md, GloVe components: the numba AdaGrad kernel, 2.1-2.5 M entries/s on one core (lower end)")
GLOVE_ENTRIES_PER_S_GPU = (20e6, "benchmarks/README.md, GloVe on one H100 (the batched torch kernel before issue 15): 20 M entries/s")
STATISTICS_OVERHEAD_MB = (610, "benchmarks/README.md, Scale: a Dask worker peaks within memory_mb + 610 MB")


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def measured_inputs() -> dict:
    """The per-worker rates and ratios, each with the file and figure it comes from."""
    inputs = {}
    bench = _load("statistics_bench")
    dask = next(e for e in bench["engines"] if e["engine"] == "dask")
    seconds = stats_lib.mean(dask["seconds"]["whole job"]["2"])
    inputs["statistics_tokens_per_s_worker"] = (
        dask["tokens"] / seconds / 2,
        (f"results/statistics_bench.json: whole job, 2 Dask workers, {dask['tokens']:,} tokens in {seconds:.1f} s "
        f"(load {bench['load_average'][0]:.1f})"))
    scale = _load("scale")
    sizes = scale["statistics"]
    ratio, size = max((r["cooccurrence_entries"] / r["tokens"], k) for k, r in sizes.items())
    inputs["entries_per_token"] = (ratio, (f"results/scale.json: the largest entries/token ratio, size {size}x "
                                          f"(Zipf, {scale['zipf']['types']:,} types, window 10, min_count 5)"))
    largest = sizes[max(sizes, key=int)]
    inputs["spill_per_output_byte"] = (largest["spill_bytes"] / largest["output_bytes"],
                                       f"results/scale.json: spill / output bytes at {max(sizes, key=int)}x")
    w2v = _load("word2vec_vs_gensim")
    for model, entry in w2v["models"].items():
        rate = entry["firth"]["words_per_sec"]  # a figure, or {mean, min, max} over --seeds runs
        seeds = entry.get("seeds", 1)
        load = entry.get("load_average", w2v["load_average"])
        inputs[f"{model}_words_per_s_core"] = (
            (rate["mean"] if isinstance(rate, dict) else rate) / 2,
            (f"results/word2vec_vs_gensim.json: {model}, firth, 2 Hogwild threads, mean of {seeds} run(s), halved "
            f"(load {load[0]:.1f})"))
    sync = _load("sync_schemes")
    if sync:
        chosen = [r for r in sync["runs"] if r["workers"] > 1 and r["bytes_per_sync"]]
        if chosen:
            run = max(chosen, key=lambda r: (r["workers"], r["syncs_per_epoch"]))
            inputs["sync_fraction"] = (run["bytes_per_sync"] / run["dense_bytes_per_sync"],
                                       (f"results/sync_schemes.json: bytes per sync / dense state, {run['workers']} "
                                       f"workers, {run['syncs_per_epoch']} syncs/epoch, {run['combine']}"))
            inputs["syncs_per_epoch"] = (run["syncs_per_epoch"], "the same run")
    return inputs


def project(inputs: dict) -> dict:
    value = {k: v[0] for k, v in inputs.items()}
    value["glove_entries_per_s_core"] = GLOVE_ENTRIES_PER_S_CORE[0]
    entries = TOKENS * value["entries_per_token"]
    out = {"corpus": {"tokens": TOKENS, "vocabulary": VOCAB, "dim": DIM, "cooccurrence_entries_at_most": entries,
                      "cooccurrence_bytes_at_most": entries * 12, "spill_bytes_at_most":
                          entries * 12 * value["spill_per_output_byte"]}}
    core_seconds = {"statistics": TOKENS / value["statistics_tokens_per_s_worker"],
                    "glove": entries * EPOCHS["glove"] / value["glove_entries_per_s_core"]}
    gpu_seconds = {"glove (measured rate, old kernel)": entries * EPOCHS["glove"] / GLOVE_ENTRIES_PER_S_GPU[0],
                   "glove (issue 15 target)": entries * EPOCHS["glove"] / GPU_TARGETS["glove_entries"]}
    for model in ("sg", "sghs", "cbow", "fasttext"):
        if f"{model}_words_per_s_core" in value:
            core_seconds[model] = TOKENS * EPOCHS["word2vec"] / value[f"{model}_words_per_s_core"]
        if model in GPU_TARGETS:
            gpu_seconds[f"{model} (issue 15 target)"] = TOKENS * EPOCHS["word2vec"] / GPU_TARGETS[model]
    out["cpu_hours_on_nodes"] = {stage: {str(n): s / (n * CORES_PER_NODE) / 3600 for n in (1, 4, 16)}
                                 for stage, s in core_seconds.items()}
    out["gpu_hours_on_nodes"] = {stage: {str(n): s / (n * GPUS_PER_NODE) / 3600 for n in (1, 4)}
                                 for stage, s in gpu_seconds.items()}
    # I/O: GloVe reads its share of the matrix from object storage every epoch
    out["glove_s3_read_hours_on_nodes"] = {str(n): entries * 12 * EPOCHS["glove"] / (n * S3_BYTES_PER_S_PER_NODE) / 3600
                                           for n in (1, 4, 16)}
    state_bytes = 2 * VOCAB * DIM * 4
    out["memory_bytes"] = {"word2vec state (2 V D float32)": state_bytes,
                           "fastText state (+ 2 M n-gram buckets)": state_bytes + 2e6 * DIM * 4,
                           "GloVe state + AdaGrad sums": 2 * 2 * VOCAB * (DIM + 1) * 4,
                           "statistics worker at memory_mb 1024": (1024 + STATISTICS_OVERHEAD_MB[0]) * 2**20}
    if "sync_fraction" in value:
        per_sync = state_bytes * value["sync_fraction"]
        out["word2vec_sync"] = {
            "bytes_per_sync": per_sync, "syncs_per_epoch": value["syncs_per_epoch"],
            "seconds_per_epoch": {link: 2 * per_sync * value["syncs_per_epoch"] / rate
                                  for link, rate in LINK_BYTES_PER_S.items()}}
    return out


def main() -> None:
    inputs = measured_inputs()
    projection = project(inputs)
    assumptions = {"cores_per_node": CORES_PER_NODE, "gpus_per_node": GPUS_PER_NODE, "links": LINK_BYTES_PER_S,
                   "s3_bytes_per_s_per_node": S3_BYTES_PER_S_PER_NODE, "gpu_targets": GPU_TARGETS}
    sources = {k: v[1] for k, v in inputs.items()} | {
        "glove_entries_per_s_core": GLOVE_ENTRIES_PER_S_CORE[1], "glove_entries_per_s_gpu": GLOVE_ENTRIES_PER_S_GPU[1],
        "statistics_overhead_mb": STATISTICS_OVERHEAD_MB[1]}
    save("scale_projection", {"inputs": {k: v[0] for k, v in inputs.items()}, "sources": sources,
                              "assumptions": assumptions, **projection})
    for name, source in sources.items():
        print(f"- {name}: {source}")
    print("\n| stage | CPU: 1 node | 4 nodes | 16 nodes |\n|---|---|---|---|")
    for stage, hours in projection["cpu_hours_on_nodes"].items():
        print(f"| {stage} | " + " | ".join(f"{h:.2f} h" for h in hours.values()) + " |")
    print("\n| stage | GPU: one 8-GPU node | 4 nodes |\n|---|---|---|")
    for stage, hours in projection["gpu_hours_on_nodes"].items():
        print(f"| {stage} | " + " | ".join(f"{h:.2f} h" for h in hours.values()) + " |")
    print(json.dumps({k: projection[k] for k in ("corpus", "glove_s3_read_hours_on_nodes", "memory_bytes")}, indent=1))
    if "word2vec_sync" in projection:
        print(json.dumps(projection["word2vec_sync"], indent=1))


if __name__ == "__main__":
    main()
