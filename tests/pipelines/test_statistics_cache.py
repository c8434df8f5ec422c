"""Incremental statistics: unchanged shards come from the per-shard cache, and the tables always
equal a full recount without cache."""
import gzip
import json
from concurrent.futures import ThreadPoolExecutor

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


def _entries(cache):
    """{encoded entry folder: the writer folder its `complete` names}"""
    return {e: json.loads((e / "complete").read_text())["writer"] for e in sorted(cache.glob("*/encoded-*"))}


def test_a_shared_cache_is_never_read_half_written_and_concurrent_writers_do_not_mix(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(2):
        sample_shard(n, corpus / f"part-{n}.jsonl.gz")
    shards = [str(corpus / "*.jsonl.gz")]
    settings = dict(window=4, min_count=1, n_buckets=2)
    cache = tmp_path / "cache"  # shared by every run below; each run has its own output folder
    expected = recount(tmp_path, "recount", shards, **settings)

    # Two runs fill the same entries at once, one of them splitting co-occurrence into many more
    # runs (a smaller memory budget): each writer has its own folder, and `complete` names one whole.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda args: run_statistics(tmp_path / args[0], shards, cache_uri=cache, **settings,
                                                  memory_mb=args[1]), [("a", 128), ("b", 0.2)]))
    for output in ("a", "b"):
        assert_same_tables(tmp_path / output, expected)
    entries = _entries(cache)
    assert len(entries) == 2
    reused, _ = run_statistics(tmp_path / "c", shards, cache_uri=cache, **settings)
    assert len(reused.reused_shards) == 2 and reused.processed_shards == []
    assert_same_tables(tmp_path / "c", expected)

    # A writer killed half-way leaves a folder that `complete` does not name: never read.
    entry = next(iter(entries))
    killed = entry / "w20991231T000000-killed"
    (killed / "cooc").mkdir(parents=True)
    (killed / "cooc" / "run-000000.parquet").write_bytes(b"PAR1 half a file")
    again, _ = run_statistics(tmp_path / "d", shards, cache_uri=cache, **settings)
    assert len(again.reused_shards) == 2
    assert_same_tables(tmp_path / "d", expected)
    assert killed.exists()  # it might still be filling (WRITER_GRACE_S): kept

    # An entry whose named files are not all there is not used: the shard is counted afresh.
    named = entry / entries[entry]
    next(named.glob("cooc/run-*.parquet")).unlink()
    recounted, _ = run_statistics(tmp_path / "e", shards, cache_uri=cache, **settings)
    assert len(recounted.processed_shards) == 1 and len(recounted.reused_shards) == 1
    assert_same_tables(tmp_path / "e", expected)

    # Unnamed writer folders older than the grace period go when a run prunes.
    old = entry / "w20000101T000000-old"
    old.mkdir()
    run_statistics(tmp_path / "f", shards, cache_uri=cache, **settings)
    assert not old.exists() and killed.exists()
    assert set(_entries(cache)) == set(entries)
