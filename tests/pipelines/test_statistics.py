"""The statistics job graph on a real Dask LocalCluster: same tables whatever the worker count."""
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.statistics.engines import open_engine
from firth.pipelines.statistics.steps import Location, compute_statistics
from tests.helpers import SAMPLE

pytestmark = pytest.mark.slow  # every test here starts Ray, Dask, Beam, a server or a subprocess


def run_statistics(tmp_path, shards, n_workers, **statistics):
    config = JobConfig.model_validate({
        "table": "t", "corpus": {"shards": shards},
        "statistics": {"n_workers": n_workers, **statistics}})
    location = Location(str(tmp_path / f"stats-{n_workers}"), {})
    with open_engine(config.statistics) as engine:
        summary = compute_statistics(list_shards(config.corpus), config, engine, location)
    return summary, Path(location.uri)


def read_tree(root: Path) -> dict:
    """Every output table under root (the cache of partial results left out)."""
    return {str(p.relative_to(root)): pq.read_table(p) for p in sorted(root.rglob("*.parquet"))
            if p.relative_to(root).parts[0] != "cache"}


def test_two_workers_write_exactly_the_tables_of_one(tmp_path):
    shards = [str(p) for p in sorted(SAMPLE.glob("*.jsonl.gz"))[:3]]
    one, root_one = run_statistics(tmp_path, shards, 1, window=5, min_count=3, n_buckets=4)
    two, root_two = run_statistics(tmp_path, shards, 2, window=5, min_count=3, n_buckets=4)
    tables_one, tables_two = read_tree(root_one), read_tree(root_two)
    assert sorted(tables_one) == sorted(tables_two) == sorted(
        ["vocabulary.parquet", "idf.parquet"] + [f"{kind}/shard-{n:05d}.parquet" for kind in ("tokens", "tfidf")
                                                 for n in range(3)]
        + [f"cooccurrence/part-{b:05d}.parquet" for b in range(4)])
    for name in tables_one:
        assert tables_one[name].equals(tables_two[name]), name
    assert one.vocab_size == two.vocab_size > 1000
    assert one.n_cooccurrence_entries == two.n_cooccurrence_entries == sum(
        t.num_rows for n, t in tables_one.items() if n.startswith("cooccurrence/"))
    assert not (root_one / "_partial").exists()


def test_statistics_are_consistent_with_each_other(tmp_path):
    """Cross-table invariants on a tiny hand-made corpus: counts, symmetry, ids."""
    (tmp_path / "a.txt").write_text("the cat sat\nthe dog sat on the cat\n")
    (tmp_path / "b.txt").write_text("a cat\n")
    summary, root = run_statistics(tmp_path, [str(tmp_path / "*.txt")], 2, window=2, min_count=2, n_buckets=3)
    vocabulary = pq.read_table(root / "vocabulary.parquet").to_pylist()
    # the 2, cat 3, sat 2: ordered by count desc then token
    assert [(v["token"], v["id"], v["count"], v["doc_count"]) for v in vocabulary] == [
        ("cat", 0, 3, 3), ("the", 1, 3, 2), ("sat", 2, 2, 2)]
    tokens = pq.read_table(root / "tokens").to_pylist()
    assert {t["doc_id"]: t["token_ids"] for t in tokens} == {
        "a.txt:1": [1, 0, 2], "a.txt:2": [1, 2, 1, 0], "b.txt:1": [0]}
    cooc = pq.read_table(root / "cooccurrence").to_pandas()
    matrix = {(r.i, r.j): r.x for r in cooc.itertuples()}
    assert all(matrix[(j, i)] == x for (i, j), x in matrix.items())  # symmetric
    # "the cat sat": the-cat 1, cat-sat 1, the-sat 1/2; "the [dog] sat [on] the cat" (OOV removed
    # before windowing): the-sat 1, sat-the 1, the-cat 1, the-the 1/2 (both ways), sat-cat 1/2
    assert matrix[(1, 0)] == pytest.approx(2.0)
    assert matrix[(1, 2)] == pytest.approx(2.5)
    assert matrix[(0, 2)] == pytest.approx(1.5)
    assert matrix[(1, 1)] == pytest.approx(1.0)
    assert summary.n_documents == 3 and summary.n_tokens == 11
