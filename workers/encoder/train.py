"""Encoder training on Ray Train, and the job's entry point for `model: encoder`.

    corpus ──> start folder (checkpoint or new BERT + corpus tokenizer)  ─┐
          ──> pairs.parquet / texts.parquet (held-out documents excluded) ─┴─> TorchTrainer (DDP) ─> model folder
          ──> held-out title -> body queries ──> recall@10 / MRR@10 (before and after training)
    model folder ──> firth.workers.encoder.embed (Ray actors) ──> the document table, published by the job

Training runs on the one Ray Train harness (workers/raytrain/), as GloVe's and word2vec's: each
worker runs firth.workers.encoder.loop.EncoderTraining on its share of the rows (DDP: gloo on CPU,
NCCL with bf16 autocast on GPUs), an epoch at a time, in the shared epoch loop; after every epoch
rank 0 checkpoints the model folder, AdamW's state and meta.json; after a worker failure
(FailureConfig) the workers restart from the last one. Progress, worker warnings and failures
reach the driver through workers/raytrain/console.py.
"""
from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray.train
import torch
from torch.nn.parallel import DistributedDataParallel

from firth.pipelines.config import EncoderConfig, JobConfig
from firth.pipelines.corpus.shards import Shard, ShardReport, iter_documents, list_shards
from firth.schemas.fs import filesystem, join
from firth.workers.encoder.loop import (EncoderTraining, TrainSettings, load_optimizer_state, save_optimizer_state,
                                        steps_per_epoch)
from firth.workers.encoder.model import (
    EncoderSpec,
    build_encoder,
    load_encoder,
    load_trainable,
    resolve_checkpoint,
    save_trainable,
)
from firth.workers.encoder.pairs import Pair, corpus_pairs, is_held_out, read_pairs_file
from firth.workers.encoder.retrieval import title_and_body
from firth.workers.raytrain.epochs import EpochPoints
from firth.workers.raytrain.harness import fit, start_ray, stop_ray
from firth.workers.trainers import Trained

RUN_NAME = "encoder"
OPTIMIZER_FILE, MODEL_DIR = "optimizer.pt", "model"  # in each checkpoint, beside its meta.json
PAIRS_SCHEMA = pa.schema([("anchor", pa.string()), ("positive", pa.string()), ("negative", pa.string())])
TEXTS_SCHEMA = pa.schema([("text", pa.string())])


def train(config: JobConfig, statistics=None, *, checkpoint_uri: str, fault_injection: str | None = None) -> Trained:
    """The job's entry point (firth.workers.trainers): train the encoder, evaluate it, embed the corpus.

    A Ray started here (none was running) is shut down before returning: the table is a reader of
    a Parquet file and needs no Ray."""
    own_ray = start_ray()
    try:
        return _train_and_embed(config, checkpoint_uri=checkpoint_uri, fault_injection=fault_injection)
    finally:
        if own_ray:
            stop_ray()


