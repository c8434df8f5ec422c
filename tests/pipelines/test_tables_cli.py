"""`firth tables list | show | versions | export` (promote, rollback and gc: test_promotion.py,
test_retention.py), with --json, against a local store and moto S3."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from firth.pipelines.cli.main import main
from firth.schemas.aliases import move_alias
from tests.helpers import write_job
from tests.helpers.tables import vectors_of, word_table


def run_json(capsys, *argv) -> object:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_read_commands_resolve_refs_and_print_json(local_store, capsys):
    local_store.publish("t", word_table(4, 2, seed=0), {"model": "glove", "metrics": {"wordsim353_spearman": 0.3}})
    local_store.publish("t", word_table(5, 2, seed=1), {"model": "glove"}, parent=0)
    local_store.publish("u", word_table(3, 2, seed=2))
    move_alias(local_store, "t", "production", 0)
    store = ["--store", local_store.uri]

    listing = run_json(capsys, "tables", "list", *store)
    assert [(r["table"], r["version"], r["aliases"]) for r in listing] == [("t", 1, {"production": 0}), ("u", 0, {})]
    shown = run_json(capsys, "tables", "show", "t@production", *store)
    assert (shown["version"], shown["rows"], shown["aliases"], shown["metrics"]) == (0, 4, ["production"],
                                                                                      {"wordsim353_spearman": 0.3})
    assert run_json(capsys, "tables", "show", "t", *store)["parent"] == "t@0"
    versions = run_json(capsys, "tables", "versions", "t", *store)
    assert [(v["version"], v["aliases"], v["parent"]) for v in versions] == [(0, ["production"], None),
                                                                            (1, ["latest"], "t@0")]
    assert main(["tables", "show", "t@staging", *store]) == 2
    assert "has no alias 'staging'; aliases: production, latest" in capsys.readouterr().err
    assert main(["tables", "show", "nope", *store]) == 2
    assert "no table 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_export_from_s3_in_each_format(s3_store, tmp_path, capsys):
    from gensim.models import KeyedVectors

    table = word_table(30, 4, seed=3)
    s3_store.publish("t", table)
    config = ["--config", str(write_config(tmp_path, s3_store))]  # the store and its S3 options
    for fmt, name in [("word2vec", "t.txt"), ("word2vec-binary", "t.bin"), ("parquet", "t.parquet")]:
        report = run_json(capsys, "tables", "export", "t@0", str(tmp_path / name), "--format", fmt, *config)
        assert (report["version"], report["rows"], report["format"]) == (0, 30, fmt)
    for name, binary in [("t.txt", False), ("t.bin", True)]:
        kv = KeyedVectors.load_word2vec_format(str(tmp_path / name), binary=binary)
        assert kv.index_to_key == table["token"].to_pylist()
        assert kv.vectors.tobytes() == vectors_of(table).tobytes()
    assert np.array_equal(vectors_of(pq.read_table(tmp_path / "t.parquet")), vectors_of(table))


def write_config(tmp_path, store):
    return write_job(tmp_path, {"table": "t", "corpus": {"shards": ["x.txt"]},
                                "store": {"uri": store.uri, "storage_options": store.storage_options}})
