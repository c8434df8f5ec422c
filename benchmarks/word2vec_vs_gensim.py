"""word2vec and fastText: firth against gensim 4.4 in the same run, on the same tokenised sentences.

    # statistics (vocabulary + tokens table, min_count 5) of the benchmark corpus, then the comparison
    .venv/bin/python benchmarks/word2vec_vs_gensim.py /work/bench-corpus [--models sg,sghs,cbow,fasttext]
    # reuse statistics computed before (a folder with vocabulary.parquet and tokens/)
    .venv/bin/python benchmarks/word2vec_vs_gensim.py --stats /tmp/benchstats
    # each side 3 times (seeds 1, 2, 3): mean and min-max per figure
    .venv/bin/python benchmarks/word2vec_vs_gensim.py --stats /tmp/benchstats --models sghs --seeds 3
    # export them (plus the evaluation files) for a machine without gensim, Ray or pydantic
    .venv/bin/python benchmarks/word2vec_vs_gensim.py --stats /tmp/benchstats --export bench-data
    # the models with the numba-cuda kernel alone on one GPU (workers/word2vec/kernel_cuda.py; needs
    # torch, numpy, pyarrow, numba with its CUDA target, scipy)
    python benchmarks/word2vec_vs_gensim.py --data bench-data --device cuda --skip-gensim [--models sg]
    # the same loop on CPU: the numba CPU kernel, one thread (the GPU kernel's reference)
    .venv/bin/python benchmarks/word2vec_vs_gensim.py --stats SUBSET --device cpu --models sg

Settings (both sides): dim 100, window 5, negative 5, sample 1e-3, min_count 5 (the
statistics'), 5 epochs, alpha 0.025 -> 0.0001, 2 workers; fastText n-grams 3..6 in 2 M buckets.
Models: sg (skip-gram, negative sampling), sghs (skip-gram, hierarchical softmax, negative 0),
cbow (negative sampling), fasttext (skip-gram, negative sampling).
gensim's workers are threads on one shared model (Hogwild); firth's default here is the same
shape, one Ray Train worker with 2 Hogwild threads (`threads_per_worker`); `--firth-workers 2
--threads 1` runs two Ray Train workers that sync `--syncs` times per epoch instead (`--sync`:
how; benchmarks/sync_schemes.py compares the ways).
gensim gets firth's tokens table as sentences (documents, split at gensim's 10,000-word limit),
so both train on the same words. words/s = corpus words x epochs / training seconds (firth:
its epoch time, without Ray's start; gensim: `train()`); wall = everything, Ray start included.
Peak memory: the summed RSS of this process and its children (Ray workers), sampled.
Quality: pipelines/evaluate.py (WordSim-353 and SimLex-999 Spearman ρ, 3CosAdd analogies over 30 k words).

--seeds N runs each side N times, seeds 1..N (run k of both sides uses seed k), and reports each
figure's mean and min-max: a difference smaller than a side's own spread is noise. Results are
merged into benchmarks/results/word2vec_vs_gensim.json per model (a run of some models keeps the
others' earlier figures), each model with its own command, date, commit and load average.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

from benchmarks.results import save  # noqa: E402

SETTINGS = dict(dim=100, window=5, negative=5, hs=False, sample=1e-3, epochs=5, alpha=0.025, min_alpha=0.0001)
FASTTEXT = dict(min_n=3, max_n=6, buckets=2_000_000)
EVAL_FILES = ("wordsim353.tsv", "simlex999.txt", "questions-words.txt")
MODELS = {"sg": "skip-gram", "sghs": "skip-gram, hierarchical softmax", "cbow": "CBOW",
          "fasttext": "fastText (skip-gram)"}
METRICS = ["words_per_sec", "wall_s", "peak_gb", "loss", "wordsim353_spearman", "simlex999_spearman",
           "analogy_accuracy"]


def model_settings(model: str) -> dict:
    """SETTINGS for one model: sghs trains hierarchical softmax alone (negative 0)."""
    return SETTINGS | ({"negative": 0, "hs": True} if model == "sghs" else {})


def read_statistics(folder: str) -> tuple[list[str], np.ndarray, list[str]]:
    vocabulary = pq.read_table(os.path.join(folder, "vocabulary.parquet"))
    files = sorted(glob.glob(os.path.join(folder, "tokens", "shard-*.parquet")))
    if not files:
        raise SystemExit(f"{folder}: no tokens/shard-*.parquet; pass the statistics folder of a firth run")
    return vocabulary["token"].to_pylist(), vocabulary["count"].to_numpy(), files


def units_of(files: list[str]) -> list[tuple[str, int, int]]:
    units = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        leaf = next(c for c in range(meta.num_columns) if meta.schema.column(c).path.startswith("token_ids"))
        units += [(path, g, meta.row_group(g).column(leaf).num_values) for g in range(meta.num_row_groups)]
    return units


def evaluation(tokens: list[str], vectors: np.ndarray, data: str | None) -> dict[str, float]:
    import firth.pipelines.evaluate as evaluate

    if data:  # the evaluation files exported beside the tokens (no gensim on that machine)
        evaluate._gensim_test_data = lambda name: Path(data) / name
    return evaluate.evaluate(tokens, vectors, 30_000)


def compute_statistics(corpus: str, folder: str) -> None:
    from firth.pipelines.config import JobConfig
    from firth.pipelines.corpus.shards import list_shards
    from firth.pipelines.statistics.engines import open_engine
    from firth.pipelines.statistics.steps import Location
    from firth.pipelines.statistics.steps import compute_statistics as run

    config = JobConfig.model_validate({"table": "bench", "corpus": {"shards": [f"{corpus.rstrip('/')}/*.jsonl.gz"]},
                                       "statistics": {"n_workers": 2, "min_count": 5, "window": 5},
                                       "store": {"uri": folder}})
    with open_engine(config.statistics) as engine:
        run(list_shards(config.corpus), config, engine, Location(folder, {}))


def export(stats: str, destination: str) -> None:
    import gensim

    dest = Path(destination)
    (dest / "tokens").mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(stats) / "vocabulary.parquet", dest)
    for path in sorted(Path(stats, "tokens").glob("shard-*.parquet")):
        shutil.copy(path, dest / "tokens")
    for name in EVAL_FILES:
        shutil.copy(Path(gensim.__file__).parent / "test" / "test_data" / name, dest)
    print(f"exported {stats} to {dest}")


def sentences(tokens: list[str], files: list[str], limit: int = 10_000) -> list[list[str]]:
    """Every document as a list of words, split at gensim's MAX_WORDS_IN_BATCH."""
    vocabulary = np.array(tokens, dtype=object)
    out = []
    for path in files:
        column = pq.read_table(path, columns=["token_ids"]).column(0).combine_chunks()
        ids, offsets = column.values.to_numpy(), column.offsets.to_numpy()
        for d in range(len(offsets) - 1):
            for start in range(offsets[d], offsets[d + 1], limit):
                out.append(vocabulary[ids[start:min(start + limit, offsets[d + 1])]].tolist())
    return out


