"""word2vec: the tables built from counts (hand-checked), the CPU kernel (hand-checked steps, gensim's
per-pair rule; the GPU kernel against it: test_word2vec_cuda.py), and the Ray Train wiring (determinism, restore after a worker failure)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from firth.pipelines.config import Word2VecConfig
from firth.workers.word2vec.model import alias_table, huffman, init_state, keep_probabilities, make_layout, word_vectors
from tests.helpers.word2vec import corpus, run_numba

# ---- tables -------------------------------------------------------------------------------------


def test_huffman_codes_on_a_hand_example():
    # counts 5 4 3 2 1: merges (1,2)->n5=3, (n5,3)->n6=6, (4,5)->n7=9, (n6,n7)->root n8=15;
    # the second of each pair takes code 1. Codes and points (inner node - V) are listed root first.
    codes, points, lengths = huffman(np.array([5, 4, 3, 2, 1]))
    assert lengths.tolist() == [2, 2, 2, 3, 3]
    assert [codes[w, :lengths[w]].tolist() for w in range(5)] == [[1, 1], [1, 0], [0, 1], [0, 0, 1], [0, 0, 0]]
    assert [points[w, :lengths[w]].tolist() for w in range(5)] == [[3, 2], [3, 2], [3, 1], [3, 1, 0], [3, 1, 0]]
    with pytest.raises(ValueError, match="counts must be sorted descending"):
        huffman(np.array([1, 2]))


def test_subsampling_keep_probabilities():
    # t * total = 0.01 * 1050 = 10.5; keep = (sqrt(f / 10.5) + 1) * 10.5 / f, at most 1
    keep = keep_probabilities(np.array([1000, 40, 10]), 0.01)
    expected = [(np.sqrt(1000 / 10.5) + 1) * 10.5 / 1000, min(1.0, (np.sqrt(40 / 10.5) + 1) * 10.5 / 40), 1.0]
    np.testing.assert_allclose(keep, expected, rtol=1e-6)
    assert keep[0] == pytest.approx(0.1130, abs=1e-4) and keep[1] == pytest.approx(0.7749, abs=1e-4)
    np.testing.assert_array_equal(keep_probabilities(np.array([1000, 1]), 0.0), [1.0, 1.0])


def test_alias_table_gives_the_unigram_to_the_075_distribution():
    counts = np.array([900, 300, 40, 7, 7, 1])
    prob, alias = alias_table(counts)
    # P(w) = (prob[w] + sum of (1 - prob[k]) over the columns k whose alias is w) / V
    implied = prob.astype(np.float64).copy()
    for k in range(len(counts)):
        if alias[k] != k:
            implied[alias[k]] += 1.0 - prob[k]
    target = counts ** 0.75 / (counts ** 0.75).sum()
    np.testing.assert_allclose(implied / len(counts), target, rtol=1e-6)


# ---- kernels ------------------------------------------------------------------------------------

def test_hierarchical_softmax_steps_match_a_hand_computation():
    # V = 2, the document "1 0", window 1, no subsampling: two skip-gram examples, no randomness.
    # Huffman of counts (2, 1): one inner node (syn1 row 0); word 1 has code 0, word 0 code 1.
    counts = np.array([2, 1])
    layout = make_layout(["a", "b"], 3, negative=False, hs=True)
    state = init_state(layout, seed=0)
    w0, w1 = state[0].astype(np.float64), state[1].astype(np.float64)
    stats = run_numba(layout, state, np.array([1, 0], np.int32), np.array([0, 2]), counts, True, 0, True, 1, 0.1)
    sigma = _table_sigma
    # centre 1 -> target 0 (code 1, label 0): node is 0, so f = 0, g = (0 - σ(0)) 0.1
    node = -sigma(0.0) * 0.1 * w1
    # centre 0 -> target 1 (code 0, label 1): f = w0 . node, g = (1 - σ(f)) 0.1
    f = w0 @ node
    g = (1 - sigma(f)) * 0.1
    np.testing.assert_allclose(state[0], w0 + g * node, rtol=1e-5)
    np.testing.assert_array_equal(state[1], w1.astype(np.float32))  # its gradient was node 0 = 0
    np.testing.assert_allclose(state[2], node + g * w0, rtol=1e-5)
    assert stats.tolist()[1:] == [2.0, 2.0]  # examples, words kept
    assert stats[0] == pytest.approx(2 * np.log(2), rel=1e-2)  # two scores near 0: -log σ(±0)


def _table_sigma(f):  # the kernel's table: σ at the centre of f's cell of width 12 / 1000
    return 1 / (1 + np.exp(-((np.floor((f + 6) * 1000 / 12) + 0.5) * 12 / 1000 - 6)))


def _gensim_input(syn0, rows):
    """gensim's skip-gram training input: the word's rows summed over the n-gram count (1 for word2vec)."""
    return syn0[rows].sum(axis=0) / max(1, len(rows) - 1)


def _skipgram_hs_reference(layout, state, ids, counts, window, alpha, seed, per_pair=True):
    """gensim's skip-gram with hierarchical softmax written out in float64, one document, no
    subsampling: for every (centre, context) pair the input (the mean of the centre's rows) is
    recomputed and every one of its rows gets the pair's gradient (fasttext_inner.pyx,
    fasttext_fast_sentence_sg_hs); scores outside (-6, 6) update nothing. per_pair=False: every
    pair of a window scored against the window's first input, the summed gradient added once
    (the kernel before issue 20). The window draws replay the kernel's LCG."""
    state = state.astype(np.float64)
    syn0, _, syn1 = layout.views(state)
    codes, points, lengths = huffman(counts)
    mask, r = (1 << 64) - 1, seed
    for _ in ids:  # the subsampling draw, one per word, even with sample 0
        r = (r * 25214903917 + 11) & mask
    for pos, word in enumerate(ids):
        r = (r * 25214903917 + 11) & mask
        reduced = window - (((r >> 32) * window) >> 32)
        lo, hi = max(0, pos - reduced), min(len(ids), pos + reduced + 1)
        rows = layout.rows[layout.row_offsets[word]:layout.row_offsets[word + 1]]
        h, total = _gensim_input(syn0, rows), np.zeros(syn0.shape[1])
        for c in range(lo, hi):
            if c == pos:
                continue
            if per_pair:
                h = _gensim_input(syn0, rows)
            work = np.zeros(syn0.shape[1])
            target = ids[c]
            for p in range(lengths[target]):
                node, label = points[target, p], 1 - codes[target, p]
                f = h @ syn1[node]
                if abs(f) >= 6:
                    continue
                g = (label - _table_sigma(f)) * alpha
                work += g * syn1[node]
                syn1[node] += g * h
            if per_pair:
                np.add.at(syn0, rows, work)
            total += work
        if not per_pair:
            np.add.at(syn0, rows, total)
    return state


