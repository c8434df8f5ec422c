"""The GPU word2vec kernel (workers/word2vec/kernel_cuda.py) against the CPU kernel, on the CPU through
numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1): one window's update equals
the CPU kernel's, the shared noise words follow the noise distribution, a few epochs learn alike."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from numba import cuda

from firth.workers.word2vec import kernel_cuda
from firth.workers.word2vec.model import (
    alias_table,
    huffman,
    init_state,
    keep_probabilities,
    make_layout,
    sigmoid_tables,
)
from tests.helpers.word2vec import NO_HS, corpus, run_numba

# the simulator wraps uint64 scalars in numpy, which warns when the LCG wraps around (as it should)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


@pytest.fixture(autouse=True, scope="module")
def fast_thread_switches():
    """The simulator runs a block's threads as Python threads that meet at every barrier: with the
    default 5 ms switch interval each barrier costs milliseconds, with 1 µs a few hundred µs."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_cuda(layout, state, ids, offsets, counts, sg, negative, hs, window, alpha, seed=1, sample=0.0, threads=4,
             cache=True, same_draws=True):
    """The GPU kernel on one block, in place on `state`; returns its stats. same_draws: every chunk
    starts from LCG state `seed`, so a one-chunk block draws as run_numba with the same seed (else
    the chunks' own states, `chunk_states`). threads=4 at dim 16: 4 elements per thread and a
    reduction across threads, as on the device."""
    tables = kernel_cuda.DeviceTables(layout.row_offsets, layout.rows, keep_probabilities(counts, sample),
                                      *alias_table(counts), *(huffman(counts) if hs else NO_HS), *sigmoid_tables())
    stats = np.zeros(3)
    syn1neg_at = layout.n_input
    rng_state = np.array([seed], np.uint64)
    states = kernel_cuda.chunk_states
    if same_draws:
        kernel_cuda.chunk_states = lambda state_, n: np.full(n, seed, np.uint64)
    try:
        kernel_cuda.train_block(state, syn1neg_at, syn1neg_at + layout.vocab_size * layout.negative, tables, ids,
                                offsets, sg, negative, hs, window, alpha, alpha, rng_state, stats, threads, cache)
    finally:
        kernel_cuda.chunk_states = states
    return stats


def test_the_kernels_run_on_the_simulator_or_a_gpu():
    # without either, every kernel test below would fail on its first launch: say why here
    assert cuda.is_available(), "no GPU and no simulator: tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 " \
                                "before numba.cuda is imported; was numba.cuda imported earlier?"


def test_documents_are_cut_into_chunks_of_at_most_chunk_words():
    doc_offsets = np.cumsum([0, 0, 3, 600, 256, 257])  # an empty document, a short one, long ones
    assert kernel_cuda.chunk_offsets(doc_offsets, 256).tolist() == [0, 3, 259, 515, 603, 859, 1115, 1116]
    assert kernel_cuda.chunk_offsets(np.array([0]), 256).tolist() == [0]


def test_chunk_states_are_a_replayable_stream_of_distinct_states():
    first = np.array([12345], np.uint64)
    whole = kernel_cuda.chunk_states(first.copy(), 5)
    split = first.copy()
    parts = np.concatenate([kernel_cuda.chunk_states(split, 3), kernel_cuda.chunk_states(split, 2)])
    np.testing.assert_array_equal(parts, whole)  # block after block: the chunk's index in the epoch
    np.testing.assert_array_equal(split, first + np.uint64(5) * kernel_cuda._GOLDEN)
    assert len(set(whole.tolist())) == 5 and len(set(whole.tolist()) & set(
        kernel_cuda.chunk_states(np.array([12346], np.uint64), 5).tolist())) == 0  # another seed/epoch/rank



