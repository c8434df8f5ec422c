"""The per-shard statistics kernels on hand-computed inputs (no engine)."""
import math
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest

from firth.pipelines.statistics import kernels
from firth.pipelines.statistics.kernels import Cooc, CooccurrenceCounter, cooccurrence, merge_cooccurrence
from firth.pipelines.statistics.kernels.cooccur import dense_layout
from firth.schemas.tables import VOCABULARY
from tests.helpers.statistics import assert_same_bytes, zipf_corpus

# Two documents over ids 0..2, -1 = out of vocabulary (removed before windowing).
HAND_IDS = np.array([0, 1, -1, 2, 0,   1, 1, 2], np.int32)
HAND_OFFSETS = np.array([0, 5, 8])


def dense_matrix(parts: list[Cooc], size: int) -> np.ndarray:
    matrix = np.zeros((size, size), np.float32)
    for part in parts:
        matrix[part.i, part.j] = part.x
    return matrix


def test_cooccurrence_harmonic_by_hand():
    # doc 0 without OOV: [0, 1, 2, 0]; window 2, each pair adds 1/d both ways:
    #   1@1: (0,1) d1 → 1        2@2: (1,2) d1 → 1, (0,2) d2 → 1/2     0@3: (2,0) d1 → 1, (1,0) d2 → 1/2
    # doc 1: [1, 1, 2]: 1@1: (1,1) d1 → 1 both ways = 2;  2@2: (1,2) d1 → 1, (1,2) d2 → 1/2
    # no window crosses from doc 0's last 0 to doc 1's first 1.
    expected = np.array([[0.0, 1.5, 1.5],
                         [1.5, 2.0, 2.5],
                         [1.5, 2.5, 0.0]], np.float32)
    parts = cooccurrence(HAND_IDS, HAND_OFFSETS, window=2, weighting="harmonic", n_buckets=1)
    assert np.array_equal(dense_matrix(parts, 3), expected)
    assert len(parts[0]) == 7  # zero cells are not stored


def test_cooccurrence_uniform_by_hand():
    expected = np.array([[0, 2, 2],
                         [2, 2, 3],
                         [2, 3, 0]], np.float32)
    parts = cooccurrence(HAND_IDS, HAND_OFFSETS, window=2, weighting="uniform", n_buckets=1)
    assert np.array_equal(dense_matrix(parts, 3), expected)
    assert parts[0].scale == 1 and parts[0].units.tolist() == [2, 2, 2, 2, 3, 2, 3]


def test_window_1_sees_only_neighbours_after_oov_removal():
    parts = cooccurrence(HAND_IDS, HAND_OFFSETS, window=1, weighting="harmonic", n_buckets=1)
    # doc 0 [0, 1, 2, 0]: 0-1, 1-2, 2-0; doc 1 [1, 1, 2]: 1-1 (twice), 1-2
    assert np.array_equal(dense_matrix(parts, 3), np.array([[0, 1, 1], [1, 2, 2], [1, 2, 0]], np.float32))


def test_buckets_hold_rows_i_mod_n_sorted_by_i_then_j():
    parts = cooccurrence(HAND_IDS, HAND_OFFSETS, window=2, weighting="harmonic", n_buckets=2)
    rows = [list(zip(p.i.tolist(), p.j.tolist(), p.x.tolist())) for p in parts]
    assert rows == [[(0, 1, 1.5), (0, 2, 1.5), (2, 0, 1.5), (2, 1, 2.5)],
                    [(1, 0, 1.5), (1, 1, 2.0), (1, 2, 2.5)]]
    assert all(p.i.dtype == np.int32 and p.j.dtype == np.int32 and p.x.dtype == np.float32 for p in parts)
    empty_bucket = cooccurrence(HAND_IDS, HAND_OFFSETS, 2, "harmonic", n_buckets=5)[4]  # no id ≡ 4 (mod 5)
    assert len(empty_bucket) == 0