@pytest.mark.parametrize("subwords", [None, (2, 3, 7)])
def test_skipgram_trains_pair_by_pair_as_gensim(subwords):
    # word2vec (one row per word) and fastText (word + n-gram rows; 7 buckets, so words share
    # rows): the kernel keeps the input's mean up to date in place of recomputing it per pair
    # and writes the rows once per window; the result is gensim's per-pair update.
    tokens = ["ab", "ba", "abc", "cab", "bca", "c"]
    counts = np.array([9, 7, 5, 4, 2, 1])
    ids = np.array([0, 2, 1, 0, 3, 4, 0, 5, 1, 2, 0, 1], np.int32)
    layout = make_layout(tokens, 4, negative=False, hs=True, subwords=subwords)
    start = np.random.default_rng(3).normal(scale=0.5, size=(layout.n_rows, 4)).astype(np.float32)
    state = start.copy()
    stats = run_numba(layout, state, ids, np.array([0, len(ids)]), counts, True, 0, True, 3, 0.2, seed=11)
    expected = _skipgram_hs_reference(layout, start, ids, counts, 3, 0.2, 11)
    np.testing.assert_allclose(state, expected, atol=2e-5)
    stale = _skipgram_hs_reference(layout, start, ids, counts, 3, 0.2, 11, per_pair=False)
    assert np.abs(stale - expected).max() > 1e-2  # the case tells per-pair from per-window updates
    assert stats[1] > len(ids)  # windows of more than one pair were trained