def test_settings_a_thread_block_cannot_hold_are_refused_with_the_key_to_change():
    layout = make_layout(TOKENS, 8, negative=True, hs=False)
    tables = kernel_cuda.DeviceTables(layout.row_offsets, layout.rows, *keep_probabilities(COUNTS, 0)[None],
                                      *alias_table(COUNTS), *NO_HS, *sigmoid_tables())
    ids, offsets, rng = np.zeros(2, np.int32), np.array([0, 2]), np.ones(1, np.uint64)
    with pytest.raises(ValueError, match="model.dim 4100 is more than a thread block holds"):
        kernel_cuda.train_block(np.zeros((20, 4100), np.float32), 6, 12, tables, ids, offsets, True, 5, False, 5,
                                0.1, 0.1, rng, np.zeros(3))
    with pytest.raises(ValueError, match="model.window 300 and model.negative 20 need .* lower model.window"):
        kernel_cuda.train_block(np.zeros((20, 8), np.float32), 6, 12, tables, ids, offsets, True, 20, False, 300,
                                0.1, 0.1, rng, np.zeros(3))
    # window 5, negative 5 at dim 300 (75 threads): the window's rows are cached, 4 x 2 x 15 x 300 bytes
    floats, ints = kernel_cuda.shared_sizes(300, 5, 5, 75, True)
    assert floats == 2 * 15 * 300 + kernel_cuda.GROUP * 75 + kernel_cuda.GROUP and 4 * (floats + ints) < 48 * 1024

TOKENS = ["the", "banana", "of", "cab", "bca", "ab"]  # "banana" lists its n-gram "ana" twice
COUNTS = np.array([9, 7, 5, 4, 2, 1])


@pytest.mark.parametrize("case, sg, negative, hs, subwords, ids", [
    # skip-gram with noise words: two words and window 1, so every window has one pair and the
    # window's shared noise words are that pair's own
    ("sg ns", True, 4, False, None, [0, 1]),
    ("sg ns global rows", True, 4, False, None, [0, 1]),
    ("sg hs", True, 0, True, None, [0, 2, 1, 0, 3, 4, 0, 5, 1, 2]),
    ("sg ns+hs", True, 4, True, None, [0, 1]),
    ("cbow ns", False, 4, False, None, [0, 2, 1, 0, 3, 4, 0, 5, 1, 2]),
    ("cbow hs", False, 0, True, None, [0, 2, 1, 0, 3, 4, 0, 5, 1, 2]),
    ("fasttext sg ns+hs", True, 3, True, (2, 3, 11), [1, 0]),
    # "banana" the centre of windows of several pairs: each pair moves its mean by input_step
    ("fasttext sg hs", True, 0, True, (2, 3, 11), [0, 1, 2, 1, 3, 1]),
    ("fasttext cbow ns", False, 3, False, (2, 3, 11), [1, 0, 2, 1, 3]),
])
def test_one_window_update_equals_the_cpu_kernel(case, sg, negative, hs, subwords, ids):
    layout = make_layout(TOKENS, 16, negative=negative > 0, hs=hs, subwords=subwords)
    if subwords:  # the case it is for: "banana" (id 1) lists a row twice, and its mean moves further
        banana = layout.rows[layout.row_offsets[1]:layout.row_offsets[2]]
        assert len(np.unique(banana)) < len(banana)
    start = np.random.default_rng(5).normal(scale=0.3, size=(layout.n_rows, 16)).astype(np.float32)
    cpu, gpu = start.copy(), start.copy()
    ids = np.array(ids, np.int32)
    offsets = np.array([0, len(ids)])
    window = 1 if len(ids) == 2 else 3
    cpu_stats = run_numba(layout, cpu, ids, offsets, COUNTS, sg, negative, hs, window, 0.1, seed=7, sample=0.05)
    gpu_stats = run_cuda(layout, gpu, ids, offsets, COUNTS, sg, negative, hs, window, 0.1, seed=7, sample=0.05,
                         cache=case != "sg ns global rows")
    assert np.abs(cpu - start).max() > 1e-2  # it trained
    np.testing.assert_allclose(gpu, cpu, atol=2e-6)
    assert gpu_stats[1:].tolist() == cpu_stats[1:].tolist()  # examples, words kept
    assert gpu_stats[0] == pytest.approx(cpu_stats[0], rel=1e-5)


