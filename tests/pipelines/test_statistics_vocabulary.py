"""The vocabulary merged by word bucket on the workers (pipelines/statistics/vocabulary.py) equals the
merge of every shard's counts at once, ties included, and what reaches the driver holds no word."""
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.statistics import kernels, vocabulary
from firth.pipelines.statistics.steps import Location, compute_statistics, shard_word_counts
from tests.helpers import ROOT, SAMPLE_SHARDS
from tests.helpers.statistics import InProcessEngine, config_for


class RecordingEngine(InProcessEngine):
    """In process, keeping the pickled size of every result that an engine would send to the driver."""

    def __init__(self):
        self.sizes: dict[str, list[int]] = {}

    def map(self, fn, items, label):
        results = super().map(fn, items, label)
        self.sizes[label] = [len(pickle.dumps(r)) for r in results]
        return results


def vocabulary_at_once(config, location) -> pa.Table:
    """What the driver computed before issue 18: every shard's counts merged in one place."""
    shards = list_shards(config.corpus)
    counts = kernels.merge_word_counts([shard_word_counts(s, config, location)[0] for s in shards])
    return kernels.build_vocabulary(counts, config.statistics.min_count, config.statistics.max_vocab_size)


@pytest.mark.parametrize("settings", [dict(min_count=5, n_buckets=4, memory_mb=2),  # NumberWords: chunks of 1024 words
                                      dict(min_count=2, max_vocab_size=3000, n_buckets=7, merge_fan_in=2),
                                      dict(min_count=1, n_buckets=1)])
def test_bucketed_vocabulary_equals_the_merge_of_all_counts_on_the_sample_corpus(tmp_path, settings):
    config = config_for([str(p) for p in SAMPLE_SHARDS[:3]], cache=False, **settings)
    location = Location(str(tmp_path / "stats"), {})
    engine = RecordingEngine()
    summary = compute_statistics(list_shards(config.corpus), config, engine, location)
    got = pq.read_table(tmp_path / "stats" / "vocabulary.parquet")
    expected = vocabulary_at_once(config, location)
    assert got.equals(expected) and summary.vocab_size == expected.num_rows > 2000
    counts = expected["count"].to_numpy()
    assert counts.min() >= settings["min_count"]
    assert (summary.n_tokens == counts.sum()) == (settings["min_count"] == 1)  # only min_count 1 keeps every word
    idf = pq.read_table(tmp_path / "stats" / "idf.parquet")
    assert idf["term_id"].to_pylist() == list(range(expected.num_rows))
    assert np.array_equal(idf["idf"].to_numpy(), kernels.idf(expected["doc_count"].to_numpy(), summary.n_documents))
    # Per item a few hundred bytes reach the driver, never the words (the old CountWords sent > 100 KB a shard).
    assert set(engine.sizes) == {"CountWords", "MergeWords", "NumberWords", "EncodeShards", "MergeCooccurrence"}
    assert max(max(sizes) for sizes in engine.sizes.values()) < 600, engine.sizes
    assert not (tmp_path / "stats" / "_partial").exists()


def test_ties_at_the_max_vocab_size_cut_and_at_min_count_fall_as_before(tmp_path):
    # counts: top 6; t1..t6 3 each (the cut at max_vocab_size 4 falls inside them: t1, t2, t3 stay,
    # in token order); m1, m2, "é" 2 each (at min_count 2); once 1. Shards split the ties between them.
    (tmp_path / "a.txt").write_text("top top top t6 t5 t4 m2\ntop t1 t2 t3 t1 é\nonce\n")
    (tmp_path / "b.txt").write_text("top top t2 t3 t4 t5 t6 m1 m1\nt1 t2 t3 t4 t5 t6 m2 é\n")
    shards = [str(tmp_path / "*.txt")]
    for max_size, expected in [(4, ["top", "t1", "t2", "t3"]),
                               (None, ["top", "t1", "t2", "t3", "t4", "t5", "t6", "m1", "m2", "é"]),
                               (8, ["top", "t1", "t2", "t3", "t4", "t5", "t6", "m1"])]:
        for n_buckets in (1, 3, 16):
            config = config_for(shards, min_count=2, max_vocab_size=max_size, n_buckets=n_buckets, window=2,
                                cache=False)
            location = Location(str(tmp_path / f"stats-{max_size}-{n_buckets}"), {})
            summary = compute_statistics(list_shards(config.corpus), config, InProcessEngine(), location)
            got = pq.read_table(f"{location.uri}/vocabulary.parquet")
            assert got["token"].to_pylist() == expected, (max_size, n_buckets)
            assert got.equals(vocabulary_at_once(config, location))
            assert summary.vocab_size == len(expected) and summary.n_tokens == 31 and summary.n_documents == 5
    assert got["count"].to_pylist() == [6, 3, 3, 3, 3, 3, 3, 2] and got["doc_count"].to_pylist()[:2] == [3, 2]


