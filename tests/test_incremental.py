"""`firth run --incremental`, the nightly run: run lock, only new shards counted, gated promotion."""
import shutil
from pathlib import Path

import yaml

from pipelines.cli import main
from pipelines.lock import RunLock
from schemas.aliases import alias_target
from schemas.store import TableStore

SAMPLE = sorted((Path(__file__).parent.parent / "examples" / "sample-corpus").glob("*.jsonl.gz"))


def test_an_added_shard_is_the_only_one_counted_and_a_held_lock_turns_a_second_run_away(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for shard in SAMPLE[:2]:
        shutil.copy(shard, corpus)
    config = tmp_path / "nightly.yaml"
    store_uri = str(tmp_path / "store")
    config.write_text(yaml.safe_dump({
        # min_count 1: a new shard cannot drop an old shard's words from the vocabulary, so the
        # old shards' cached counts stay valid (see pipelines/shard_cache.py)
        "table": "nightly", "corpus": {"shards": ["corpus/*.jsonl.gz"]},
        "statistics": {"n_workers": 1, "min_count": 1, "window": 3, "n_buckets": 2},
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10},
        # any version may replace the holder: this test is about the run, not the gate
        "promotion": {"rules": [{"metric": "final_loss", "higher_is_better": False, "tolerance": 1e9}]},
        "store": {"uri": store_uri}}))

    assert main(["run", str(config), "--incremental"]) == 0
    first = capsys.readouterr().out
    assert "shards: 2 counted, 0 reused" in first and "promoted nightly@production -> 0" in first

    shutil.copy(SAMPLE[2], corpus)
    assert main(["run", str(config), "--incremental"]) == 0
    second = capsys.readouterr().out
    assert "shards: 1 counted, 2 reused" in second and "promoted nightly@production -> 1" in second
    store = TableStore(store_uri)
    corpus_meta = store.info("nightly", 1).metadata["corpus"]
    assert [Path(uri).name for uri in corpus_meta["processed_shards"]] == [SAMPLE[2].name]
    assert alias_target(store, "nightly", "production") == 1

    with RunLock(store_uri, "nightly", run_id="someone-else"):  # another nightly run holds the table
        assert main(["run", str(config), "--incremental"]) == 3
    err = capsys.readouterr().err
    assert "table 'nightly' is locked by" in err and "run someone-else" in err
    assert [v.version for v in store.versions("nightly")] == [0, 1]  # the turned-away run published nothing