@cuda.jit
def _record_windows(kept, n, window, negative, alias_prob, alias_idx, states, info, slot_word, pair_target,
                    pair_len, pair_outs, targets, noise):  # pragma: no cover (compiled)
    """Block b draws every window of `kept` from states[b] as the kernel does, and records each
    pair's target and noise words (-1: none): targets (blocks, n, 2 window), noise (blocks, n, 2 window, negative)."""
    b = cuda.blockIdx.x
    r = states[b]
    for pos in range(n):
        r = kernel_cuda._window_lists(pos, n, kept, True, window, negative, alias_prob, alias_idx, r, info[b],
                                      slot_word[b], pair_target[b], pair_len[b], pair_outs[b])
        for t in range(info[b, 3]):
            targets[b, pos, t] = pair_target[b, t]
            for j in range(1, pair_len[b, t]):
                noise[b, pos, t, j - 1] = slot_word[b, pair_outs[b, t * (negative + 1) + j]]


def test_shared_noise_words_follow_the_noise_distribution_pair_by_pair():
    counts = np.array([40, 20, 9, 4, 1])
    window, negative, blocks, n = 3, 6, 8, 160
    kept = np.random.default_rng(0).integers(0, len(counts), n).astype(np.int32)
    pairs, stride = 2 * window, negative + 1
    targets = np.full((blocks, n, pairs), -1, np.int32)
    noise = np.full((blocks, n, pairs, negative), -1, np.int32)
    scratch = [np.zeros((blocks, size), np.int32) for size in (5, pairs + negative, pairs, pairs, pairs * stride)]
    _record_windows[blocks, 1](kept, n, window, negative, *alias_table(counts),
                               np.arange(1, blocks + 1, dtype=np.uint64) * np.uint64(7919), *scratch, targets, noise)
    trained = targets >= 0
    assert trained.sum(axis=2).max() == pairs and trained.sum(axis=2).min() == 1  # 1..3 per side, cut at the ends
    # shared: the window's draws D, each pair's list D less its own target, in draw order; so pair t's
    # list less pair 0's target is pair 0's list less pair t's target
    for b, pos in zip(*np.nonzero(trained[:, :, 1])):
        first, t0 = noise[b, pos, 0], targets[b, pos, 0]
        for t in np.nonzero(trained[b, pos])[0]:
            own, target = noise[b, pos, t], targets[b, pos, t]
            np.testing.assert_array_equal(own[(own >= 0) & (own != t0)], first[(first >= 0) & (first != target)])
    # marginal: one pair per window (windows are independent; pairs of one window are not), each of
    # its `negative` draws from counts^0.75, less the draws equal to its target
    p = counts ** 0.75 / (counts ** 0.75).sum()
    observed, expected, variance = np.zeros(len(counts)), np.zeros(len(counts)), np.zeros(len(counts))
    for b in range(blocks):
        for pos in range(n):
            chosen = pos % trained[b, pos].sum()
            target = targets[b, pos, chosen]
            observed += np.bincount(noise[b, pos, chosen][noise[b, pos, chosen] >= 0], minlength=len(counts))
            other = np.arange(len(counts)) != target
            expected += negative * p * other
            variance += negative * p * (1 - p) * other
    assert observed.sum() > 5000
    np.testing.assert_array_less(np.abs(observed - expected), 4 * np.sqrt(variance))  # 4 binomial SEs per word



# (epochs, the least relative drop of the loss, the relative gap allowed to the CPU kernel): hierarchical
# softmax learns slower on 30 words (6 epochs: 3.07 -> 2.90), so its gap must be smaller than its drop
@pytest.mark.parametrize("sg, negative, hs, epochs, drop, gap", [(True, 5, False, 3, 0.15, 0.05),
                                                                 (False, 5, False, 3, 0.15, 0.05),
                                                                 (True, 0, True, 6, 0.04, 0.01)])
def test_a_few_epochs_lower_the_loss_as_the_cpu_kernel(sg, negative, hs, epochs, drop, gap):
    ids, offsets, counts = corpus(30, 16, seed=1)  # 260 words
    layout = make_layout([str(w) for w in range(30)], 16, negative=negative > 0, hs=hs)

    def loss(state):  # mean loss per example of an epoch at alpha 0 (no update), the same draws for every state
        stats = run_numba(layout, state.copy(), ids, offsets, counts, sg, negative, hs, 3, 0.0, seed=99, sample=1e-2)
        return stats[0] / stats[1]

    cpu, gpu = init_state(layout, 0), init_state(layout, 0)
    for epoch in range(epochs):
        run_numba(layout, cpu, ids, offsets, counts, sg, negative, hs, 3, 0.1, seed=epoch + 1, sample=1e-2)
        run_cuda(layout, gpu, ids, offsets, counts, sg, negative, hs, 3, 0.1, seed=epoch + 1, sample=1e-2,
                 same_draws=False)
    untrained, cpu_loss, gpu_loss = loss(init_state(layout, 0)), loss(cpu), loss(gpu)
    assert gpu_loss < (1 - drop) * untrained and cpu_loss < (1 - drop) * untrained
    assert gpu_loss == pytest.approx(cpu_loss, rel=gap)  # the same model, learnt as fast



