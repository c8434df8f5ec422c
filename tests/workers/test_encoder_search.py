"""Search over a document table: a document's own text is the top hit; chunk rows answer with
documents; batches of queries; table references (aliases, times) in open_search and `firth search`;
FAISS indexes against exact search on a synthetic set."""
import json

import numpy as np
import pyarrow as pa
import pytest

from firth.pipelines.cli.main import main
from firth.schemas.aliases import move_alias
from firth.schemas.store import TableStore
from firth.schemas.tables import document_embedding_schema
from firth.workers.encoder.inference import document_rows
from firth.workers.encoder.model import EncoderSpec, build_encoder
from firth.workers.encoder.search import DocumentSearch, ExactIndex, FaissIndex, open_search
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
    exact_scores, _ = ExactIndex(search.unit).search(search.encode([table.column("text")[2].as_py()]), table.num_rows)
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


def test_a_list_of_queries_gives_one_result_list_per_query_in_batches(tiny_encoder):
    table = pa.Table.from_batches([document_rows(tiny_encoder, list(DOCUMENTS), list(DOCUMENTS.values()))])
    search = DocumentSearch(table, tiny_encoder)
    queries = list(DOCUMENTS.values())[::-1] + ["python objects in a database"]  # 6 queries: batches 4 + 2
    one_by_one = [search.search(q, k=2) for q in queries]
    for batched in (search.search(queries, k=2, batch_size=4), search.search(queries, k=2)):
        assert_same_hits(batched, one_by_one)  # scores may differ in the last bits: padding differs
    assert [hits[0].doc_id for hits in one_by_one[:5]] == list(DOCUMENTS)[::-1]
    assert_same_hits(search.search(tuple(queries[:2]), k=1), [hits[:1] for hits in one_by_one[:2]])  # any sequence
    assert search.search([], k=3) == []

    # encode: the table's own vectors, whatever the batch size; a str gives one vector
    vectors = search.encode(list(DOCUMENTS.values()), batch_size=2)  # (5, 32)
    assert vectors.shape == (5, 32)
    np.testing.assert_allclose(vectors, search.unit, atol=1e-5)
    np.testing.assert_allclose(search.encode(list(DOCUMENTS.values())), vectors, atol=1e-6)
    np.testing.assert_allclose(search.encode(DOCUMENTS["fox"]), search.unit[2], atol=1e-5)

    with pytest.raises(ValueError, match="query 2 of 3 is empty"):
        search.search(["fox", " ", "dog"])
    with pytest.raises(TypeError, match="query 2 of 2 is a int, not text"):
        search.search(["fox", 7])
    with pytest.raises(TypeError, match="got a NoneType"):
        search.search(None)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        search.search(["fox"], batch_size=0)


def assert_same_hits(results, expected):
    assert [[(h.doc_id, h.chunk, h.text) for h in hits] for hits in results] == \
        [[(h.doc_id, h.chunk, h.text) for h in hits] for hits in expected]
    np.testing.assert_allclose([h.score for hits in results for h in hits],
                               [h.score for hits in expected for h in hits], atol=1e-6)


@pytest.fixture
def two_versions(tiny_encoder, tmp_path, monkeypatch):
    """Store with document table "docs": version 0 holds argparse/regex/fox, version 1 sqlite/json,
    each published with the encoder as its "model" artifact; alias production -> 0."""
    monkeypatch.setenv("FIRTH_CACHE", str(tmp_path / "cache"))
    folder = tiny_encoder.save(tmp_path / "model")
    store = TableStore(str(tmp_path / "store"))
    for ids in (["argparse", "regex", "fox"], ["sqlite", "json"]):
        rows = document_rows(tiny_encoder, ids, [DOCUMENTS[i] for i in ids])
        store.publish("docs", pa.Table.from_batches([rows]), {"model": "encoder"}, artifacts={"model": folder})
    move_alias(store, "docs", "production", 0)
    return store


def test_open_search_resolves_aliases_and_times_as_every_reader(two_versions):
    store = two_versions
    first = store.info("docs", 0).timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # when version 0 was committed
    for ref, version in [("docs@production", 0), (f"docs@{first}", 0), ("docs@latest", 1), ("docs", 1),
                         ("docs@1", 1)]:
        search = open_search(store.uri, ref)
        assert search.ref == f"docs@{version}", ref
        assert sorted(search.doc_ids) == sorted(["argparse", "regex", "fox"] if version == 0 else ["sqlite", "json"])
    with pytest.raises(Exception, match="no alias 'staging'"):
        open_search(store.uri, "docs@staging")


def test_firth_search_takes_aliases_and_several_queries(two_versions, capsys):
    store = two_versions
    capsys.readouterr()
    assert main(["search", "docs@production", DOCUMENTS["fox"], "-k", "2", "--json", "--store", store.uri]) == 0
    hits = json.loads(capsys.readouterr().out)  # one query: one list of hits
    assert hits[0]["doc_id"] == "fox" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 2 and {h["doc_id"] for h in hits} <= {"argparse", "regex", "fox"}  # version 0's documents

    assert main(["search", "docs@production", DOCUMENTS["regex"], DOCUMENTS["argparse"], "-k", "3", "--json",
                 "--store", store.uri]) == 0
    lists = json.loads(capsys.readouterr().out)  # several queries: one list per query, in order
    assert [hits[0]["doc_id"] for hits in lists] == ["regex", "argparse"]
    assert [len(hits) for hits in lists] == [3, 3]

    assert main(["search", "docs", DOCUMENTS["json"], "fox", "-k", "1", "--store", store.uri]) == 0
    out = capsys.readouterr().out.splitlines()  # text: a header per query, then its hits
    assert out[0] == f"query 1: {DOCUMENTS['json']}" and out[1].split()[1] == "json" and out[3] == "query 2: fox"

    assert main(["search", "docs@staging", "fox", "--store", store.uri]) == 2
    assert "no alias 'staging'" in capsys.readouterr().err
    assert main(["search", "docs@production", "fox", "  ", "--store", store.uri]) == 2
    assert "query 2 of 2 is empty" in capsys.readouterr().err
