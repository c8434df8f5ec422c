"""Out-of-core co-occurrence: a budget far below the matrix gives the unbounded table, and the
merge of thousands of runs keeps at most `fan_in` files open."""
import resource

import numpy as np
import pyarrow.parquet as pq
import pytest

from firth.pipelines.statistics import spill_files
from firth.pipelines.statistics.kernels import Cooc, CooccurrenceCounter, merge_cooccurrence
from tests.helpers import SAMPLE
from tests.helpers.statistics import assert_same_bytes, assert_same_tables, run_statistics, zipf_corpus


def test_budget_a_hundred_times_smaller_than_the_matrix_gives_the_same_table(tmp_path):
    shards = [str(p) for p in sorted(SAMPLE.glob("*.jsonl.gz"))[:2]]
    settings = dict(window=5, min_count=3, n_buckets=2, cache=False)
    unbounded, unbounded_root = run_statistics(tmp_path / "unbounded", shards, memory_mb=1024, **settings)
    matrix_bytes = pq.read_table(unbounded_root / "cooccurrence").nbytes  # (i, j, x): 12 bytes an entry
    budget_mb = matrix_bytes / 100 / (1 << 20)
    bounded, bounded_root = run_statistics(tmp_path / "bounded", shards, memory_mb=budget_mb, merge_fan_in=8,
                                           **settings)
    assert matrix_bytes > 5 << 20 and budget_mb < 0.1
    assert_same_tables(unbounded_root, bounded_root)
    assert bounded.n_cooccurrence_entries == unbounded.n_cooccurrence_entries


def test_spilled_pieces_sum_to_the_in_memory_result():
    ids, offsets = zipf_corpus(3, 50_000, 2000, 100)
    expected = CooccurrenceCounter(5, "harmonic", 2000)
    expected.add(ids, offsets)
    pieces = {b: [] for b in range(3)}
    counter = CooccurrenceCounter(5, "harmonic", 2000, memory_bytes=4096, n_buckets=3,
                                  spill=lambda bucket, piece: pieces[bucket].append(piece))
    counter.add(ids[:offsets[50]], offsets[:51])
    counter.add(ids[offsets[50]:], offsets[50:] - offsets[50])
    counter.finish()
    assert counter.spilled_runs > 1000  # the small budget really spilled
    for bucket, got in enumerate(expected.result(3)):
        assert all(np.all(p.i % 3 == bucket) for p in pieces[bucket])
        assert_same_bytes(merge_cooccurrence(pieces[bucket]), got)


def test_each_spill_writes_one_piece_per_bucket_and_they_sum_to_the_unspilled_result():
    # window 20 keeps a 96-entry pair buffer in a 4 KiB budget (runs spill past 64 entries): with 16
    # buckets, a bucket's share of one spill fits that buffer, so each spill writes one piece per bucket
    n_buckets, vocab_size = 16, 300
    ids, offsets = zipf_corpus(4, 6000, vocab_size, 30)
    expected = CooccurrenceCounter(20, "harmonic", vocab_size)
    expected.add(ids, offsets)
    spill_of_piece, pieces, runs_of_spill = [], {b: [] for b in range(n_buckets)}, []

    def spill(bucket, piece):
        spill_of_piece.append((counter.spills, bucket))
        pieces[bucket].append(piece)

    counter = CooccurrenceCounter(20, "harmonic", vocab_size, memory_bytes=4096, n_buckets=n_buckets, spill=spill)
    spill_buckets = counter._spill_buckets
    counter._spill_buckets = lambda with_dense: (runs_of_spill.append(len(counter._runs)), spill_buckets(with_dense))
    counter.add(ids, offsets)
    counter.finish()
    assert len(runs_of_spill) > 100 and max(runs_of_spill) >= 2  # some spill spans several runs
    assert {b for s, b in spill_of_piece if s == counter.spills} == set(range(n_buckets))  # finish: every bucket
    assert len(set(spill_of_piece)) == len(spill_of_piece)  # at most one piece per bucket per spill
    for bucket, got in enumerate(expected.result(n_buckets)):
        assert_same_bytes(merge_cooccurrence(pieces[bucket]), got)


@pytest.fixture
def few_file_descriptors():
    """Lower the open-file limit to (open now + 24) for the test: a merge that opened every run at once fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    import os
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 24, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_thousands_of_runs_merge_with_a_small_fan_in(tmp_path, few_file_descriptors):
    rng = np.random.default_rng(0)
    runs, pieces = [], []
    for n in range(600):  # each run: a few sorted unique (i, j), overlapping the others
        keys = np.unique(rng.integers(0, 300, 12) * 1000 + rng.integers(0, 50, 12))
        piece = Cooc((keys // 1000).astype(np.int32), (keys % 1000).astype(np.int32),
                     rng.integers(1, 100, len(keys)).astype(np.int64), 1)
        runs.append(str(tmp_path / "runs" / f"run-{n:05d}.parquet"))
        spill_files.write_run(piece, runs[-1], {})
        pieces.append(piece)
    merged_keys, merged_units = [], []
    total = spill_files.merge_run_files(runs, lambda k, u: (merged_keys.append(k), merged_units.append(u)),
                                     str(tmp_path / "work"), {}, memory_bytes=1 << 16, fan_in=5)
    keys, units = np.concatenate(merged_keys), np.concatenate(merged_units)
    expected = merge_cooccurrence(pieces)
    assert total == len(expected)
    assert np.all(keys[1:] > keys[:-1])  # chunks came in ascending key order
    assert np.array_equal(keys >> 32, expected.i) and np.array_equal(keys & 0xFFFFFFFF, expected.j)
    assert np.array_equal(units, expected.units)
    assert not list((tmp_path / "work").glob("*.parquet"))  # intermediate runs removed
    with pytest.raises(OSError, match="Too many open files"):  # the limit is real: 60 files at once fail
        [open(r, "rb") for r in runs[:60]]
