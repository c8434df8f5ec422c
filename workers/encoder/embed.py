"""Batch embedding of a corpus on Ray: a pool of actors, each holding one copy of the model.

The driver streams the corpus (firth.pipelines.corpus.shards, bounded batches), cuts it into tasks of
`TASK_DOCUMENTS` documents and keeps at most `2 x workers` tasks in flight, so memory stays bounded
whatever the corpus size; results come back in corpus order and are appended to one Parquet file
(`output_uri`, beside the run's checkpoints) as they arrive. The returned reader streams that file
to TableStore.publish, which checks every batch.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import deque
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm.auto import tqdm

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import Shard, ShardReport, iter_documents
from firth.schemas.fs import filesystem
from firth.schemas.tables import document_embedding_schema

TASK_DOCUMENTS = 256  # documents per actor call: large enough to sort into tight batches


@ray.remote
class EmbedWorker:
    """One model copy; embeds tasks of documents into document-table record batches."""

    def __init__(self, model_uri: str, storage_options: dict, use_gpu: bool, batch_size: int, chunks: bool,
                 stride: int):
        import torch

        from firth.workers.encoder.model import load_encoder

        self.folder = tempfile.mkdtemp(prefix="firth-embed-")
        fs, path = filesystem(model_uri, storage_options)
        fs.get(path.rstrip("/") + "/", self.folder, recursive=True)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.encoder = load_encoder(self.folder).to(self.device)
        self.batch_size, self.chunks, self.stride = batch_size, chunks, stride

    def embed(self, doc_ids: list[str], texts: list[str]) -> pa.RecordBatch:
        from firth.workers.encoder.inference import document_rows

        return document_rows(self.encoder, doc_ids, texts, chunks=self.chunks, stride=self.stride,
                             batch_size=self.batch_size, device=self.device)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def embed_corpus(model_folder: str | Path, shards: list[Shard], config: JobConfig, *, output_uri: str,
                 progress: bool = True) -> tuple[pa.RecordBatchReader, dict]:
    """Embed every document of `shards` with the encoder in `model_folder` (local); return a reader of
    the document table and {"documents", "rows", "dim"}."""
    from firth.workers.raytrain.harness import start_ray

    model, options = config.model, config.store.storage_options
    start_ray()
    model_uri = output_uri + ".model"  # the actors fetch the model from beside the output
    fs, model_path = filesystem(model_uri, options)
    fs.put(str(model_folder).rstrip("/") + "/", model_path, recursive=True)
    resources = {"num_gpus": 1} if model.use_gpu else {"num_cpus": 1}
    workers = [EmbedWorker.options(**resources).remote(model_uri, options, model.use_gpu, model.embed_batch_size,
                                                       model.chunks, model.chunk_stride)
               for _ in range(model.embed_workers)]
    in_flight: deque = deque()
    counts = {"documents": 0, "rows": 0, "dim": 0}
    out_fs, out_path = filesystem(output_uri, options)
    writer = out_file = None
    # no disable= when progress is on: the CLI's TQDM_DISABLE (a pipe, a log file, --quiet) must still apply
    bar = tqdm(desc="embedding documents", unit="docs", leave=False) if progress else tqdm(disable=True)

    def take_oldest() -> None:
        nonlocal writer, out_file
        documents, ref = in_flight.popleft()
        batch = ray.get(ref)
        if writer is None:
            out_file = out_fs.open(out_path, "wb")
            writer = pq.ParquetWriter(out_file, batch.schema, compression="zstd")
            counts["dim"] = batch.schema.field("vector").type.list_size
        writer.write_batch(batch)
        counts["rows"] += batch.num_rows
        bar.update(documents)

    try:
        task = 0
        for shard in shards:
            for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri), whole=True):
                for start in range(0, len(batch.ids), TASK_DOCUMENTS):
                    ids, texts = batch.ids[start:start + TASK_DOCUMENTS], batch.texts[start:start + TASK_DOCUMENTS]
                    if len(in_flight) >= 2 * len(workers):
                        take_oldest()
                    in_flight.append((len(ids), workers[task % len(workers)].embed.remote(ids, texts)))
                    counts["documents"] += len(ids)
                    task += 1
        while in_flight:
            take_oldest()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
            out_file.close()
        for worker in workers:
            try:
                ray.get(worker.close.remote(), timeout=30)  # its scratch copy of the model
            except Exception:  # a dead actor: nothing to clean, and the original error matters more
                pass
            ray.kill(worker)
        fs.rm(model_path, recursive=True)
    if writer is None:
        raise ValueError("corpus.shards: no documents to embed")
    return _reader(output_uri, options, counts["dim"]), counts


def _reader(uri: str, options: dict, dim: int) -> pa.RecordBatchReader:
    fs, path = filesystem(uri, options)

    def batches():
        with fs.open(path, "rb") as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=4096)

    return pa.RecordBatchReader.from_batches(document_embedding_schema(dim), batches())