def _train_and_embed(config: JobConfig, *, checkpoint_uri: str, fault_injection: str | None) -> Trained:
    from firth.workers.encoder.embed import embed_corpus
    from firth.workers.encoder.retrieval import evaluate_retrieval

    model, options = config.model, config.store.storage_options
    shards = list_shards(config.corpus)
    start_folder = _local_folder("start")
    _say(f"starting encoder: {model.checkpoint or 'a new BERT with a tokenizer trained on the corpus'}")
    _prepare_start(model, shards, config, start_folder)
    _say("collecting training pairs and the held-out evaluation set")
    data = _prepare_data(model, shards, config, checkpoint_uri, options)
    _say(f"{data['pairs']} training pairs, {data['texts']} MLM texts, {len(data['eval'])} held-out title -> body queries")
    metrics = {"training_pairs": float(data["pairs"]), "eval_queries": float(len(data["eval"]))}
    if data["eval"]:
        _say("evaluating the starting encoder")
        metrics |= {f"{k}_start": v for k, v in evaluate_retrieval(load_encoder(start_folder), data["eval"]).items()}

    settings = TrainSettings(epochs=model.epochs, mlm_epochs=model.mlm_epochs, batch_size=model.batch_size,
                             learning_rate=model.learning_rate, temperature=model.temperature,
                             mlm_probability=model.mlm_probability, seed=model.seed)
    epochs: list[dict] = []
    model_folder = start_folder
    if settings.total_epochs:
        start_uri = join(checkpoint_uri, "start-model")
        fs, path = filesystem(start_uri, options)
        fs.put(str(start_folder).rstrip("/") + "/", path, recursive=True)
        model_folder, epochs = train_encoder(start_uri, data, settings, model, storage_options=options,
                                             checkpoint_uri=checkpoint_uri, fault_injection=fault_injection)
        metrics["samples_per_sec"] = sum(e["samples"] for e in epochs) / max(sum(e["seconds"] for e in epochs), 1e-9)
    if data["eval"]:
        _say("evaluating the trained encoder")
        metrics |= evaluate_retrieval(load_encoder(model_folder), data["eval"])

    _say(f"embedding the corpus on {model.embed_workers} Ray actor(s)")
    table, embedded = embed_corpus(model_folder, shards, config, output_uri=join(checkpoint_uri, "embeddings.parquet"))
    spec = json.loads((Path(model_folder) / "firth_encoder.json").read_text())
    return Trained(table=table, epoch_losses=[e["loss"] for e in epochs], metrics=metrics,
                   artifacts={"model": str(model_folder)},
                   metadata={"encoder": {**spec, "dim": embedded["dim"], "documents": embedded["documents"],
                                         "rows": embedded["rows"], "epochs": epochs,
                                         "model_artifact": "model", "load_with": "firth.workers.encoder.model.load_encoder"}})


def _say(message: str) -> None:
    print(f"firth: encoder: {message}", file=sys.stderr, flush=True)


def _local_folder(label: str) -> Path:
    """A scratch folder that lives until the process ends (the job publishes it as an artifact)."""
    folder = Path(tempfile.mkdtemp(prefix=f"firth-encoder-{label}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _documents(shards: list[Shard], config: JobConfig) -> Iterator[tuple[str, str]]:
    for shard in shards:
        for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri), whole=True):
            yield from zip(batch.ids, batch.texts)


def _prepare_start(model: EncoderConfig, shards: list[Shard], config: JobConfig, folder: Path) -> None:
    """The starting encoder, saved to `folder`: a checkpoint, or a new BERT with a corpus tokenizer."""
    spec = EncoderSpec(model.pooling, model.normalize, model.max_length, origin=model.checkpoint or "")
    if model.checkpoint is not None:
        encoder = load_encoder(resolve_checkpoint(model.checkpoint), spec)
        encoder.save(folder)
        return
    from firth.workers.encoder.subword import train_encoder_tokenizer

    texts = (text for _, (doc_id, text) in zip(range(model.tokenizer_documents), _documents(shards, config))
             if not is_held_out(doc_id, model.holdout_fraction))
    tokenizer = train_encoder_tokenizer(texts, model.vocab_size, model.tokenizer)
    spec = EncoderSpec(model.pooling, model.normalize, model.max_length,
                       origin=f"bert layers={model.layers} heads={model.heads} hidden={model.hidden_size}")
    encoder, masked_lm = build_encoder(tokenizer, layers=model.layers, heads=model.heads,
                                       hidden_size=model.hidden_size, intermediate_size=model.intermediate_size,
                                       max_length=model.max_length, spec=spec, seed=model.seed)
    save_trainable(encoder, masked_lm, folder)


