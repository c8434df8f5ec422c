"""PPMI + SVD and LSA on the benchmark corpus: stage times, peak memory, evaluation, and variants.

    bash ../shared/bench/make-corpus.sh /work/bench-corpus      # ~13 M tokens, 16 shards
    PYTHONPATH=. .venv/bin/python benchmarks/count_models_bench.py /work/bench-corpus [--variants]

First the real job for `ppmi_svd` (Dask statistics, window 10, min_count 5; PPMI; SVD dim 100;
evaluation; publish to a temporary store), with memory sampled over the process tree as in
glove_bench.py. Then, on the same statistics, the LSA trainer and (with --variants) other
settings of both models, each trained and evaluated on the driver (the trainer a job would call).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from glove_bench import PeakMemory  # noqa: E402

from firth.pipelines.config import JobConfig  # noqa: E402
from firth.pipelines.evaluate import evaluate  # noqa: E402
from firth.pipelines.job import run  # noqa: E402
from firth.schemas.statistics import StatisticsSummary  # noqa: E402
from firth.schemas import tables  # noqa: E402
from firth.schemas.fs import join  # noqa: E402
from firth.workers.trainers import train  # noqa: E402

VARIANTS = [  # (label, model section) trained on the job's statistics
    ("lsa p=1", {"model": "lsa", "eigenvalue_weighting": 1.0}),
    ("lsa p=0.5", {"model": "lsa", "eigenvalue_weighting": 0.5}),
    ("lsa p=0", {"model": "lsa", "eigenvalue_weighting": 0.0}),
    ("ppmi α=1 (no smoothing)", {"model": "ppmi_svd", "context_smoothing": 1.0}),
    ("ppmi p=0", {"model": "ppmi_svd", "eigenvalue_weighting": 0.0}),
    ("ppmi p=1", {"model": "ppmi_svd", "eigenvalue_weighting": 1.0}),
    ("ppmi W+C", {"model": "ppmi_svd", "add_context": True}),
    ("ppmi shift k=5", {"model": "ppmi_svd", "shift": 5.0}),
    ("ppmi dim 300", {"model": "ppmi_svd", "dim": 300}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="folder of *.jsonl.gz shards (make-corpus.sh, or examples/sample-corpus)")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="Dask workers")
    parser.add_argument("--variants", action="store_true", help="also train the VARIANTS on the same statistics")
    parser.add_argument("--only", nargs="*", help="labels of the variants to run (default: all)")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as store:
        config = JobConfig.model_validate({
            "table": "bench-ppmi", "corpus": {"shards": [f"{args.corpus.rstrip('/')}/*.jsonl.gz"]},
            "statistics": {"n_workers": args.workers, "min_count": 5, "window": 10},
            "model": {"model": "ppmi_svd", "dim": args.dim}, "store": {"uri": store}})
        start = time.perf_counter()
        with PeakMemory() as memory:
            published = run(config)
        results["ppmi_svd (job)"] = {"timings_s": published.timings, "total_s": round(time.perf_counter() - start, 1),
                                     "peak_rss_tree_gb": round(memory.peak_total / 2**30, 2),
                                     "peak_rss_process_gb": round(memory.peak_process / 2**30, 2),
                                     "metrics": published.metrics}
        print(json.dumps(results, indent=1), flush=True)
        summary = _summary(config.statistics_uri)
        tokens = tables.read_parquet(join(config.statistics_uri, "vocabulary.parquet"), tables.VOCABULARY)["token"]
        for label, model in VARIANTS if args.variants or args.only else VARIANTS[:1]:
            if args.only and label not in args.only:
                continue
            variant = config.model_copy(update={"model": JobConfig.model_validate(
                {**config.model_dump(), "model": {"dim": args.dim, **model}}).model})
            start = time.perf_counter()
            with PeakMemory() as memory:
                trained = train(variant, summary, checkpoint_uri=join(store, "_none"))
            results[label] = {"train_s": round(time.perf_counter() - start, 1),
                              "peak_rss_process_gb": round(memory.peak_process / 2**30, 2),
                              "metrics": evaluate(tokens.to_pylist(), trained.vectors, config.evaluation.analogy_vocab),
                              "nonzeros": trained.metadata["count_model"]["nonzeros"]}
            print(label, json.dumps(results[label]), flush=True)
    print(json.dumps(results, indent=1))


def _summary(statistics_uri: str) -> StatisticsSummary:
    manifest = json.loads(Path(statistics_uri, "manifest.json").read_text())
    return StatisticsSummary(**{f.name: manifest[f.name] for f in dataclasses.fields(StatisticsSummary)})


if __name__ == "__main__":
    main()
