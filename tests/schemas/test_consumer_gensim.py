"""The gensim-shaped word API of Embeddings (most_similar, most_similar_cosmul, similarity,
emb["word"], "word" in emb, to_keyed_vectors) against gensim 4.4's KeyedVectors built on the same
vectors: same results in the same order, scores equal to float32 tolerance."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from gensim.models import KeyedVectors

from firth.schemas.consumer import open_embeddings
from tests.helpers.tables import publish_with_subwords, vectors_of, word_table

QUERIES = [  # (positive, negative) as a gensim user writes them
    (["w3", "w7"], ["w1"]),  # an analogy: w3 - w1 + w7
    (["w0"], []),
    ("w5", None),  # one token, not a list
    (["w2", "w9", "w11"], ["w4", "w6"]),
    ([], ["w8"]),  # only a negative: 3CosAdd takes it, as gensim does
]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from firth.schemas.store import TableStore

    store = TableStore(str(tmp_path_factory.mktemp("store")))
    table = word_table(300, 16, seed=7)
    store.publish("t", table)
    keyed = KeyedVectors(16)
    keyed.add_vectors(table["token"].to_pylist(), vectors_of(table))  # gensim's own way in
    return open_embeddings(store.uri, "t"), keyed


def assert_same_results(ours, theirs):
    assert [token for token, _ in ours] == [token for token, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("positive, negative", QUERIES)
def test_most_similar_is_gensims(published, positive, negative):
    emb, keyed = published
    assert_same_results(emb.most_similar(positive=positive, negative=negative, topn=10),
                        keyed.most_similar(positive=positive, negative=negative, topn=10))
    np.testing.assert_allclose(emb.most_similar(positive, negative, topn=None),
                               keyed.most_similar(positive, negative, topn=None), rtol=1e-5, atol=1e-6)
    inputs = {positive} if isinstance(positive, str) else {*positive, *(negative or [])}
    assert not inputs & {token for token, _ in emb.most_similar(positive, negative, topn=len(emb))}
    assert len(emb.most_similar(positive, negative, topn=len(emb))) == len(emb) - len(inputs)


@pytest.mark.parametrize("positive, negative", [q for q in QUERIES if q[0]])
def test_most_similar_cosmul_is_gensims(published, positive, negative):
    emb, keyed = published
    assert_same_results(emb.most_similar_cosmul(positive, negative, topn=10),
                        keyed.most_similar_cosmul(positive=positive, negative=negative, topn=10))
    assert_same_results(emb.most_similar(positive, negative, topn=5, method="3cosmul"),
                        keyed.most_similar_cosmul(positive=positive, negative=negative, topn=5))


def test_vectors_as_queries_and_similarity_are_gensims(published):
    emb, keyed = published
    query = np.random.default_rng(1).standard_normal(16).astype(np.float32) * 3  # not unit length
    assert_same_results(emb.most_similar(positive=[query, "w1"], negative=["w2"]),
                        keyed.most_similar(positive=[query, "w1"], negative=["w2"]))
    assert_same_results(emb.most_similar_cosmul(positive=[query]), keyed.most_similar_cosmul(positive=[query]))
    for a, b in [("w0", "w1"), ("w5", "w5"), ("w17", "w250")]:
        assert emb.similarity(a, b) == pytest.approx(float(keyed.similarity(a, b)), rel=1e-5, abs=1e-6)
    assert emb.similarity("w5", "w5") == pytest.approx(1.0, abs=1e-6)


def test_indexing_and_membership_are_gensims(published):
    emb, keyed = published
    assert emb["w4"].dtype == np.float32 and emb["w4"].tobytes() == keyed["w4"].tobytes()
    assert emb[["w4", "w0", "w4"]].shape == (3, 16)
    assert emb[["w4", "w0", "w4"]].tobytes() == keyed[["w4", "w0", "w4"]].tobytes()
    assert "w299" in emb and "w300" not in emb and ("w300" in keyed) is False
    with pytest.raises(KeyError, match=r"token 'nope' is not in table t@0"):
        emb["nope"]
    with pytest.raises(KeyError, match=r"1 tokens are not in table t@0: \['nope'\]"):
        emb[["w1", "nope"]]
    with pytest.raises(ValueError, match="most_similar needs at least one positive token"):
        emb.most_similar()
    with pytest.raises(ValueError, match="method must be '3cosadd' or '3cosmul'"):
        emb.most_similar("w1", method="cosine")


def test_to_keyed_vectors_is_the_same_table_for_gensim(published):
    emb, keyed = published
    converted = emb.to_keyed_vectors()
    assert converted.index_to_key == emb.tokens and converted.vectors.tobytes() == emb.vectors.tobytes()
    assert [converted.get_vecattr(t, "count") for t in ("w0", "w299")] == [3000, 10]  # word_table's counts
    assert_same_results(converted.most_similar(positive=["w3", "w7"], negative=["w1"]),
                        keyed.most_similar(positive=["w3", "w7"], negative=["w1"]))


def test_to_keyed_vectors_without_gensim_names_the_install(published, monkeypatch):
    emb, _ = published
    monkeypatch.setitem(sys.modules, "gensim", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ImportError, match=r"to_keyed_vectors\(\) needs gensim, which is not installed: "
                                          r"pip install gensim"):
        emb.to_keyed_vectors()


def test_fasttext_tables_give_oov_words_their_ngram_vectors(local_store):
    table = word_table(50, 8, seed=3)
    publish_with_subwords(local_store, "ft", table, ["unseenword", "w1x"])
    emb = open_embeddings(local_store.uri, "ft")
    assert "unseenword" not in emb and emb.is_oov("unseenword") and not emb.is_oov("w1") and not emb.is_oov("qq")
    oov = emb.vector("unseenword")
    assert oov.shape == (8,) and emb["unseenword"].tobytes() == oov.tobytes()
    assert emb[["w1", "unseenword"]].tobytes() == np.stack([emb.vector("w1"), oov]).tobytes()
    keyed = KeyedVectors(8)
    keyed.add_vectors(table["token"].to_pylist(), vectors_of(table))
    # an OOV input is its n-gram vector at unit length (gensim's FastTextKeyedVectors: get_vector(norm=True))
    # and is not left out of the results
    unit = oov / np.linalg.norm(oov)
    assert_same_results(emb.most_similar(positive=["unseenword", "w2"], negative=["w3"]),
                        keyed.most_similar(positive=[unit, "w2"], negative=["w3"]))
    assert_same_results(emb.most_similar_cosmul(positive=["unseenword", "w2"], negative=["w3"]),
                        keyed.most_similar_cosmul(positive=[unit, "w2"], negative=["w3"]))
    assert emb.similarity("unseenword", "w2") == pytest.approx(
        float(np.dot(oov, keyed["w2"]) / np.linalg.norm(oov) / np.linalg.norm(keyed["w2"])), rel=1e-5)
    with pytest.raises(KeyError, match=r"1 tokens are not in table ft@0: \['qq'\]"):
        emb[["w1", "qq"]]  # no n-gram of <qq> is published
