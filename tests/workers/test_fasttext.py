"""fastText: n-grams, bucket hash, word rows and the OOV rule (hand-checked), and the job end to end:
a published fastText table whose OOV lookup works through the consumer and the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firth.schemas.subwords import bucket_hashes, ngrams, oov_vector, word_buckets
from firth.workers.word2vec.model import init_state, make_layout, word_vectors
from tests.helpers import write_job


def test_ngrams_with_boundary_markers():
    assert ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    # by start then length; lone markers left out; the whole wrapped word once n reaches its length
    assert ngrams("ab", 1, 4) == ["<a", "<ab", "<ab>", "a", "ab", "ab>", "b", "b>"]
    assert ngrams("héé", 4, 4) == ["<héé", "héé>"]  # characters, not bytes
    assert ngrams("a", 5, 6) == []


def test_bucket_hash_is_fasttexts_fnv1a_on_signed_bytes():
    # values of fastText's Dictionary::hash (gensim's ft_hash_bytes), non-ASCII bytes sign-extended
    assert bucket_hashes(["<wh", "whé", "日本", "abc>"]).tolist() == [1048167652, 1725601622, 4164387409, 2486443631]
    offsets, buckets = word_buckets(["where", "a"], 3, 3, 1000)
    assert offsets.tolist() == [0, 5, 6]
    assert buckets.tolist() == (bucket_hashes(["<wh", "whe", "her", "ere", "re>", "<a>"]) % 1000).tolist()


def test_word_rows_and_in_vocabulary_vectors_are_means_of_word_and_ngrams():
    # "aa" has n-grams <a, aa, a> (n=2) and "ab" <a, ab, b>: "<a" is shared, so it gets one row
    layout = make_layout(["aa", "ab"], 2, negative=True, hs=False, subwords=(2, 2, 1 << 20))
    _, buckets = word_buckets(["aa", "ab"], 2, 2, 1 << 20)
    assert len(layout.bucket_ids) == 5 and layout.bucket_ids.tolist() == sorted(set(buckets.tolist()))
    assert layout.row_offsets.tolist() == [0, 4, 8]
    rows = layout.rows.tolist()
    assert rows[0] == 0 and rows[4] == 1 and rows[1] == rows[5]  # own row first; "<a" shared
    assert layout.n_rows == 2 + 5 + 2  # words, buckets, syn1neg
    state = init_state(layout, 0)
    expected = np.stack([state[rows[0:4]].mean(0), state[rows[4:8]].mean(0)])
    np.testing.assert_allclose(word_vectors(layout, state), expected, rtol=1e-6)


def test_oov_vector_is_the_mean_of_its_published_ngram_vectors():
    buckets = 1000
    grams = ngrams("abc", 3, 3)  # <ab, abc, bc>
    ids = np.sort(bucket_hashes(grams) % buckets).astype(np.int64)
    vectors = np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2)  # (K, 2)
    np.testing.assert_allclose(oov_vector("abc", ids, vectors, 3, 3, buckets), vectors.mean(0))
    # "abcd": <ab, abc, bcd, cd> -- only <ab and abc are published: the mean of those two
    found = np.searchsorted(ids, bucket_hashes(["<ab", "abc"]) % buckets)
    np.testing.assert_allclose(oov_vector("abcd", ids, vectors, 3, 3, buckets), vectors[found].mean(0))
    assert oov_vector("zz", ids, vectors, 3, 3, buckets) is None


# ---- the job end to end -------------------------------------------------------------------------


@pytest.mark.slow
def test_fasttext_job_publishes_subwords_and_oov_words_get_vectors(tmp_path, capsys):
    from firth.pipelines.cli.main import main
    from firth.pipelines.config import load_config
    from firth.pipelines.job import run
    from firth.schemas.consumer import open_embeddings
    from firth.schemas.store import TableStore

    config = load_config(write_job(tmp_path, {
        "table": "ft", "statistics": {"n_workers": 1, "min_count": 5, "window": 2, "n_buckets": 2},
        "model": {"model": "fasttext", "dim": 8, "epochs": 2, "num_workers": 2, "min_n": 3, "max_n": 4,
                  "buckets": 2_000_000},
        "evaluation": {"enabled": False}}, shards=1))
    published = run(config)
    store = TableStore(config.store.uri)
    info = store.info("ft", published.version)
    spec = info.metadata["subwords"]
    assert spec == {"min_n": 3, "max_n": 4, "buckets": 2_000_000, "hash": "fnv1a32-signed-bytes",
                    "artifact": "subwords.npz", "oov": "mean"}
    assert info.metadata["model"] == "fasttext" and "subwords.npz" in info.artifacts
    losses = info.metadata["training"]["epoch_losses"]
    # mean per trained example; untrained (zero output rows) it is log 2 per scored output: 6 log 2
    assert len(losses) == 2 and all(0 < loss < 0.7 * 6 * np.log(2) for loss in losses)

    embeddings = open_embeddings(config.store.uri, "ft")
    word = "pythonically"
    assert word not in embeddings
    with open(tmp_path / "subwords.npz", "wb") as fh:
        fh.write(Path(store.artifact_uri("ft", None, "subwords.npz")).read_bytes())
    with np.load(tmp_path / "subwords.npz") as published_subwords:
        ids, vectors = published_subwords["bucket_ids"], published_subwords["vectors"]
    assert vectors.shape == (len(ids), 8) and (np.diff(ids) > 0).all()
    wanted = word_buckets([word], 3, 4, 2_000_000)[1]
    known = wanted[np.isin(wanted, ids)]
    assert 0 < len(known) <= len(wanted)
    np.testing.assert_allclose(embeddings.vector(word), vectors[np.searchsorted(ids, known)].mean(0), rtol=1e-6)
    neighbours = embeddings.neighbors(word, k=3)
    assert len(neighbours) == 3 and all(token in embeddings for token, _ in neighbours)
    assert main(["neighbors", "ft", word, "-k", "2", "--store", config.store.uri]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    with pytest.raises(KeyError, match="not in table ft@0"):
        embeddings.vector("qq")  # no n-gram of "<qq>" was ever trained
