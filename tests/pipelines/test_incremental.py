"""`firth run --incremental`, the nightly run: run lock, only new shards counted, gated promotion.
Two concurrent `firth run` processes on one table: tests/pipelines/test_run_faults.py."""
import shutil
from pathlib import Path

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.ops.lock import RunLock
from firth.schemas.aliases import alias_target
from firth.schemas.store import TableStore
from tests.helpers import SAMPLE_SHARDS, write_job

pytestmark = pytest.mark.slow  # every test here starts Ray, Dask, Beam, a server or a subprocess


def _nightly_config(tmp_path, shards, epochs=2):
    config = write_job(tmp_path, {
        # min_count 1: a new shard cannot drop an old shard's words from the vocabulary, so the
        # old shards' cached counts stay valid (see pipelines/statistics/shard_cache.py)
        "table": "nightly",
        "statistics": {"n_workers": 1, "min_count": 1, "window": 3, "n_buckets": 2},
        "model": {"dim": 8, "epochs": epochs, "num_workers": 1, "x_max": 10},
        # any version may replace the holder: this test is about the run, not the gate
        "promotion": {"rules": [{"metric": "final_loss", "higher_is_better": False, "tolerance": 1e9}]}},
        shards=shards, name="nightly.yaml")
    return config, tmp_path / "corpus", str(tmp_path / "store")


def test_an_added_shard_is_the_only_one_counted_and_a_held_lock_turns_a_second_run_away(tmp_path, capsys):
    config, corpus, store_uri = _nightly_config(tmp_path, 2)

    assert main(["run", str(config), "--incremental"]) == 0
    first = capsys.readouterr().out
    assert "shards: 2 counted, 0 reused" in first and "promoted nightly@production -> 0" in first

    shutil.copy(SAMPLE_SHARDS[2], corpus)
    assert main(["run", str(config), "--incremental"]) == 0
    second = capsys.readouterr().out
    assert "shards: 1 counted, 2 reused" in second and "promoted nightly@production -> 1" in second
    store = TableStore(store_uri)
    corpus_meta = store.info("nightly", 1).metadata["corpus"]
    assert [Path(uri).name for uri in corpus_meta["processed_shards"]] == [SAMPLE_SHARDS[2].name]
    assert alias_target(store, "nightly", "production") == 1

    with RunLock(store_uri, "nightly", run_id="someone-else"):  # another nightly run holds the table
        assert main(["run", str(config), "--incremental"]) == 3
    err = capsys.readouterr().err
    assert "table 'nightly' is locked by" in err and "run someone-else" in err
    assert [v.version for v in store.versions("nightly")] == [0, 1]  # the turned-away run published nothing
