"""GloVe end to end on the benchmark corpus: stage times, peak memory, evaluation.

    bash ../shared/bench/make-corpus.sh /tmp/bench-corpus      # ~13 M tokens, 16 shards
    .venv/bin/python benchmarks/glove_bench.py /tmp/bench-corpus [--x-max 100] [--epochs 15]

Runs the real job (Dask statistics, Ray Train GloVe, evaluation, publish to a temporary
store) with the settings the reference figures use: dim 100, window 10, min_count 5, 15
epochs. Memory is sampled every 0.2 s over the whole process tree (driver, Dask and Ray
workers): the peak of the summed RSS and the largest single process.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import psutil

from firth.pipelines.config import JobConfig
from firth.pipelines.job import run


class PeakMemory:
    """Peak RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_total, self.peak_process = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            rss = []
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            self.peak_total = max(self.peak_total, sum(rss))
            self.peak_process = max(self.peak_process, max(rss))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="folder made by make-corpus.sh")
    parser.add_argument("--x-max", type=float, default=100.0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2, help="Dask and Ray Train workers")
    parser.add_argument("--shuffle-buffer", type=int, default=None, help="model.shuffle_buffer (entries)")
    parser.add_argument("--seed", type=int, default=0, help="model.seed")
    parser.add_argument("--syncs-per-epoch", type=int, default=None, help="model.syncs_per_epoch")
    parser.add_argument("--token-pattern", default=None, help="tokenizer.pattern (default: firth's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as store:
        config = JobConfig.model_validate({
            "table": "bench-glove",
            "corpus": {"shards": [f"{args.corpus.rstrip('/')}/*.jsonl.gz"]},
            "statistics": {"n_workers": args.workers, "min_count": 5, "window": 10},
            "tokenizer": {"pattern": args.token_pattern} if args.token_pattern else {},
            "model": {"dim": 100, "x_max": args.x_max, "epochs": args.epochs, "num_workers": args.workers, "seed": args.seed,
                      **({"shuffle_buffer": args.shuffle_buffer} if args.shuffle_buffer else {}),
                      **({"syncs_per_epoch": args.syncs_per_epoch} if args.syncs_per_epoch else {})},
            "store": {"uri": store},
        })
        start = time.perf_counter()
        with PeakMemory() as memory:
            published = run(config)
        total = time.perf_counter() - start

    print(json.dumps({"settings": {"x_max": args.x_max, "epochs": args.epochs, "workers": args.workers,
                                   "shuffle_buffer": config.model.shuffle_buffer, "seed": args.seed,
                                   "syncs_per_epoch": config.model.syncs_per_epoch,
                                   "token_pattern": config.tokenizer.pattern},
                      "timings_s": published.timings, "total_s": round(total, 1),
                      "peak_rss_tree_gb": round(memory.peak_total / 2**30, 2),
                      "peak_rss_process_gb": round(memory.peak_process / 2**30, 2),
                      "metrics": published.metrics}, indent=1))


if __name__ == "__main__":
    main()