def run_firth(model: str, tokens, counts, files, workers: int, threads: int, data: str | None, sync: str | None,
              syncs: int | None, seed: int) -> dict:
    from benchmarks.glove_bench import PeakMemory
    from firth.pipelines.config import FastTextConfig, Word2VecConfig
    from firth.workers.word2vec.train import train_word2vec

    cls = FastTextConfig if model == "fasttext" else Word2VecConfig
    config = cls(**model_settings(model), **(FASTTEXT if model == "fasttext" else {}), num_workers=workers,
                 threads_per_worker=threads, architecture="cbow" if model == "cbow" else "skipgram",
                 seed=seed, **{k: v for k, v in (("syncs_per_epoch", syncs), ("sync", sync)) if v is not None})
    with tempfile.TemporaryDirectory() as checkpoints, PeakMemory() as memory:
        start = time.perf_counter()
        result = train_word2vec(str(Path(files[0]).parent), tokens, counts, config, checkpoint_uri=checkpoints)
        wall = time.perf_counter() - start
    return {"words_per_sec": result.words_per_sec, "wall_s": wall, "peak_gb": memory.peak_total / 2**30,
            "loss": result.epoch_losses[-1], **evaluation(tokens, result.vectors, data)}


def run_gensim(model: str, corpus: list[list[str]], words: int, workers: int, seed: int) -> dict:
    from gensim.models import FastText, Word2Vec

    from benchmarks.glove_bench import PeakMemory

    settings = model_settings(model)
    args = dict(vector_size=settings["dim"], window=settings["window"], negative=settings["negative"],
                hs=int(settings["hs"]), sample=settings["sample"], alpha=settings["alpha"],
                min_alpha=settings["min_alpha"], min_count=1, workers=workers, sg=int(model != "cbow"),
                epochs=settings["epochs"], seed=seed)
    if model == "fasttext":
        args |= dict(min_n=FASTTEXT["min_n"], max_n=FASTTEXT["max_n"], bucket=FASTTEXT["buckets"])
    with PeakMemory() as memory:
        start = time.perf_counter()
        trained = (FastText if model == "fasttext" else Word2Vec)(**args)
        trained.build_vocab(corpus)
        train_start = time.perf_counter()
        trained.train(corpus, total_examples=len(corpus), epochs=SETTINGS["epochs"])
        end = time.perf_counter()
    return {"words_per_sec": words * SETTINGS["epochs"] / (end - train_start), "wall_s": end - start,
            "peak_gb": memory.peak_total / 2**30, "loss": float("nan"),
            **evaluation(trained.wv.index_to_key, trained.wv.vectors, None)}


