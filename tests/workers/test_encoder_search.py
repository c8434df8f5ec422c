"""Search over a document table: a document's own text is the top hit; chunk rows answer with
documents; FAISS indexes against exact search on a synthetic set."""
import numpy as np
import pyarrow as pa
import pytest

from firth.schemas.tables import document_embedding_schema
from firth.workers.encoder.inference import document_rows
from firth.workers.encoder.model import EncoderSpec, build_encoder
from firth.workers.encoder.search import DocumentSearch, ExactIndex, FaissIndex
from firth.workers.encoder.subword import train_encoder_tokenizer

DOCUMENTS = {
    "argparse": "argparse parses command line options and arguments for python programs",
    "regex": "regular expressions match patterns of text with a small language",
    "fox": "the quick brown fox jumps over the lazy dog",
    "sqlite": "sqlite3 stores tables in a single file database with sql queries",
    "json": "json encodes and decodes python objects as text",
}


@pytest.fixture(scope="module")
def tiny_encoder():
    tokenizer = train_encoder_tokenizer(list(DOCUMENTS.values()) * 5, 300, "wordpiece", min_frequency=1)
    encoder, _ = build_encoder(tokenizer, layers=2, heads=2, hidden_size=32, intermediate_size=64, max_length=12,
                               spec=EncoderSpec("mean", True, 12), seed=3)
    return encoder.eval()


def test_search_returns_the_document_whose_text_is_the_query_first(tiny_encoder):
    table = pa.Table.from_batches([document_rows(tiny_encoder, list(DOCUMENTS), list(DOCUMENTS.values()))])
    search = DocumentSearch(table, tiny_encoder)
    for doc_id, text in DOCUMENTS.items():
        hits = search.search(text, k=3)
        assert hits[0].doc_id == doc_id and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 3 and hits[0].score > hits[1].score >= hits[2].score
    with pytest.raises(ValueError, match="empty"):
        search.search("  ")


def test_chunk_rows_give_each_document_once_at_its_best_chunk(tiny_encoder):
    long = " ".join(DOCUMENTS.values())  # 5 sentences -> several 10-token windows
    table = pa.Table.from_batches([document_rows(tiny_encoder, ["all", "fox"], [long, DOCUMENTS["fox"]],
                                                 chunks=True, stride=2)])
    assert table.num_rows > 3
    search = DocumentSearch(table, tiny_encoder)
    hits = search.search(table.column("text")[2].as_py(), k=5)  # the text of chunk 2 of "all"
    assert [h.doc_id for h in hits] == ["all", "fox"]  # each document once
    assert hits[0].chunk == 2 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    exact_scores, _ = ExactIndex(search.unit).search(search.embed([table.column("text")[2].as_py()]), table.num_rows)
    assert hits[1].score == pytest.approx(max(s for s, r in zip(exact_scores[0], _[0]) if r == table.num_rows - 1))


def test_exact_index_ranks_as_the_consumer_with_ties_in_row_order():
    # 40 rows hold one vector and 40 another, shuffled: equal scores come in row order, the first 10
    vectors = np.tile(np.array([[1, 0], [0, 1]], np.float32), (40, 1))[np.random.default_rng(0).permutation(80)]
    queries = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    scores, rows = ExactIndex(vectors).search(queries, 10)
    for query, (query_scores, query_rows) in enumerate(zip(scores, rows)):
        best = vectors @ queries[query]  # (80,)
        assert query_rows.tolist() == np.flatnonzero(best == best.max())[:10].tolist()
        np.testing.assert_allclose(query_scores, best.max(), rtol=1e-6)


def _clustered(n, dim, clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(clusters, size=n)] + 0.5 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_recall_exact_neighbours(kind):
    vectors = _clustered(6000, 32, 50, seed=0)
    queries = _clustered(200, 32, 50, seed=1)
    exact_scores, exact_rows = ExactIndex(vectors).search(queries, 10)
    assert np.all(np.diff(exact_scores, axis=1) <= 0)  # best first
    np.testing.assert_allclose(exact_scores[:, 0], (queries @ vectors.T).max(axis=1), rtol=1e-5)
    scores, rows = FaissIndex(vectors, kind).search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows)])
    assert recall >= 0.9, f"{kind} recall@10 against exact: {recall:.3f}"
    found = rows >= 0
    np.testing.assert_allclose(scores[found], np.einsum("qd,qkd->qk", queries, vectors[rows])[found], atol=1e-4)


def test_search_refuses_a_table_of_another_dimension(tiny_encoder):
    dim = 8
    table = pa.table({"doc_id": ["a"], "chunk": pa.array([0], pa.int32()), "text": ["x"],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(dim, np.float32)), dim)},
                     schema=document_embedding_schema(dim))
    with pytest.raises(ValueError, match="dim 8"):
        DocumentSearch(table, tiny_encoder, ref="t@0")