def test_weight_units_are_exact_integers():
    assert kernels.weight_units(4, "harmonic")[0] == 12
    assert kernels.weight_units(4, "harmonic")[1].tolist() == [0, 12, 6, 4, 3]
    assert kernels.weight_units(10, "harmonic")[0] == 2520
    assert kernels.weight_units(3, "uniform")[1].tolist() == [0, 1, 1, 1]
    scale, units = kernels.weight_units(23, "harmonic")  # lcm(1..23) too large: fixed point 2**28
    assert scale == 2**28 and units[3] == round(2**28 / 3) and units[1] == 2**28


def brute_force(ids, offsets, window, weighting) -> dict:
    """The GloVe definition, one pair at a time."""
    matrix = defaultdict(float)
    for d in range(len(offsets) - 1):
        doc = [t for t in ids[offsets[d]:offsets[d + 1]] if t >= 0]
        for p in range(len(doc)):
            for q in range(max(0, p - window), p):
                w = 1.0 / (p - q) if weighting == "harmonic" else 1.0
                matrix[doc[q], doc[p]] += w
                matrix[doc[p], doc[q]] += w
    return matrix


@pytest.mark.parametrize("weighting", ["harmonic", "uniform"])
@pytest.mark.parametrize("memory_bytes", [256, 20_000, kernels.DEFAULT_MEMORY_BYTES])
def test_cooccurrence_matches_the_definition_whatever_the_memory(weighting, memory_bytes):
    # 256 bytes: almost all pairs go through the pair buffer, which is reduced and spilled many times
    ids, offsets = zipf_corpus(0, 3000, 200, 40)
    parts = cooccurrence(ids, offsets, 5, weighting, 3, vocab_size=200, memory_bytes=memory_bytes)
    expected = brute_force(ids, offsets, 5, weighting)
    got = {(i, j): x for p in parts for i, j, x in zip(p.i.tolist(), p.j.tolist(), p.x.tolist())}
    assert got.keys() == expected.keys()
    assert all(got[k] == np.float32(v) for k, v in expected.items())


def test_merging_two_shards_equals_counting_their_concatenation_exactly():
    ids, offsets = zipf_corpus(1, 20_000, 500, 60)
    whole = cooccurrence(ids, offsets, 10, "harmonic", 4, vocab_size=500)
    cut = offsets[25]  # shard boundary at a document boundary
    first = cooccurrence(ids[:cut], offsets[:26], 10, "harmonic", 4, vocab_size=500, memory_bytes=4096)
    second = cooccurrence(ids[cut:], offsets[25:] - cut, 10, "harmonic", 4, vocab_size=500)
    for bucket in range(4):
        merged = merge_cooccurrence([first[bucket], second[bucket]])
        assert_same_bytes(merged, merge_cooccurrence([whole[bucket]]))
        assert_same_bytes(merged, merge_cooccurrence([second[bucket], first[bucket]]))  # order-free
        assert_same_bytes(merged, whole[bucket])


def test_counter_over_batches_equals_one_call():
    ids, offsets = zipf_corpus(2, 5000, 300, 30)
    counter = CooccurrenceCounter(4, "harmonic", vocab_size=300, memory_bytes=2048)
    counter.add(ids[:offsets[10]], offsets[:11])
    counter.add(ids[offsets[10]:], offsets[10:] - offsets[10])
    for got, expected in zip(counter.result(2), cooccurrence(ids, offsets, 4, "harmonic", 2)):
        assert_same_bytes(got, expected)


def test_empty_shards_and_documents():
    for ids, offsets in [(np.zeros(0, np.int32), np.array([0])),  # no documents
                         (np.zeros(0, np.int32), np.array([0, 0, 0])),  # empty documents
                         (np.array([-1, -1, 3], np.int32), np.array([0, 2, 2, 3]))]:  # all OOV or single tokens
        parts = cooccurrence(ids, offsets, 3, "harmonic", 2, vocab_size=4)
        assert [len(p) for p in parts] == [0, 0]
    assert len(merge_cooccurrence(parts)) == 0
    # an empty document between two others breaks nothing and joins nothing
    parts = cooccurrence(np.array([0, 1], np.int32), np.array([0, 1, 1, 2]), 5, "uniform", 1)
    assert len(parts[0]) == 0


