"""The count-based models end to end (workers/count/train.py): statistics → PPMI / TF-IDF → SVD →
a published word table, read back through the consumer API; subword statistics and their tokenizer file."""
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from firth.pipelines.config import load_config
from firth.pipelines.job import run
from firth.schemas import tables
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore
from firth.workers.count import ppmi
from firth.workers.count.train import term_document_matrix
from tests.helpers import write_job


def read_all(folder: Path, schema) -> pa.Table:
    return pa.concat_tables([tables.read_parquet(str(p), schema) for p in sorted(folder.glob("*.parquet"))])


@pytest.mark.slow
def test_subword_statistics_are_hand_counted_and_ppmi_svd_publishes_with_the_tokenizer(tmp_path):
    (tmp_path / "corpus").mkdir()
    with gzip.open(tmp_path / "corpus" / "tiny.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "d1", "text": "ab ba"}) + "\n" + json.dumps({"id": "d2", "text": "AAB"}) + "\n")
    config = load_config(write_job(
        tmp_path, table="tiny-ppmi", corpus={"shards": ["corpus/*.jsonl.gz"]},
        # vocab_size 5 = [UNK] + {a, b, ##a, ##b}: every letter is one unit, so counts can be done by hand
        tokenizer={"kind": "wordpiece", "vocab_size": 5, "min_frequency": 1},
        statistics={"n_workers": 1, "min_count": 1, "window": 2, "n_buckets": 2},
        model={"model": "ppmi_svd", "dim": 2, "context_smoothing": 0.75, "solver": "arpack"},
        evaluation={"enabled": False}))
    published = run(config)
    statistics = Path(published.statistics_uri)  # the run's own folder, under config.statistics_uri
    assert statistics.parent == Path(config.statistics_uri) / "runs"

    # units: d1 = a ##b b ##a, d2 = a ##a ##b → ids by count desc, token asc: ##a 0, ##b 1, a 2, b 3
    vocabulary = tables.read_parquet(str(statistics / "vocabulary.parquet"), tables.VOCABULARY)
    assert vocabulary["token"].to_pylist() == ["##a", "##b", "a", "b"]
    assert vocabulary["count"].to_pylist() == [2, 2, 2, 1]
    # window 2, harmonic: d1 ids 2 1 3 0 → {2,1} {1,3} {3,0} at 1, {2,3} {1,0} at ½;
    #                     d2 ids 2 0 1   → {2,0} {0,1} at 1, {2,1} at ½
    expected = np.zeros((4, 4))
    for (a, b), x in {(2, 1): 1.5, (1, 3): 1, (3, 0): 1, (2, 3): 0.5, (1, 0): 1.5, (2, 0): 1}.items():
        expected[a, b] = expected[b, a] = x
    cooc = read_all(statistics / "cooccurrence", tables.COOCCURRENCE)
    counted = np.zeros((4, 4))
    counted[cooc["i"].to_numpy(), cooc["j"].to_numpy()] = cooc["x"].to_numpy()
    np.testing.assert_array_equal(counted, expected)

    # the PPMI table beside the statistics is the PPMI of that matrix
    written = read_all(statistics / "ppmi", tables.PPMI)
    got = np.zeros((4, 4))
    got[written["i"].to_numpy(), written["j"].to_numpy()] = written["ppmi"].to_numpy()
    i, j = np.nonzero(expected)
    np.testing.assert_allclose(got, ppmi.ppmi_matrix(i, j, expected[i, j], 4, alpha=0.75).toarray(), rtol=1e-6)
    assert (written["ppmi"].to_numpy() > 0).all()

    # the trained tokenizer is beside the tables and published with the version
    store = TableStore(config.store.uri)
    tokenizer_json = (statistics / "tokenizer.json").read_bytes()
    assert json.loads(tokenizer_json)["model"]["type"] == "WordPiece"
    fetched = store.fetch_artifact("tiny-ppmi", published.version, "tokenizer.json", tmp_path / "fetched.json")
    assert fetched.read_bytes() == tokenizer_json
    embeddings = open_embeddings(config.store.uri, "tiny-ppmi")
    assert embeddings.tokens == ["##a", "##b", "a", "b"] and embeddings.vectors.shape == (4, 2)
    assert store.info("tiny-ppmi").metadata["model"] == "ppmi_svd"


@pytest.mark.slow
def test_lsa_publishes_term_vectors_from_the_svd_of_the_tfidf_matrix(tmp_path):
    config = load_config(write_job(
        tmp_path, shards=1, table="tiny-lsa",
        statistics={"n_workers": 1, "min_count": 3, "window": 5, "n_buckets": 2},
        model={"model": "lsa", "dim": 8, "eigenvalue_weighting": 1.0, "solver": "arpack"}))
    published = run(config)
    info = TableStore(config.store.uri).info("tiny-lsa")
    assert info.metadata["model"] == "lsa" and "tokenizer.json" not in info.artifacts
    assert {"wordsim353_spearman", "analogy_accuracy"} <= set(info.metadata["metrics"])
    embeddings = open_embeddings(config.store.uri, "tiny-lsa")
    assert embeddings.vectors.shape == (info.rows, 8) and np.isfinite(embeddings.vectors).all()

    # published vectors are U Σ of the term-document matrix: their Gram matrix is U Σ² Uᵀ, whose
    # eigenvalues are the top singular values squared (of a dense SVD of the same TF-IDF rows)
    tfidf = read_all(Path(published.statistics_uri) / "tfidf", tables.TFIDF)
    documents = {d: n for n, d in enumerate(dict.fromkeys(tfidf["doc_id"].to_pylist()))}
    dense = np.zeros((info.rows, len(documents)))
    dense[tfidf["term_id"].to_numpy(), [documents[d] for d in tfidf["doc_id"].to_pylist()]] = tfidf["tfidf"].to_numpy()
    top = np.linalg.svd(dense, compute_uv=False)[:8]
    gram = embeddings.vectors.astype(np.float64).T @ embeddings.vectors
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(gram))[::-1], top ** 2, rtol=1e-4)
    np.testing.assert_allclose(info.metadata["count_model"]["singular_values"], top, rtol=1e-5)