def test_number_words_merges_buckets_in_vocabulary_order_across_many_chunks(tmp_path):
    rng = np.random.default_rng(0)
    words = pa.array([f"w{n}" for n in range(5000)], pa.large_string())
    counts = kernels.WordCounts(words, rng.integers(1, 40, 5000), np.ones(5000, np.int64), 0)  # many ties
    order = np.argsort(words.to_numpy(zero_copy_only=False))
    counts = kernels.WordCounts(words.take(pa.array(order)), counts.counts[order], counts.doc_counts[order], 0)
    vocabulary.write_word_parts(counts, str(tmp_path / "words"), 0, 5, {})
    pieces = []
    for bucket in range(5):
        parts = sorted(str(p) for p in (tmp_path / "words" / f"bucket-{bucket:05d}").glob("*.parquet"))
        pieces.append(str(tmp_path / f"piece-{bucket}.parquet"))
        vocabulary.merge_word_parts(parts, pieces[-1], 1, 2, {})
    size = vocabulary.number_words(pieces, str(tmp_path / "v.parquet"), str(tmp_path / "idf.parquet"), 4321,
                                   10, memory_bytes=1, storage_options={})  # chunks of 1024 rows per bucket
    expected = kernels.build_vocabulary(counts, 1, 4321)
    assert size == 4321 and pq.read_table(tmp_path / "v.parquet").equals(expected)
    chunks = list(vocabulary._merged_chunks([vocabulary._PieceReader(p, {}, 1024) for p in pieces]))
    assert len(chunks) >= 5  # it really merged chunk by chunk, and the chunks follow each other in order
    assert pa.concat_tables(chunks).equals(kernels.build_vocabulary(counts, 1, None).drop_columns(["id"]))


def test_word_buckets_are_fnv1a_of_the_utf8_bytes_whatever_the_array():
    words = ["a", "", "é", "top"]
    assert hex(int(kernels.word_buckets(["a"], 2**62)[0])) == hex(0xaf63dc4c8601ec8c % 2**62)  # FNV-1a("a")
    buckets = kernels.word_buckets(words, 16)
    assert buckets.tolist() == kernels.word_buckets(pa.array(["x"] + words, pa.string()).slice(1), 16).tolist()
    assert buckets[1] == 14695981039346656037 % 16  # the empty word: FNV's offset basis
    assert np.all((0 <= buckets) & (buckets < 16))
    with pytest.raises(ValueError, match="statistics.n_buckets"):
        kernels.word_buckets(words, 0)


@pytest.mark.slow  # a fresh interpreter, so that Arrow's allocation peak starts at zero
def test_the_lookup_of_a_worker_stays_within_its_stated_bytes():
    code = """
import numpy as np, pyarrow as pa
from firth.pipelines.statistics import kernels, vocabulary
rng = np.random.default_rng(0)
tokens = pa.array([f"w{n:x}q" for n in rng.permutation(400_000)], pa.large_string())
batch = pa.array([f"w{n:x}q" for n in rng.integers(0, 800_000, 200_000)], pa.large_string())
base = pa.total_allocated_bytes()
ids = kernels.encode(batch, tokens)
print(pa.default_memory_pool().max_memory() - base, vocabulary.lookup_bytes(tokens) - tokens.nbytes, ids.nbytes)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    peak, stated, result = (int(v) for v in out.split())
    assert 0 < peak - result <= stated  # the hash set index_in builds fits in LOOKUP_BYTES_PER_WORD