def test_merge_refuses_mixed_scales_and_unsorted_parts():
    a = cooccurrence(HAND_IDS, HAND_OFFSETS, 2, "harmonic", 1)[0]
    b = cooccurrence(HAND_IDS, HAND_OFFSETS, 2, "uniform", 1)[0]
    with pytest.raises(ValueError, match="different scales"):
        merge_cooccurrence([a, b])
    backwards = Cooc(a.i[::-1].copy(), a.j[::-1].copy(), a.units[::-1].copy(), a.scale)
    with pytest.raises(ValueError, match="part 1 is not sorted"):
        merge_cooccurrence([a, backwards])
    with pytest.raises(ValueError, match=r"vocab_size=2\)"):
        cooccurrence(HAND_IDS, HAND_OFFSETS, 2, "harmonic", 1, vocab_size=2)
    with pytest.raises(ValueError, match="statistics.weighting"):
        cooccurrence(HAND_IDS, HAND_OFFSETS, 2, "linear", 1)


def test_dense_layout_is_glove_hyperbola_within_budget():
    row_limit, row_start = dense_layout(10, 100)  # the full triangle, 55 entries, fits
    assert row_limit.tolist() == [10] * 10 and row_start[-1] == 55
    # 20 entries: rows lo keep hi < min(10, P // (lo + 1)); P = 15 gives 10 + 6 + 3 = 19, P = 16 gives 21
    row_limit, row_start = dense_layout(10, 20)
    assert row_limit.tolist() == [10, 7, 5] and row_start.tolist() == [0, 10, 16, 19]
    assert dense_layout(10, 0)[0].tolist() == [] and dense_layout(0, 100)[0].tolist() == []


def word_counts(docs: list[list[str]]) -> kernels.WordCounts:
    tokens = pa.array([t for doc in docs for t in doc], pa.large_string())
    return kernels.count_words(tokens, np.cumsum([0] + [len(d) for d in docs]))


def test_count_words_sorted_with_doc_counts():
    counts = word_counts([["b", "a", "c", "a"], [], ["c", "b", "d", "b"], ["a"]])
    assert counts.words.to_pylist() == ["a", "b", "c", "d"]
    assert counts.counts.tolist() == [3, 3, 2, 1]
    assert counts.doc_counts.tolist() == [2, 2, 2, 1]
    assert counts.n_docs == 4


def test_merge_word_counts_equals_counting_everything():
    docs = [["x", "é", "y"], ["y", "y"], [], ["é", "zz"]]
    merged = kernels.merge_word_counts([word_counts(docs[:2]), word_counts(docs[2:])])
    whole = word_counts(docs)
    assert merged.words.equals(whole.words) and merged.words.to_pylist() == ["x", "y", "zz", "é"]  # code point order
    assert merged.counts.tolist() == whole.counts.tolist() == [1, 3, 1, 2]
    assert merged.doc_counts.tolist() == whole.doc_counts.tolist() == [1, 2, 1, 2]
    assert merged.n_docs == 4
    assert len(kernels.merge_word_counts([])) == 0 and len(word_counts([])) == 0


def test_vocabulary_order_ties_min_count_and_max_size():
    # counts: a 3, b 2, c 2, e 2, d 1 (b, c, e tie: token order)
    counts = word_counts([["e", "c", "a", "b"], ["a", "e", "d"], ["c", "a", "b"]])
    vocabulary = kernels.build_vocabulary(counts, min_count=2, max_size=None)
    assert vocabulary.schema.equals(VOCABULARY, check_metadata=False)
    assert vocabulary.to_pylist() == [
        {"token": "a", "id": 0, "count": 3, "doc_count": 3},
        {"token": "b", "id": 1, "count": 2, "doc_count": 2},
        {"token": "c", "id": 2, "count": 2, "doc_count": 2},
        {"token": "e", "id": 3, "count": 2, "doc_count": 2}]
    assert kernels.build_vocabulary(counts, 2, max_size=3)["token"].to_pylist() == ["a", "b", "c"]
    assert kernels.build_vocabulary(counts, 1, max_size=10)["token"].to_pylist() == ["a", "b", "c", "e", "d"]
    assert kernels.build_vocabulary(counts, 4, None).num_rows == 0
    with pytest.raises(ValueError, match="statistics.min_count"):
        kernels.build_vocabulary(counts, 0, None)