def run_device(model: str, tokens, counts, files, device: str, data: str | None) -> dict:
    """One model through WorkerLoop in this process (no Ray): on cuda the numba-cuda kernel (the GPU
    figure), on cpu the numba CPU kernel with one thread (its reference)."""
    import torch

    from firth.workers.word2vec.loop import WorkerLoop, read_unit
    from firth.workers.word2vec.model import make_layout, word_vectors

    class LocalFiles:
        def open(self, path, mode):
            return open(path, mode)

    config = SimpleNamespace(**model_settings(model), architecture="cbow" if model == "cbow" else "skipgram", seed=0,
                             block_words=2_000_000)
    subwords = (FASTTEXT["min_n"], FASTTEXT["max_n"], FASTTEXT["buckets"]) if model == "fasttext" else None
    layout = make_layout(tokens, config.dim, config.negative > 0, config.hs, subwords)
    worker = WorkerLoop(config, layout, counts, torch.device(device), rank=0)
    units = units_of(files)
    start = time.perf_counter()
    losses = []
    for epoch in range(config.epochs):
        stats, words = worker.epoch(epoch, units, lambda p, g: read_unit(LocalFiles(), p, g, len(tokens)))
        losses.append(stats[0] / max(stats[1], 1))
        print(f"  epoch {epoch + 1}: loss {losses[-1]:.4f}", flush=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    state = worker.state_t.cpu().numpy()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return {"words_per_sec": words * config.epochs / seconds, "wall_s": seconds, "peak_gb": peak,
            "loss": losses[-1], **evaluation(tokens, word_vectors(layout, state), data)}


def summary(runs: list[dict]) -> dict:
    """Each figure's mean, min and max over the runs (None where a side does not report it)."""
    out = {}
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None and np.isfinite(r[key])]
        out[key] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)} if values else None
    return out


def show(model: str, firth: dict, gensim: dict | None, n: int) -> None:
    """The two sides' summaries: mean (min-max) per figure."""
    def cell(figure):
        if figure is None:
            return f"{'-':>26}"
        return f"{figure['mean']:10.4g} ({figure['min']:.4g}-{figure['max']:.4g})".rjust(26)

    print(f"\n{model}, {n} run(s) each: mean (min-max)")
    print(f"  {'':22}{'firth':>26}{'gensim':>26}")
    for key in METRICS:
        print(f"  {key:22}{cell(firth[key])}{cell(gensim[key] if gensim else None)}")
    sys.stdout.flush()


