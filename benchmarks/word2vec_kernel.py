"""The word2vec / fastText CPU kernel alone against gensim's, in one process, one thread each or more.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/word2vec_kernel.py --stats STATISTICS_DIR --model sg --words 1000000
    # 2 threads: firth's train_block on two halves of the words at once (Hogwild, as WorkerLoop's
    # threads), gensim with workers=2
    PYTHONPATH=$PWD .venv/bin/python benchmarks/word2vec_kernel.py --stats STATISTICS_DIR --model sghs --threads 2

Both train one epoch on the first N words of the statistics' tokens table (dim 100, window 5,
negative 5, sample 1e-3; sghs: hierarchical softmax, negative 0): firth's `train_block` on one
thread against gensim's `train` with `workers=1`. The figures are wall and CPU *process* time; the
CPU time is what a loaded machine disturbs least (with one thread), and with several threads it
shows what they cost each other (two threads that contend for rows spend more CPU than one for
the same words); gensim's includes its producer thread. Both sides get the whole vocabulary with
its corpus counts (gensim: `build_vocab_from_freq`): the same Huffman tree, noise table and
subsampling rates. Results: benchmarks/results/word2vec_kernel-MODEL-Nt.json (N threads).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

from benchmarks.results import save  # noqa: E402
from benchmarks.word2vec_vs_gensim import read_statistics  # noqa: E402
from firth.workers.word2vec.loop import equal_parts  # noqa: E402
from firth.workers.word2vec.model import (  # noqa: E402
    NO_HUFFMAN,
    alias_table,
    huffman,
    init_state,
    keep_probabilities,
    make_layout,
    sigmoid_tables,
)
from firth.workers.word2vec.kernel_numba import train_block  # noqa: E402


def first_words(stats: str, words: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    tokens, counts, files = read_statistics(stats)
    column = pa.concat_tables([pq.read_table(f, columns=["token_ids"]) for f in files])["token_ids"].combine_chunks()
    ids, offsets = column.values.to_numpy().astype(np.int32), column.offsets.to_numpy().astype(np.int64)
    docs = int(np.searchsorted(offsets, words))
    return tokens, counts, ids[:offsets[docs]], offsets[:docs + 1]


def firth_seconds(model: str, tokens, counts, ids, offsets, threads: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, mean loss per example) of one epoch on `threads` threads."""
    fasttext = (3, 6, 2_000_000) if model == "fasttext" else None
    hs = model == "sghs"
    negative = 0 if hs else 5
    layout = make_layout(tokens, 100, negative > 0, hs, fasttext)
    syn0, syn1neg, syn1 = layout.views(init_state(layout, 0))
    tree = huffman(counts) if hs else NO_HUFFMAN

    tables = (keep_probabilities(counts, 1e-3), *alias_table(counts), *tree)
    sig, logsig = sigmoid_tables()

    def run(part: int, ids, offsets) -> np.ndarray:
        stats = np.zeros(3)
        train_block(syn0, syn1neg, syn1, ids, offsets, layout.row_offsets, layout.rows, *tables, model != "cbow",
                    negative, hs, 5, 0.025, 0.0001, np.array([1 + part], np.uint64), sig, logsig, stats)
        return stats

    def run_part(part: int, first: int, last: int) -> np.ndarray:  # WorkerLoop's split of a block
        return run(part, ids[offsets[first]:offsets[last]], offsets[first:last + 1] - offsets[first])

    run(0, ids[:1000], np.array([0, 1000]))  # compile
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        parts = [(k, *span) for k, span in enumerate(equal_parts(offsets, threads))]
        stats = sum(pool.map(lambda part: run_part(*part), parts))
    return time.perf_counter() - wall, time.process_time() - cpu, stats[0] / stats[1]


def gensim_seconds(model: str, tokens, counts, ids, offsets, threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of gensim's `train`, one epoch, `threads` workers."""
    from gensim.models import FastText, Word2Vec

    sentences = [[tokens[i] for i in ids[offsets[k]:offsets[k + 1]]] for k in range(len(offsets) - 1)]
    hs = model == "sghs"
    trained = (FastText if model == "fasttext" else Word2Vec)(
        vector_size=100, window=5, negative=0 if hs else 5, hs=int(hs), sample=1e-3, min_count=1, workers=threads,
        sg=int(model != "cbow"),
        epochs=1, **(dict(min_n=3, max_n=6, bucket=2_000_000) if model == "fasttext" else {}))
    trained.build_vocab_from_freq(dict(zip(tokens, counts.tolist())))
    wall, cpu = time.perf_counter(), time.process_time()
    trained.train(sentences, total_examples=len(sentences), epochs=1)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", required=True, help="a statistics folder (vocabulary.parquet, tokens/)")
    parser.add_argument("--model", choices=["sg", "sghs", "cbow", "fasttext"], default="sg")
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternate firth and gensim this many times")
    parser.add_argument("--threads", type=int, default=1, help="firth's threads and gensim's workers")
    args = parser.parse_args()
    tokens, counts, ids, offsets = first_words(args.stats, args.words)
    print(f"{args.model}: {len(ids):,} words, {args.threads} thread(s) each, one epoch: wall / CPU seconds")
    rounds = []
    for _ in range(args.rounds):
        wall, cpu, loss = firth_seconds(args.model, tokens, counts, ids, offsets, args.threads)
        their_wall, their_cpu = gensim_seconds(args.model, tokens, counts, ids, offsets, args.threads)
        print(f"  firth {wall:6.2f} / {cpu:6.2f} s (loss {loss:.4f})   gensim {their_wall:6.2f} / {their_cpu:6.2f} s   "
              f"firth words/s / gensim's {their_wall / wall:.2f}x", flush=True)
        rounds.append({"firth_wall_s": wall, "firth_cpu_s": cpu, "firth_loss": loss, "gensim_wall_s": their_wall,
                       "gensim_cpu_s": their_cpu, "firth_over_gensim": their_wall / wall})
    save(f"word2vec_kernel-{args.model}-{args.threads}t", {"model": args.model, "words": len(ids),
                                                           "threads": args.threads, "rounds": rounds,
                                                           "load_average": os.getloadavg()})


if __name__ == "__main__":
    main()
