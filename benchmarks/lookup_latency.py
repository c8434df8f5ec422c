"""Consumer latency on a published table: open (load), one vector, a 10,000-token batch, a neighbours
query; on a local store and on a moto_server S3 endpoint this script starts on 127.0.0.1. The peer
is gensim's KeyedVectors on the same vectors (loaded from firth's word2vec binary export).

    .venv/bin/python benchmarks/lookup_latency.py                      # 100k x 300
    .venv/bin/python benchmarks/lookup_latency.py --rows 20000 --dim 100

Figures are medians over repeats (single lookups: over --lookups calls); the first neighbours
query also builds the unit-length matrix once, so it is reported apart from the steady state.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.moto import start_moto  # noqa: E402
from firth.schemas.consumer import open_embeddings  # noqa: E402
from firth.schemas.store import TableStore  # noqa: E402


def word_table(rows: int, dim: int) -> pa.Table:
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)  # (rows, dim)
    return pa.table({"token": [f"w{i}" for i in range(rows)], "id": pa.array(np.arange(rows), pa.int32()),
                     "count": pa.array(np.arange(rows, 0, -1), pa.int64()),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_call(fn, calls: int) -> float:
    """Mean seconds per call over `calls` back-to-back calls (too fast to time one by one)."""
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls


def measure(load, lookup, lookup_many, neighbors, args, rng) -> dict[str, float]:
    """Time one reader: `load()` returns a handle; the others take (handle, token(s))."""
    open_s = timed(load, args.opens)
    handle = load()
    tokens = [f"w{i}" for i in rng.integers(0, args.rows, args.lookups)]
    single_s = per_call(lambda i: lookup(handle, tokens[i]), args.lookups)
    batch = [f"w{i}" for i in rng.integers(0, args.rows, args.batch)]
    batch_s = timed(lambda: lookup_many(handle, batch), args.repeats)
    start = time.perf_counter()
    neighbors(handle, "w0")
    first_neighbors_s = time.perf_counter() - start
    queries = iter([f"w{i}" for i in rng.integers(0, args.rows, args.repeats)])
    neighbors_s = timed(lambda: neighbors(handle, next(queries)), args.repeats)
    return {"open": open_s, "vector": single_s, "batch": batch_s, "neighbors_first": first_neighbors_s,
            "neighbors": neighbors_s}


def measure_firth(store: TableStore, args, rng) -> dict[str, float]:
    return measure(lambda: open_embeddings(store.uri, "t@production", store.storage_options),
                   lambda emb, token: emb.vector(token), lambda emb, batch: emb.vectors_for(batch),
                   lambda emb, token: emb.neighbors(token, k=10), args, rng)


def measure_gensim(emb, folder: Path, args, rng) -> dict[str, float]:
    from gensim.models import KeyedVectors

    path = emb.to_word2vec(str(folder / "t.bin"), binary=True)
    return measure(lambda: KeyedVectors.load_word2vec_format(path, binary=True),
                   lambda kv, token: kv[token], lambda kv, batch: kv[batch],
                   lambda kv, token: kv.most_similar(token, topn=10), args, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=100_000, help="single-vector lookups timed together")
    parser.add_argument("--repeats", type=int, default=20, help="batch and neighbours queries")
    parser.add_argument("--opens", type=int, default=3, help="opens (loads) per store")
    args = parser.parse_args()

    table = word_table(args.rows, args.dim)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        moto, options = start_moto()
        try:
            stores = {"local": TableStore(str(Path(folder) / "store")),
                      "moto S3": TableStore("s3://bench/store", options)}
            for label, store in stores.items():
                start = time.perf_counter()
                version = store.publish("t", table, {"benchmark": True})
                publish_s = time.perf_counter() - start
                from firth.schemas.aliases import move_alias

                move_alias(store, "t", "production", version)
                results[label] = measure_firth(store, args, np.random.default_rng(1)) | {"publish": publish_s}
                print(f"{label}: done", file=sys.stderr)
            emb = open_embeddings(stores["local"].uri, "t")
            results["gensim KeyedVectors"] = measure_gensim(emb, Path(folder), args, np.random.default_rng(1))
        finally:
            moto.terminate()
            moto.wait(timeout=10)

    print(f"\n{args.rows:,} x {args.dim} float32 table; batch {args.batch:,} tokens; neighbours k=10 by cosine\n")
    print("| reader | publish | open (load) | one vector | 10k-token batch | neighbours (first) | neighbours |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        publish = f"{r['publish']:.2f} s" if "publish" in r else "-"
        print(f"| {label} | {publish} | {r['open']:.2f} s | {r['vector'] * 1e6:.2f} µs | {r['batch'] * 1e3:.2f} ms | "
              f"{r['neighbors_first'] * 1e3:.1f} ms | {r['neighbors'] * 1e3:.1f} ms |")
    peer = results["gensim KeyedVectors"]
    local = results["local"]
    print("\nfirth local / gensim (time ratio, < 1 is faster): "
          + ", ".join(f"{k} {local[k] / peer[k]:.2f}" for k in ("open", "vector", "batch", "neighbors")))


if __name__ == "__main__":
    main()