def test_encode_marks_out_of_vocabulary():
    tokens = pa.array(["b", "zz", "a", "b", "A"], pa.large_string())
    expected = [1, -1, 0, 1, -1]
    for vocabulary in (pa.array(["a", "b"]), np.array(["a", "b"], dtype=object), ["a", "b"]):
        ids = kernels.encode(tokens, vocabulary)
        assert ids.dtype == np.int32 and ids.tolist() == expected
    assert kernels.encode(pa.array([], pa.large_string()), ["a"]).tolist() == []


def test_term_frequencies_and_tfidf_by_hand():
    # 3 documents, vocabulary of 3 terms; doc 1 has an OOV token (dropped everywhere)
    ids = np.array([0, 1, 0,   1, -1, 2,   0], np.int32)
    offsets = np.array([0, 3, 6, 7])
    doc_index, term_id, tf = kernels.term_frequencies(ids, offsets)
    assert list(zip(doc_index.tolist(), term_id.tolist(), tf.tolist())) == [
        (0, 0, 2), (0, 1, 1), (1, 1, 1), (1, 2, 1), (2, 0, 1)]
    assert doc_index.dtype == np.int64 and term_id.dtype == np.int32 and tf.dtype == np.int32

    doc_counts = np.array([2, 2, 1])  # term 0 in docs 0, 2; term 1 in docs 0, 1; term 2 in doc 1
    idf = kernels.idf(doc_counts, n_docs=3)
    a, b = math.log(4 / 3) + 1, math.log(4 / 2) + 1  # ln((1 + n) / (1 + df)) + 1
    assert idf.dtype == np.float32 and idf.tolist() == np.array([a, a, b], np.float32).tolist()

    weights = kernels.tfidf(doc_index, term_id, tf, idf)
    # doc 0: (2a, a) / (a·√5); doc 1: (a, b) / √(a² + b²); doc 2: a / a
    expected = [2 / math.sqrt(5), 1 / math.sqrt(5), a / math.hypot(a, b), b / math.hypot(a, b), 1.0]
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="same vocabulary"):
        kernels.tfidf(doc_index, term_id, tf, idf[:2])


def test_term_frequencies_of_empty_input():
    doc_index, term_id, tf = kernels.term_frequencies(np.zeros(0, np.int32), np.array([0, 0]))
    assert len(doc_index) == len(term_id) == len(tf) == 0
    assert len(kernels.tfidf(doc_index, term_id, tf, np.ones(3, np.float32))) == 0


def test_directed_entries_become_pieces_per_bucket_sorted():
    from firth.pipelines.statistics.kernels.bucketing import directed_pieces
    shift = 2  # ids < 4
    i, j = np.array([3, 1, 0, 1, 3, 2, 1]), np.array([1, 3, 1, 0, 2, 3, 1])  # any order
    units = np.array([5, 5, 3, 3, 7, 7, 4], np.int64)
    pieces = directed_pieces(i, j, units, shift, n_buckets=2, scale=1)
    rows = [(b, list(zip(p.i.tolist(), p.j.tolist(), p.units.tolist()))) for b, p in pieces]
    # bucket = i % 2; rows sorted by (i, j)
    assert rows == [(0, [(0, 1, 3), (2, 3, 7)]),
                    (1, [(1, 0, 3), (1, 1, 4), (1, 3, 5), (3, 1, 5), (3, 2, 7)])]
    only_bucket_1 = directed_pieces(np.array([3, 1]), np.array([0, 2]), np.array([1, 1]), shift, 2, 1)
    assert [b for b, _ in only_bucket_1] == [1] and only_bucket_1[0][1].i.tolist() == [1, 3]