def test_saturated_scores_update_nothing():
    # V = 2, the document "1 0", window 1, hierarchical softmax: centre 1 -> target 0 (label 0) scores
    # +8 and centre 0 -> target 1 (label 1) scores -8, both outside (-6, 6): gensim skips such
    # a score (word2vec.c too for hierarchical softmax); its loss is still counted (≈ |f|).
    layout = make_layout(["a", "b"], 2, negative=False, hs=True)
    state = np.array([[-4.0, 0.0], [4.0, 0.0], [2.0, 0.0]], np.float32)  # w0, w1, the one inner node
    stats = run_numba(layout, state, np.array([1, 0], np.int32), np.array([0, 2]), np.array([2, 1]), True, 0,
                       True, 1, 0.1)
    np.testing.assert_array_equal(state, [[-4.0, 0.0], [4.0, 0.0], [2.0, 0.0]])
    assert stats.tolist() == [16.0, 2.0, 2.0]


def test_subsampling_drops_frequent_words_at_the_documented_rate():
    counts = np.array([9000, 10])
    keep = keep_probabilities(counts, 1e-2)  # t * total = 90.1: word 0 keeps (sqrt(9000/90.1) + 1) 90.1/9000
    assert keep[0] == pytest.approx(0.11006, abs=1e-4) and keep[1] == 1.0
    layout = make_layout(["a", "b"], 2, negative=True, hs=False)
    ids = np.tile(np.array([0] * 9 + [1], np.int32), 2000)  # 18000 of word 0, 2000 of word 1
    stats = run_numba(layout, init_state(layout, 0), ids, np.array([0, len(ids)]), counts, True, 1, False, 1,
                       0.0, sample=1e-2)
    expected = 18000 * keep[0] + 2000  # binomial sd of the first term: 42
    assert abs(stats[2] - expected) < 4 * 42


@pytest.mark.slow
def test_hogwild_threads_train_every_example_once_and_learn_like_one_thread():
    from firth.workers.word2vec.loop import WorkerLoop

    ids, offsets, counts = corpus(40, 600, seed=3)
    layout = make_layout([str(w) for w in range(40)], 16, negative=True, hs=False)
    results = {}
    for threads in (1, 2):
        # window 1 and no subsampling: the examples do not depend on the random draws
        config = Word2VecConfig(dim=16, window=1, negative=3, sample=0, alpha=0.05, threads_per_worker=threads)
        worker = WorkerLoop(config, layout, counts, torch.device("cpu"), rank=0)
        rng_state = np.arange(1, threads + 1, dtype=np.uint64)
        losses = []
        for _ in range(4):
            stats = np.zeros(3)
            worker.train(ids, offsets, 0.05, 0.05, rng_state, stats)
            losses.append(stats[0] / stats[1])
        results[threads] = stats, losses
    (one, one_losses), (two, two_losses) = results[1], results[2]
    assert one[2] == two[2] == len(ids)  # every word once per epoch, split between the threads
    assert one[1] == two[1] == 2 * (len(ids) - (len(offsets) - 1))  # both neighbours of every word
    assert two_losses[-1] < two_losses[0] < 0.8 * np.log(2) * (1 + 3)  # log 2 per output untrained
    assert two_losses[-1] == pytest.approx(one_losses[-1], rel=0.05)  # the same model, trained in parallel


# ---- Ray Train ----------------------------------------------------------------------------------

VOCAB = 30


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    """3 tokens shards, several row groups each: 2 workers get uneven shares."""
    folder = tmp_path_factory.mktemp("tokens")
    ids, offsets, counts = corpus(VOCAB, 300, seed=2)
    docs = np.array_split(np.arange(300), 3)
    for shard, rows in enumerate(docs):
        lists = pa.ListArray.from_arrays(pa.array(offsets[rows[0]:rows[-1] + 2] - offsets[rows[0]], pa.int32()),
                                         pa.array(ids[offsets[rows[0]]:offsets[rows[-1] + 1]], pa.int32()))
        table = pa.table({"doc_id": pa.array([f"d{r}" for r in rows]), "token_ids": lists})
        from firth.schemas.tables import TOKENS, check
        pq.write_table(check(table, TOKENS, cast=True), folder / f"shard-{shard:05d}.parquet", row_group_size=40)
    return str(folder), counts