def _prepare_data(model: EncoderConfig, shards: list[Shard], config: JobConfig, checkpoint_uri: str,
                  options: dict) -> dict:
    """One pass over the corpus: training pairs and MLM texts (not held out) to Parquet beside the
    checkpoints, and the held-out (title, body) evaluation set, kept here."""
    evaluation: list[tuple[str, str]] = []
    texts: list[str] = []

    def documents() -> Iterator[tuple[str, str]]:
        for doc_id, text in _documents(shards, config):
            if is_held_out(doc_id, model.holdout_fraction):
                split = title_and_body(text)
                if split is not None and len(evaluation) < model.eval_documents:
                    evaluation.append(split)
            elif len(texts) < model.mlm_documents and model.mlm_epochs:
                texts.append(text)
            yield doc_id, text

    corpus = documents()
    source = (read_pairs_file(model.pairs, config.corpus.storage_options) if model.pairs else
              corpus_pairs(corpus, model.positives, holdout_fraction=model.holdout_fraction, seed=model.seed))
    pairs: list[Pair] = [pair for _, pair in zip(range(model.max_pairs), source)] if model.epochs else []
    for _ in corpus:  # the rest of the evaluation set and of the MLM texts
        if len(evaluation) >= model.eval_documents and (len(texts) >= model.mlm_documents or not model.mlm_epochs):
            break
    if model.epochs and len(pairs) < model.batch_size * model.num_workers:
        raise ValueError(f"{model.pairs or 'corpus'}: {len(pairs)} training pairs ({model.positives if not model.pairs else 'pairs file'}), "
                         f"fewer than one batch per worker ({model.batch_size} x {model.num_workers}); add documents, "
                         "lower model.batch_size, or use model.positives: spans / dropout")
    _write(pa.table({"anchor": [p.anchor for p in pairs], "positive": [p.positive for p in pairs],
                     "negative": [p.negative for p in pairs]}, schema=PAIRS_SCHEMA), join(checkpoint_uri, "pairs.parquet"), options)
    _write(pa.table({"text": texts}, schema=TEXTS_SCHEMA), join(checkpoint_uri, "texts.parquet"), options)
    return {"pairs": len(pairs), "texts": len(texts), "eval": evaluation,
            "pairs_uri": join(checkpoint_uri, "pairs.parquet"), "texts_uri": join(checkpoint_uri, "texts.parquet")}


