"""The count-based word models, trained on the driver from the statistics tables (no Ray cluster).

    ppmi_svd  co-occurrence parts → PPMI (workers/count/ppmi.py), written as <statistics>/ppmi/part-BBBBB.parquet
              → truncated SVD → word vectors U_k Σ_k^p (+ V_k Σ_k^p with add_context)
    lsa       TF-IDF shards → the (V, n_docs) term-document matrix → truncated SVD → term vectors U_k Σ_k^p

Both are `train(config, statistics, *, checkpoint_uri, fault_injection) -> Trained` (workers/trainers.py).
There is nothing to checkpoint (one SVD) and no worker to fail, so both arguments are unused.

Memory (the SVD itself: workers/count/svd.py). ppmi_svd reads one co-occurrence part at a time, twice
(marginals, then PPMI), and holds the positive PPMI entries: 12 bytes each as (i, j, value), then
8 bytes each + 4 per word as CSR, i.e. peak ≈ 20 bytes × PPMI entries (about half the co-occurrence
entries for α = 0.75). lsa holds the TF-IDF entries the same way (≈ 20 bytes × (document, term) pairs).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from firth.schemas import tables
from firth.schemas.fs import filesystem, join
from firth.workers.count import ppmi
from firth.workers.count.svd import truncated_svd, weighted
from firth.workers.trainers import Trained


def train_ppmi_svd(config, statistics, *, checkpoint_uri: str, fault_injection: str | None = None) -> Trained:
    settings, options = config.model, config.store.storage_options
    vocab_size = statistics.vocab_size
    start = time.perf_counter()
    matrix = write_ppmi(statistics.cooccurrence_uri, join(statistics.uri, "ppmi"), vocab_size,
                        alpha=settings.context_smoothing, shift=settings.shift, storage_options=options)
    ppmi_seconds = time.perf_counter() - start
    u, s, vt = _svd(matrix, settings, "PPMI")
    vectors = weighted(u, s, settings.eigenvalue_weighting)  # (V, k)
    if settings.add_context:
        vectors += weighted(vt.T, s, settings.eigenvalue_weighting)
    return Trained(vectors=vectors, metadata={"count_model": {
        "matrix": "ppmi", "shape": list(matrix.shape), "nonzeros": int(matrix.nnz), "ppmi_seconds": round(ppmi_seconds, 3),
        "singular_values": [float(v) for v in s]}})


def train_lsa(config, statistics, *, checkpoint_uri: str, fault_injection: str | None = None) -> Trained:
    settings = config.model
    matrix = term_document_matrix(join(statistics.uri, "tfidf"), statistics.vocab_size, config.store.storage_options)
    u, s, _ = _svd(matrix, settings, "TF-IDF")
    return Trained(vectors=weighted(u, s, settings.eigenvalue_weighting), metadata={"count_model": {
        "matrix": "tfidf", "shape": list(matrix.shape), "nonzeros": int(matrix.nnz),
        "singular_values": [float(v) for v in s]}})


def write_ppmi(cooccurrence_uri: str, ppmi_uri: str, vocab_size: int, *, alpha: float, shift: float,
               storage_options: dict | None = None):
    """PPMI of the co-occurrence parts under `cooccurrence_uri`: writes one PPMI part per co-occurrence
    part (firth.schemas.tables.PPMI) and a manifest.json under `ppmi_uri`; returns the (V, V) CSR float32 matrix."""
    paths = _parts(cooccurrence_uri, "part-*.parquet", "co-occurrence", storage_options)
    row_sums = np.zeros(vocab_size)
    column_sums = np.zeros(vocab_size)
    for path in tqdm(paths, desc="PPMI marginals", unit="part", leave=False):
        part = tables.read_parquet(path, tables.COOCCURRENCE, storage_options)
        rows, columns = ppmi.marginals(part["i"].to_numpy(), part["j"].to_numpy(), part["x"].to_numpy(), vocab_size)
        row_sums += rows
        column_sums += columns
    fs, root = filesystem(ppmi_uri, storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)
    kept = []  # per part: (i, j, ppmi)
    for path in tqdm(paths, desc="PPMI", unit="part", leave=False):
        part = tables.read_parquet(path, tables.COOCCURRENCE, storage_options)
        entries = ppmi.ppmi_entries(part["i"].to_numpy(), part["j"].to_numpy(), part["x"].to_numpy(),
                                    row_sums, column_sums, alpha, shift)
        tables.write_parquet(pa.table(dict(zip(("i", "j", "ppmi"), entries))), join(ppmi_uri, path.rsplit("/", 1)[1]),
                             tables.PPMI, storage_options, cast=True)
        kept.append(entries)
    i, j, values = (np.concatenate(column) for column in zip(*kept))
    del kept  # the parts' copies: peak stays at the concatenated entries (12 bytes each) + the CSR (8)
    fs.pipe(join(root, "manifest.json"), json.dumps({
        "context_smoothing": alpha, "shift": shift, "vocab_size": vocab_size, "entries": int(len(values)),
        "cooccurrence": cooccurrence_uri}, indent=1).encode())
    return ppmi.entries_to_csr(i, j, values, (vocab_size, vocab_size))


def term_document_matrix(tfidf_uri: str, vocab_size: int, storage_options: dict | None = None):
    """The (V, n_docs) CSR float32 TF-IDF matrix of the shards under `tfidf_uri` (firth.schemas.tables.TFIDF).

    Columns are documents in shard order, then in order within the shard; a shard's rows are grouped
    by document, so a document starts where doc_id changes (documents without terms get no column)."""
    paths = _parts(tfidf_uri, "shard-*.parquet", "TF-IDF", storage_options)
    terms, docs, values = [], [], []
    n_docs = 0
    for path in tqdm(paths, desc="TF-IDF matrix", unit="shard", leave=False):
        shard = tables.read_parquet(path, tables.TFIDF, storage_options)
        doc_ids = shard["doc_id"].combine_chunks()
        starts = np.ones(len(doc_ids), bool)  # (rows,) True where a new document begins
        if len(doc_ids) > 1:
            starts[1:] = pc.not_equal(doc_ids.slice(1), doc_ids.slice(0, len(doc_ids) - 1)).to_numpy(
                zero_copy_only=False)
        docs.append(n_docs + np.cumsum(starts) - 1)
        n_docs += int(starts.sum())
        terms.append(shard["term_id"].to_numpy())
        values.append(shard["tfidf"].to_numpy())
    terms = np.concatenate(terms)
    if len(terms) and terms.max() >= vocab_size:
        raise ValueError(f"{tfidf_uri}: term ids reach {terms.max()} but the vocabulary has {vocab_size} words; "
                         "the tables come from different runs: recompute the statistics")
    return ppmi.entries_to_csr(terms, np.concatenate(docs), np.concatenate(values), (vocab_size, n_docs))


def _svd(matrix, settings, name: str):
    start = time.perf_counter()
    u, s, vt = truncated_svd(matrix, settings.dim, solver=settings.solver, n_iter=settings.n_iter, seed=settings.seed)
    print(f"firth: truncated SVD of the {matrix.shape[0]}×{matrix.shape[1]} {name} matrix ({matrix.nnz} nonzeros, "
          f"k={settings.dim}, {settings.solver}) in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return u, s, vt


def _parts(uri: str, pattern: str, what: str, storage_options: dict | None) -> list[str]:
    fs, root = filesystem(uri, storage_options)
    paths = sorted(fs.glob(root.rstrip("/") + "/" + pattern))
    if not paths:
        raise FileNotFoundError(f"{uri}: no {what} files {pattern}; run the statistics step first")
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    return [p if p.startswith(protocol) else protocol + p for p in paths]