def tfidf_shard(path: Path, rows: list[tuple[str, int, float]]) -> None:
    doc_ids, terms, values = zip(*rows)
    tables.write_parquet(pa.table({"doc_id": list(doc_ids), "term_id": pa.array(terms, pa.int32()),
                                   "tf": pa.array([1] * len(rows), pa.int32()),
                                   "tfidf": pa.array(values, pa.float32())}), str(path), tables.TFIDF)


def test_term_document_matrix_has_one_column_per_document_in_shard_order(tmp_path):
    tfidf_shard(tmp_path / "shard-00000.parquet", [("d1", 0, 0.6), ("d1", 2, 0.8), ("d2", 1, 1.0)])
    tfidf_shard(tmp_path / "shard-00001.parquet", [("d1", 0, 1.0), ("d3", 1, 0.5), ("d3", 2, 0.5)])
    matrix = term_document_matrix(str(tmp_path), vocab_size=3)
    np.testing.assert_allclose(matrix.toarray(), [[0.6, 0, 1.0, 0],
                                                  [0, 1.0, 0, 0.5],
                                                  [0.8, 0, 0, 0.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="different runs"):
        term_document_matrix(str(tmp_path), vocab_size=2)
    with pytest.raises(FileNotFoundError, match="run the statistics step"):
        term_document_matrix(str(tmp_path / "missing"), vocab_size=3)


def test_config_tells_the_count_models_and_tokenizer_kinds_apart_and_names_bad_keys(tmp_path):
    config = load_config(write_job(tmp_path, table="t", corpus={"shards": ["c.txt"]},
                                   tokenizer={"kind": "bpe", "vocab_size": 800},
                                   model={"model": "ppmi_svd", "shift": 5}))
    assert (config.model.model, config.model.context_smoothing, config.model.shift, config.model.dim,
            config.model.eigenvalue_weighting) == ("ppmi_svd", 0.75, 5.0, 100, 0.5)
    assert config.tokenizer.kind == "bpe" and config.checkpoint_uri.endswith("_checkpoints/t")
    lsa = load_config(write_job(tmp_path, table="t", corpus={"shards": ["c.txt"]}, model={"model": "lsa"}))
    assert lsa.model.eigenvalue_weighting == 0.5 and lsa.model.dim == 100
    with pytest.raises(ValueError, match=r"model.alpha: unknown key; allowed here: .*context_smoothing"):
        load_config(write_job(tmp_path, table="t", corpus={"shards": ["c.txt"]},
                              model={"model": "ppmi_svd", "alpha": 0.75}))
