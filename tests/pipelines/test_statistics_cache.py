"""Incremental statistics: unchanged shards come from the per-shard cache, and the tables always
equal a full recount without cache."""
import gzip

import pyarrow.parquet as pq

from tests.helpers import SAMPLE
from tests.helpers.statistics import assert_same_tables, run_statistics


def recount(tmp_path, name, shards, **settings):
    """The same statistics from scratch, without any cache."""
    return run_statistics(tmp_path / name, shards, **settings, cache=False)[1]


def cache_entries(root):
    return sorted(p.name for p in (root / "cache").iterdir())


def sample_shard(source_index: int, path, documents: int = 60) -> None:
    """The first documents of one sample corpus shard, as a shard of its own."""
    lines = gzip.decompress(sorted(SAMPLE.glob("*.jsonl.gz"))[source_index].read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:documents])))


def test_adding_changing_and_removing_shards_touches_exactly_those(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(3):
        sample_shard(n, corpus / f"part-{n}.jsonl.gz")
    shards = [str(corpus / "*.jsonl.gz")]
    # min_count 1: every word of a shard stays in the vocabulary whatever the other shards hold
    settings = dict(window=4, min_count=1, n_buckets=3)
    output = tmp_path / "stats"
    first, _ = run_statistics(output, shards, **settings)
    assert len(first.processed_shards) == 3 and first.reused_shards == []

    again, _ = run_statistics(output, shards, **settings)  # nothing changed
    assert again.processed_shards == [] and len(again.reused_shards) == 3
    assert_same_tables(output, recount(tmp_path, "recount-0", shards, **settings))

    new = corpus / "part-3.jsonl.gz"
    sample_shard(3, new)  # a fourth shard
    added, _ = run_statistics(output, shards, **settings)
    assert added.processed_shards == [str(new)] and len(added.reused_shards) == 3
    assert_same_tables(output, recount(tmp_path, "recount-1", shards, **settings))

    changed = sorted(corpus.glob("*.jsonl.gz"))[1]
    lines = gzip.decompress(changed.read_bytes()).splitlines(keepends=True)
    changed.write_bytes(gzip.compress(b"".join(lines[:-3])))  # the last three documents deleted
    after_change, _ = run_statistics(output, shards, **settings)
    assert after_change.processed_shards == [str(changed)] and len(after_change.reused_shards) == 3
    assert_same_tables(output, recount(tmp_path, "recount-2", shards, **settings))
    assert len(cache_entries(output)) == 4  # the changed shard's old entry was pruned

    removed = sorted(corpus.glob("*.jsonl.gz"))[0]
    removed.unlink()
    after_removal, _ = run_statistics(output, shards, **settings)
    assert after_removal.processed_shards == [] and len(after_removal.reused_shards) == 3
    assert_same_tables(output, recount(tmp_path, "recount-3", shards, **settings))
    assert len(cache_entries(output)) == 3


def test_a_word_crossing_min_count_re_encodes_exactly_the_shards_that_contain_it(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("x y z y\nz y x w\n")  # x: 2
    (corpus / "b.txt").write_text("y z w z\ny y w\n")  # no x, no v
    shards = [str(corpus / "*.txt")]
    settings = dict(window=2, min_count=3, n_buckets=2)
    output = tmp_path / "stats"
    run_statistics(output, shards, **settings)
    (corpus / "c.txt").write_text("x v y\n")  # x: 3 now, in the vocabulary; v: 1, still out
    summary, _ = run_statistics(output, shards, **settings)
    # a.txt's tokens are windowed differently now that x is in: it is re-encoded; b.txt is not
    assert summary.processed_shards == [str(corpus / "a.txt"), str(corpus / "c.txt")]
    assert summary.reused_shards == [str(corpus / "b.txt")]
    assert_same_tables(output, recount(tmp_path, "recount", shards, **settings))
    assert pq.read_table(output / "vocabulary.parquet")["token"].to_pylist() == ["y", "z", "w", "x"]