def merge_save(figures: dict, model: str, entry: dict) -> None:
    """Add one model's entry to the results file, keeping the other models' earlier entries."""
    from benchmarks.results import RESULTS, machine

    path = RESULTS / "word2vec_vs_gensim.json"
    models = {}
    if path.exists():
        earlier = json.loads(path.read_text())
        models = earlier.get("models", {})
        if earlier.get("words") not in (None, figures["words"]):  # another corpus: keep none of it
            models = {}
    models[model] = entry | {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                             "load_average": os.getloadavg(), "machine": machine()}
    save("word2vec_vs_gensim", figures | {"models": models})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", help="folder made by make-corpus.sh (statistics are computed)")
    parser.add_argument("--stats", help="a statistics folder (vocabulary.parquet, tokens/) to reuse")
    parser.add_argument("--data", help="an exported folder (--export): tokens, vocabulary and evaluation files")
    parser.add_argument("--export", help="copy the statistics and evaluation files here, then stop")
    parser.add_argument("--models", default="sg,cbow,fasttext")
    parser.add_argument("--workers", type=int, default=2, help="gensim's worker threads")
    parser.add_argument("--firth-workers", type=int, default=1, help="firth's Ray Train workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="firth's threads per worker (default: --workers / --firth-workers)")
    parser.add_argument("--device", help="cuda or cpu: --models through the worker loop in-process, no Ray "
                                         "(cuda: the numba-cuda kernel; cpu: the numba kernel, one thread)")
    parser.add_argument("--skip-gensim", action="store_true")
    parser.add_argument("--sync", choices=["sum", "touched", "mean", "aligned"],
                        help="firth's worker sync (model.sync; default: the config's)")
    parser.add_argument("--syncs", type=int, help="firth's syncs_per_epoch (default: the config's)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per side, seeds 1..N: mean and min-max")
    args = parser.parse_args()

    stats = args.data or args.stats
    temporary = None
    if stats is None:
        if not args.corpus:
            parser.error("give a corpus folder, --stats or --data")
        temporary = tempfile.mkdtemp(prefix="w2v-bench-")
        stats = temporary
        start = time.perf_counter()
        compute_statistics(args.corpus, stats)
        print(f"statistics: {time.perf_counter() - start:.1f} s")
    if args.export:
        export(stats, args.export)
        return
    tokens, counts, files = read_statistics(stats)
    words = int(sum(u[2] for u in units_of(files)))
    print(f"corpus: {words:,} words in {len(files)} tokens files, vocabulary {len(tokens):,}")
    if args.device:
        kernel = "numba CPU kernel" if args.device == "cpu" else "numba-cuda kernel"
        for model in args.models.split(","):
            if model not in MODELS:
                parser.error(f"--models: unknown model {model!r}; choose from {', '.join(MODELS)}")
            result = run_device(model, tokens, counts, files, args.device, args.data)
            show(f"{MODELS[model]}, {kernel} on {args.device}", summary([result]), None, 1)
        return
    corpus = None if args.skip_gensim else sentences(tokens, files)
    figures = {"words": words, "vocabulary": len(tokens), "settings": SETTINGS, "fasttext": FASTTEXT}
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    threads = args.threads or max(1, args.workers // args.firth_workers)
    for model in args.models.split(","):
        if model not in MODELS:
            parser.error(f"--models: unknown model {model!r}; choose from {', '.join(MODELS)}")
        firth, gensim = [], []
        for seed in range(1, args.seeds + 1):
            firth.append(run_firth(model, tokens, counts, files, args.firth_workers, threads, args.data, args.sync,
                                   args.syncs, seed) | {"seed": seed, "load_average": os.getloadavg()})
            print(f"  {model} firth seed {seed}: {firth[-1]}", flush=True)
            if not args.skip_gensim:
                gensim.append(run_gensim(model, corpus, words, args.workers, seed)
                              | {"seed": seed, "load_average": os.getloadavg()})
                print(f"  {model} gensim seed {seed}: {gensim[-1]}", flush=True)
        sides = {"firth": summary(firth), "gensim": summary(gensim) if gensim else None}
        show(MODELS[model], sides["firth"], sides["gensim"], args.seeds)
        merge_save(figures, model, {"command": command, "settings": model_settings(model), "seeds": args.seeds,
                                    **sides, "runs": {"firth": firth, "gensim": gensim}})
    if temporary:
        shutil.rmtree(temporary)


if __name__ == "__main__":
    main()
