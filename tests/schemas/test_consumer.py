"""The consumer API on a hand-made 4-word table, loading from a store, and its light imports."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from firth.schemas.aliases import move_alias
from firth.schemas.consumer import Documents, Embeddings, Hit, open_documents, open_embeddings, open_table
from firth.schemas.store import NotFoundError, StoreError, TableStore
from tests.helpers import ROOT

ROOT_HALF = np.sqrt(0.5)

# Hand-checked geometry. Unit vectors: a = (1, 0, 0), b = (0.6, 0.8, 0), c = (0, 1/√2, 1/√2), d = (-1, 0, 0).
# cos(a,b) = 0.6, cos(a,c) = 0, cos(a,d) = -1, cos(b,c) = 0.8/√2 ≈ 0.5657, cos(b,d) = -0.6, cos(c,d) = 0.
TOKENS = ["a", "b", "c", "d"]
VECTORS = np.array([[1, 0, 0], [3, 4, 0], [0, 2, 2], [-1, 0, 0]], dtype=np.float32)  # (4, 3)


def table() -> pa.Table:
    return pa.table({
        "token": TOKENS,
        "id": pa.array([0, 1, 2, 3], pa.int32()),
        "count": pa.array([40, 30, 20, 10], pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(VECTORS.ravel()), 3),
    })


def assert_neighbors(got, expected):
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-6)


def test_neighbors_of_a_token_in_cosine_order_excluding_itself():
    emb = Embeddings.from_table(table(), name="toy")
    assert_neighbors(emb.neighbors("a"), [("b", 0.6), ("c", 0.0), ("d", -1.0)])
    assert_neighbors(emb.neighbors("b"), [("a", 0.6), ("c", 0.8 * ROOT_HALF), ("d", -0.6)])
    assert_neighbors(emb.neighbors("b", k=2), [("a", 0.6), ("c", 0.8 * ROOT_HALF)])
    # a and d tie at cosine 0 with c: the lower row (the more frequent word) comes first
    assert_neighbors(emb.neighbors("c"), [("b", 0.8 * ROOT_HALF), ("a", 0.0), ("d", 0.0)])
    assert_neighbors(emb.neighbors("c", k=2), [("b", 0.8 * ROOT_HALF), ("a", 0.0)])


def test_neighbors_of_a_vector_include_every_token():
    emb = Embeddings.from_table(table())
    # query (1, 1, 0)/√2: a ·= 1/√2, b ·= 1.4/√2, c ·= 0.5, d ·= -1/√2
    assert_neighbors(emb.neighbors(np.array([2.0, 2.0, 0.0])),
                     [("b", 1.4 * ROOT_HALF), ("a", ROOT_HALF), ("c", 0.5), ("d", -ROOT_HALF)])
    with pytest.raises(ValueError, match="query vector has 2 values; table embeddings has dim 3"):
        emb.neighbors([1.0, 0.0])
    with pytest.raises(ValueError, match="zero or not finite"):
        emb.neighbors(np.zeros(3))


def test_vector_lookups():
    emb = Embeddings.from_table(table(), name="toy", version=2)
    assert emb.vector("b").tolist() == [3.0, 4.0, 0.0]
    assert emb.vector("b").dtype == np.float32
    assert emb.vectors.shape == (4, 3) and emb.vectors.dtype == np.float32
    assert emb.vectors_for(["d", "a", "d"]).tolist() == [[-1, 0, 0], [1, 0, 0], [-1, 0, 0]]
    with pytest.raises(KeyError, match=r"token 'zebra' is not in table toy@2"):
        emb.vector("zebra")
    with pytest.raises(KeyError, match=r"2 tokens are not in table toy@2: \['x', 'y'\]"):
        emb.vectors_for(["a", "x", "y"])
    assert "a" in emb and "zebra" not in emb and len(emb) == 4


def test_open_embeddings_from_a_store_by_ref(tmp_path):
    store = TableStore(str(tmp_path / "store"))
    store.publish("toy", table(), {"model": {"dim": 3}})
    shifted = table().set_column(3, "vector", pa.FixedSizeListArray.from_arrays(pa.array((VECTORS + 1).ravel()), 3))
    store.publish("toy", shifted, {"model": {"dim": 3}, "run": 2})

    latest = open_embeddings(str(tmp_path / "store"), "toy")
    assert (latest.version, latest.metadata) == (1, {"model": {"dim": 3}, "run": 2})
    assert latest.vectors.tobytes() == (VECTORS + 1).tobytes()
    first = open_embeddings(str(tmp_path / "store"), "toy@0")
    assert (first.version, first.metadata, first.tokens) == (0, {"model": {"dim": 3}}, TOKENS)
    assert first.vectors.tobytes() == VECTORS.tobytes()
    assert_neighbors(first.neighbors("a", k=1), [("b", 0.6)])
    with pytest.raises(NotFoundError, match="has no version 5; versions: 0..1"):
        open_embeddings(str(tmp_path / "store"), "toy@5")


@pytest.mark.slow
def test_consumer_loads_no_engine_or_training_stack(tmp_path):
    store = TableStore(str(tmp_path / "store"))
    store.publish("toy", table(), {})
    store.publish("docs", documents(), {})
    move_alias(store, "toy", "production", 0)
    script = (
        "import json, sys\n"
        "from firth.schemas.consumer import open_documents, open_embeddings\n"
        f"emb = open_embeddings({str(tmp_path / 'store')!r}, 'toy@production')\n"
        "emb.neighbors('a'); emb.vectors_for(['a', 'b'])\n"
        f"emb.to_word2vec({str(tmp_path / 'w.bin')!r}, binary=True); emb.to_parquet({str(tmp_path / 'w.parquet')!r})\n"
        f"open_documents({str(tmp_path / 'store')!r}, 'docs@latest').search([1.0, 0.0, 0.0], k=2)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'dask', 'distributed', 'apache_beam', 'ray', 'torch'})\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def documents() -> pa.Table:
    """Three chunks: doc x chunks 0 and 1, doc y chunk 0; vectors as a, b, c above."""
    return pa.table({
        "doc_id": ["y", "x", "x"], "chunk": pa.array([0, 1, 0], pa.int32()),
        "text": ["why", "ex one", None],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(VECTORS[[2, 1, 0]].ravel()), 3),
    })


def test_documents_search_by_cosine(tmp_path):
    store = TableStore(str(tmp_path / "store"))
    store.publish("docs", documents(), {"model": "minilm"})
    docs = open_documents(str(tmp_path / "store"), "docs")
    # rows come back by (doc_id, chunk): x/0 = a, x/1 = b, y/0 = c
    assert (docs.doc_ids, docs.chunks.tolist(), docs.texts) == (["x", "x", "y"], [0, 1, 0], [None, "ex one", "why"])
    assert docs.vector("x", 1).tolist() == [3.0, 4.0, 0.0]
    hits = docs.search(np.array([2.0, 2.0, 0.0]), k=2)  # cosines: b 1.4/√2, a 1/√2, c 0.5
    assert [(h.doc_id, h.chunk, h.text) for h in hits] == [("x", 1, "ex one"), ("x", 0, None)]
    assert [h.score for h in hits] == pytest.approx([1.4 * ROOT_HALF, ROOT_HALF], abs=1e-6)
    assert isinstance(hits[0], Hit) and docs.ref == "docs@0" and docs.metadata == {"model": "minilm"}
    assert isinstance(open_table(str(tmp_path / "store"), "docs"), Documents)
    with pytest.raises(StoreError, match=r"docs@0 is a document table .* open_documents\(\)"):
        open_embeddings(str(tmp_path / "store"), "docs")
    with pytest.raises(KeyError, match="document 'x' chunk 5 is not in table docs@0"):
        docs.vector("x", 5)


def test_open_by_alias_and_timestamp(tmp_path):
    store = TableStore(str(tmp_path / "store"))
    store.publish("toy", table())
    store.publish("toy", table().set_column(3, "vector", pa.FixedSizeListArray.from_arrays(
        pa.array((VECTORS * 2).ravel()), 3)))
    move_alias(store, "toy", "production", 0)
    uri = str(tmp_path / "store")
    assert open_embeddings(uri, "toy@production").vectors.tobytes() == VECTORS.tobytes()
    first = store.versions("toy")[0].timestamp.isoformat()
    assert open_embeddings(uri, f"toy@{first}").version == 0
    assert open_embeddings(uri, "toy@latest").version == 1


def gensim_keyed_vectors(path, binary):
    from gensim.models import KeyedVectors

    return KeyedVectors.load_word2vec_format(str(path), binary=binary)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_loads_word2vec_exports_with_identical_vectors(tmp_path, binary):
    rng = np.random.default_rng(0)
    # values whose decimal forms are awkward: tiny, huge, negative, exactly representable, thirds
    vectors = (rng.standard_normal((50, 7)) * np.logspace(-30, 30, 50)[:, None]).astype(np.float32)
    vectors[0] = [1 / 3, -0.0, 0.1, 1e-45, 3.4e38, -2.5, 7.0]
    tokens = [f"w{i}" for i in range(48)] + ["naïve", "日本"]
    emb = Embeddings(tokens, vectors, name="t", version=3)
    path = emb.to_word2vec(str(tmp_path / ("t.bin" if binary else "t.txt")), binary=binary)
    kv = gensim_keyed_vectors(path, binary)
    assert kv.index_to_key == tokens
    assert kv.vectors.dtype == np.float32 and kv.vectors.tobytes() == vectors.tobytes()


def test_word2vec_export_refuses_tokens_with_whitespace(tmp_path):
    emb = Embeddings(["a b", "c"], np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"1 tokens are empty or contain whitespace \(\['a b'\]\)"):
        emb.to_word2vec(str(tmp_path / "x.txt"))
    assert not (tmp_path / "x.txt").exists()


def test_parquet_export_is_the_published_table(tmp_path):
    import pyarrow.parquet as pq

    store = TableStore(str(tmp_path / "store"))
    store.publish("toy", table())
    path = open_embeddings(str(tmp_path / "store"), "toy").to_parquet(str(tmp_path / "toy.parquet"))
    back = pq.read_table(path)
    assert back.equals(store.read("toy"))
    assert back.schema.field("vector").type.list_size == 3