def test_the_worker_loop_trains_epochs_with_the_cuda_kernel_replayably():
    # WorkerLoop as on a GPU (tables on the "device", one launch per block, the chunks' LCG states
    # from (seed, epoch, rank)), here on the simulator: the same seed gives the same state (the
    # simulator runs the blocks one after another; a GPU runs them at once, Hogwild)
    import torch

    from firth.pipelines.config import Word2VecConfig
    from firth.workers.word2vec.loop import WorkerLoop

    ids, offsets, counts = corpus(30, 16, seed=4)
    config = Word2VecConfig(dim=8, window=2, negative=2, sample=1e-2, alpha=0.1, min_alpha=0.01, epochs=2,
                            block_words=120, seed=3)
    layout = make_layout([str(w) for w in range(30)], 8, negative=True, hs=False)
    runs = []
    for _ in range(2):
        worker = WorkerLoop(config, layout, counts, torch.device("cpu"), rank=1, cuda_kernel=True)
        losses = [worker.epoch(epoch, [("unit", 0, len(ids))], lambda path, group: (ids, offsets))[0]
                  for epoch in range(config.epochs)]
        runs.append((worker.state.copy(), losses))
    (state, losses), (again, losses_again) = runs
    np.testing.assert_array_equal(state, again)
    assert [s.tolist() for s in losses] == [s.tolist() for s in losses_again]
    first, second = losses
    keep = keep_probabilities(counts, config.sample)[ids]  # every block trained, its words subsampled
    for kept in (first[2], second[2]):
        assert abs(kept - keep.sum()) < 4 * np.sqrt((keep * (1 - keep)).sum())
    assert second[0] / second[1] < first[0] / first[1]  # the loss per example fell


# The simulator runs the kernel as Python: it does not type it for the device. This compiles it as
# the GPU would (NVVM to PTX, then ptxas), without a GPU, wherever a CUDA toolkit is installed.
_COMPILE = """
import subprocess, sys
from types import SimpleNamespace
import numba.cuda.dispatcher as dispatcher
from numba import cuda
# device functions are compiled for the current device's compute capability: there is none here
dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))
from firth.workers.word2vec import kernel_cuda
signature = ("void(float32[::1], int64, int64, int64, int32[::1], int64[::1], uint64[::1], int64[::1], int32[::1], "
             "float32[::1], float32[::1], int32[::1], uint8[:, ::1], int32[:, ::1], int32[::1], boolean, int64, "
             "boolean, int64, boolean, float64, float64, float32[::1], float32[::1], float64[::1])")
ptx, _ = cuda.compile_ptx(kernel_cuda._train_chunks.py_func, signature, cc=(9, 0))
open(sys.argv[1], "w").write(ptx)
"""


@pytest.mark.slow  # a subprocess without the simulator
def test_the_kernel_compiles_for_an_h100_without_spilling(tmp_path):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    toolkit = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    if not list(Path(toolkit).glob("**/libnvvm.so*")) or not shutil.which("ptxas", path=f"{toolkit}/bin"):
        pytest.skip(f"no CUDA toolkit (libnvvm, ptxas) under {toolkit}: set CUDA_HOME")
    env = os.environ | {"NUMBA_ENABLE_CUDASIM": "0", "CUDA_HOME": toolkit}
    subprocess.run([sys.executable, "-c", _COMPILE, str(tmp_path / "k.ptx")], env=env, check=True, timeout=300)
    report = subprocess.run([f"{toolkit}/bin/ptxas", "-arch=sm_90", "-v", str(tmp_path / "k.ptx"), "-o",
                             str(tmp_path / "k.cubin")], capture_output=True, text=True, check=True).stderr
    assert "0 bytes spill stores, 0 bytes spill loads" in report, report