CONFIG = Word2VecConfig(dim=8, window=3, negative=3, sample=1e-2, epochs=3, alpha=0.05, num_workers=2,
                        syncs_per_epoch=3, block_words=300, seed=7)


def _train(tokens, tmp, name, config=CONFIG, **kw):
    from firth.workers.word2vec.train import train_word2vec

    folder, counts = tokens
    return train_word2vec(folder, [f"w{i}" for i in range(VOCAB)], counts, config,
                          checkpoint_uri=str(tmp / name), progress=False, **kw)


def _train_logical(tokens, config=CONFIG):
    """config.num_workers logical workers in this process (workers/raytrain/logical.py)."""
    from firth.workers.raytrain.logical import train_logical
    from firth.workers.word2vec.train import _Word2VecWorker, worker_loop

    folder, counts = tokens
    loop = worker_loop(folder, [f"w{i}" for i in range(VOCAB)], counts, config, {})
    models, sums = train_logical(_Word2VecWorker, loop, config.num_workers, config.epochs)
    return models, sums, loop["layout"]


@pytest.mark.parametrize("combine", ["sum", "touched", "mean"])
def test_logical_workers_hold_one_state_after_every_epoch_and_learn(tokens_dir, combine):
    config = CONFIG.model_copy(update={"num_workers": 3, "sync": combine})
    models, sums, _ = _train_logical(tokens_dir, config)
    for model in models[1:]:
        np.testing.assert_array_equal(model.worker.state, models[0].worker.state)
    assert models[0].sync.syncs == config.syncs_per_epoch * config.epochs
    assert list(sums[:, 3]) == [corpus(VOCAB, 300, seed=2)[1][-1]] * config.epochs  # every word, each epoch
    losses = sums[:, 0] / sums[:, 1]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_two_workers_restore_after_a_failure_and_replay_the_same_updates(ray_session, tokens_dir, tmp_path):
    uninterrupted = _train(tokens_dir, tmp_path, "plain")
    losses = uninterrupted.epoch_losses
    assert uninterrupted.epochs_run == 3 and losses[-1] < losses[0]
    marker = tmp_path / "fault-marker"
    restored = _train(tokens_dir, tmp_path, "faulty", fault_injection=str(marker))
    assert marker.exists()  # rank 1 failed in epoch 2
    np.testing.assert_array_equal(restored.vectors, uninterrupted.vectors)
    assert restored.epoch_losses == losses
    # the logical workers of benchmarks/sync_schemes.py reach the same bytes without Ray
    models, sums, layout = _train_logical(tokens_dir)
    np.testing.assert_array_equal(word_vectors(layout, models[0].worker.state), uninterrupted.vectors)
    np.testing.assert_allclose(sums[:, 0] / sums[:, 1], losses, rtol=1e-12)


# ---- continued training -------------------------------------------------------------------------


def test_warm_start_maps_published_rows_by_token_and_checks_dim(tmp_path):
    from firth.pipelines.config import JobConfig
    from firth.schemas.export import word_table
    from firth.schemas.store import TableStore
    from firth.workers.word2vec.warm_start import warm_start_vectors

    vocabulary = pa.table({"token": ["a", "b"], "id": pa.array([0, 1], pa.int32()),
                           "count": pa.array([5, 3], pa.int64())})
    published = np.array([[1, 2], [3, 4]], np.float32)
    TableStore(str(tmp_path)).publish("w", word_table(vocabulary["token"], published, vocabulary["id"],
                                                        vocabulary["count"]), {})
    config = JobConfig.model_validate({"table": "w2", "corpus": {"shards": ["x"]}, "store": {"uri": str(tmp_path)},
                                       "model": {"model": "word2vec", "dim": 2, "init_from": "w@0"}})
    initial = warm_start_vectors(config, ["b", "new", "a"])  # the new run's vocabulary, by its counts
    np.testing.assert_array_equal(initial[[0, 2]], published[[1, 0]])
    assert np.isnan(initial[1]).all()
    wrong_dim = config.model_copy(update={"model": config.model.model_copy(update={"dim": 3})})
    with pytest.raises(ValueError, match="model.init_from: w@0 has dim 2, but model.dim is 3"):
        warm_start_vectors(wrong_dim, ["a"])
