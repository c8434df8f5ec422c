"""End to end: corpus → Dask statistics → Ray Train GloVe → evaluation → table version, and the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from firth.pipelines.cli.main import main
from firth.pipelines.config import load_config
from firth.pipelines.corpus.shards import CorpusError
from firth.pipelines.job import run
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore
from tests.helpers import write_job


@pytest.fixture
def config_file(tmp_path):
    return write_job(tmp_path, {
        "table": "tiny", "statistics": {"n_workers": 2, "min_count": 5, "window": 5, "n_buckets": 4},
        "model": {"dim": 16, "epochs": 3, "num_workers": 2, "x_max": 10}}, shards=2)


@pytest.mark.slow
def test_run_publishes_a_version_then_a_failed_worker_still_publishes_and_a_bad_shard_publishes_nothing(
        config_file, tmp_path, capsys):
    config = load_config(config_file)
    published = run(config)
    assert published.version == 0
    store = TableStore(config.store.uri)
    info = store.info("tiny")
    meta = info.metadata
    assert meta["model"] == "glove" and meta["config"] == config.lineage()
    assert [s["uri"] for s in meta["corpus"]["shards"]] == sorted(str(p) for p in (tmp_path / "corpus").glob("*"))
    assert all(s["fingerprint"].startswith("sha256:") for s in meta["corpus"]["shards"])
    assert meta["vocab_size"] == info.rows > 1000
    assert set(meta["metrics"]) >= {"wordsim353_spearman", "analogy_accuracy", "analogy_coverage", "final_loss"}
    losses = meta["training"]["epoch_losses"]
    assert len(losses) == 3 and losses[0] > losses[-1] > 0
    embeddings = open_embeddings(config.store.uri, "tiny")
    assert embeddings.vectors.shape == (info.rows, 16) and np.isfinite(embeddings.vectors).all()
    assert embeddings.tokens[:3] == ["the", "a", "to"]  # ids by frequency
    assert not list((Path(config.checkpoint_uri)).glob("*")), "checkpoints are removed after publishing"

    # A worker raises once mid-training: restored from its checkpoint, the run still publishes.
    marker = tmp_path / "fault-marker"
    assert run(config, fault_injection=str(marker)).version == 1
    assert marker.exists()

    # A corrupt shard fails the run in statistics, naming the file; no version appears.
    (tmp_path / "corpus" / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(CorpusError, match="broken.jsonl.gz"):
        run(config)
    assert [v.version for v in store.versions("tiny")] == [0, 1]

    # The CLI reads what was published.
    capsys.readouterr()
    assert main(["tables", "list", "--json", "--store", config.store.uri]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(t["table"], t["version"]) for t in listing] == [("tiny", 1)]
    assert main(["tables", "show", "tiny@0", "--json", "--store", config.store.uri]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 0 and shown["metrics"] == meta["metrics"]
    assert main(["neighbors", "tiny", "python", "-k", "3", "--json", "--store", config.store.uri]) == 0
    answer = json.loads(capsys.readouterr().out)
    neighbors = answer["neighbors"]
    assert answer["oov"] is False and answer["word"] == "python"
    assert len(neighbors) == 3 and all(n["token"] != "python" for n in neighbors)
    assert main(["neighbors", "tiny", "qwxzzy", "--store", config.store.uri]) == 2
    assert "qwxzzy" in capsys.readouterr().err


def test_lineage_leaves_out_credentials(tmp_path):
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump({
        "table": "t", "corpus": {"shards": ["s3://b/c/*"], "storage_options": {"secret": "corpus-secret"}},
        "store": {"uri": "s3://b/store", "storage_options": {"AWS_SECRET_ACCESS_KEY": "store-secret"}}}))
    lineage = load_config(path).lineage()
    assert "secret" not in json.dumps(lineage)
    assert lineage["store"]["uri"] == "s3://b/store" and lineage["corpus"]["shards"] == ["s3://b/c/*"]


@pytest.mark.slow
def test_cli_rejects_a_bad_config_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("table: t\ncorpus: {shards: [x]}\nmodel: {dimension: 10}\n")
    assert main(["run", str(path)]) == 5
    err = capsys.readouterr().err
    assert "model.dimension: unknown key" in err and "dim" in err