def _write(table: pa.Table, uri: str, options: dict) -> None:
    fs, path = filesystem(uri, options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def _read(uri: str, options: dict) -> pa.Table:
    fs, path = filesystem(uri, options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def train_encoder(start_uri: str, data: dict, settings: TrainSettings, model: EncoderConfig, *,
                  storage_options: dict, checkpoint_uri: str, fault_injection: str | None = None,
                  progress: bool = True) -> tuple[Path, list[dict]]:
    """Train the encoder at `start_uri` with `model.num_workers` Ray Train workers; return the final
    model folder (local) and one record per epoch (loss, samples, seconds: all workers)."""
    steps = [steps_per_epoch(data["texts"], settings.batch_size, model.num_workers)] * settings.mlm_epochs + \
            [steps_per_epoch(data["pairs"], settings.batch_size, model.num_workers)] * settings.epochs
    loop_config = {"start_uri": start_uri, "storage_options": storage_options,
                   "data": {k: data[k] for k in ("pairs_uri", "texts_uri")}, "settings": settings.__dict__,
                   "use_gpu": model.use_gpu, "steps": steps, "fault_injection": fault_injection}
    share = max(1, round(sum(steps) / len(steps)))  # steps per epoch (MLM and contrastive epochs may differ)
    folder, meta = fit(_EncoderWorker, loop_config, run_name=RUN_NAME, label="Encoder", unit="steps",
                       num_workers=model.num_workers, use_gpu=model.use_gpu, max_failures=model.max_failures,
                       epochs=settings.total_epochs, rank_to_share=[share] * model.num_workers,
                       checkpoint_uri=checkpoint_uri, storage_options=storage_options, progress=progress,
                       read_result=_trained_model)
    if settings.mlm_epochs:  # publish the encoder alone, without the MLM head
        load_encoder(folder).save(_replace(folder))
    return folder, meta["epochs"]


def _trained_model(checkpoint: Path) -> Path:
    """The last checkpoint's model, copied to a local folder."""
    folder = _local_folder("trained")
    shutil.copytree(checkpoint / MODEL_DIR, folder, dirs_exist_ok=True)
    return folder


def _replace(folder: Path) -> Path:
    for item in folder.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return folder


class _EncoderWorker:
    """One Ray Train worker's encoder (DDP), an EpochModel of workers/raytrain/epochs.py: its epoch
    is EncoderTraining's; its checkpoint files are the model folder (with the MLM head while MLM
    epochs remain) and the optimizer's state."""

    syncs_per_epoch = 0  # DDP all-reduces the gradients at every step

    def __init__(self, loop: dict, rank: int, world: int, folder: Path | None, meta: dict):
        self.settings = settings = TrainSettings(**loop["settings"])
        options = loop["storage_options"]
        self.device = ray.train.torch.get_device() if loop["use_gpu"] else torch.device("cpu")
        epochs_done = meta.get("epochs_done", 0)
        with_mlm = epochs_done < settings.mlm_epochs
        optimizer_state = None
        if folder is not None:
            encoder, masked_lm = load_trainable(folder / MODEL_DIR, with_masked_lm=with_mlm)
            optimizer_state = load_optimizer_state(folder / OPTIMIZER_FILE)
        else:
            with tempfile.TemporaryDirectory(prefix="firth-encoder-start-") as start:
                fs, path = filesystem(loop["start_uri"], options)
                fs.get(path.rstrip("/") + "/", start, recursive=True)
                encoder, masked_lm = load_trainable(start, with_masked_lm=with_mlm)
        encoder.to(self.device)
        if masked_lm is not None:
            masked_lm.to(self.device)
        pairs_table, texts_table = (_read(loop["data"][k], options) for k in ("pairs_uri", "texts_uri"))
        pairs = [Pair(a, p, n) for a, p, n in zip(*(pairs_table.column(c).to_pylist() for c in PAIRS_SCHEMA.names))]
        texts = texts_table.column("text").to_pylist()
        wrap = (lambda m: DistributedDataParallel(m, forward_sync_buffers=False)) if world > 1 else (lambda m: m)
        self.training = EncoderTraining(encoder, masked_lm, pairs, texts, settings, device=self.device, rank=rank,
                                        world=world, start_epoch=epochs_done, optimizer_state=optimizer_state,
                                        wrap=wrap)
        self.steps, self.world = loop["steps"], world

    def sync(self) -> None:
        pass

    def share(self, epoch: int) -> int:
        return self.steps[epoch]

    def train_epoch(self, epoch: int, points: EpochPoints) -> list[float]:
        """[this rank's mean loss, samples, seconds, *its loss curve] (every rank's curve has the same length)"""
        self.result = self.training.epoch(epoch, points.reached)
        return [self.result.loss, self.result.samples, self.result.seconds, *self.result.step_losses]

    def summary(self, totals: list[float], seconds: float, meta: dict) -> tuple[float, dict, dict]:
        """The mean of the ranks' losses, loss curves and training seconds (the steps alone, not the
        epoch's `seconds`), all their samples; meta's "epochs" gets the epoch's record."""
        loss, samples, train_seconds = totals[0] / self.world, int(totals[1]), totals[2] / self.world
        record = {"epoch": self.result.epoch, "phase": self.result.phase, "loss": loss, "samples": samples,
                  "seconds": train_seconds, "step_losses": [x / self.world for x in totals[3:]],
                  "loss_every": self.result.loss_every}
        return (loss, {"samples_per_sec": samples / max(train_seconds, 1e-9)},
                {"epochs": [*meta.get("epochs", []), record]})

    def save(self, folder: Path) -> None:
        keep_mlm = self.training.masked_lm if self.result.epoch < self.settings.mlm_epochs else None
        save_trainable(self.training.encoder, keep_mlm, folder / MODEL_DIR)
        save_optimizer_state(self.training.optimizer_state(), folder / OPTIMIZER_FILE)
