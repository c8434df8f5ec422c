"""How `firth` fails: one line on stderr and an exit code per kind (pipelines/cli/failures.py), the
traceback in the debug log; a store that froze or died fails a command within its bounds."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
import yaml

from firth.pipelines.cli.main import main
from firth.schemas.fs import filesystem
from firth.schemas.store import TableStore
from tests.helpers import SAMPLE_SHARDS
from tests.helpers.tables import word_table


@pytest.fixture
def debug_log(tmp_path, monkeypatch):
    path = tmp_path / "debug.log"
    monkeypatch.setenv("FIRTH_DEBUG_LOG", str(path))
    return path


def test_unexpected_error_is_one_line_naming_the_debug_log(tmp_path, debug_log, capsys):
    log_folder = tmp_path / "store" / "tables" / "t" / "_delta_log"
    log_folder.mkdir(parents=True)
    (log_folder / f"{0:020d}.json").write_text("not json\n")  # a damaged table: deltalake raises DeltaError
    assert main(["tables", "show", "t", "--store", str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("firth: error: tables show: unexpected DeltaError: ")
    assert f"(the traceback is in {debug_log}; run again with --debug to print it)" in err
    assert "Traceback (most recent call last)" in debug_log.read_text()
    assert main(["tables", "show", "t", "--store", str(tmp_path / "store"), "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_reserved_table_name_is_refused_before_any_work(tmp_path, debug_log, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"table": "tables", "corpus": {"shards": ["nothing-here.txt"]},
                                      "store": {"uri": str(tmp_path / "store")}}))
    assert main(["run", str(config)]) == 5
    err = capsys.readouterr().err
    assert "c.yaml: invalid config" in err and "table: Value error, bad table name 'tables': reserved" in err
    assert "pick another, e.g. 'wiki-glove'" in err
    assert not (tmp_path / "store").exists()  # no _runs/ or _statistics/ left behind


def firth(*argv: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "firth.pipelines.cli.main", *argv], env=env, capture_output=True,
                          text=True, timeout=300)
    return done, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("failure, problem", [("freeze", "the endpoint did not answer within 1 s (store.timeout_s) "
                                                          "in 2 attempts"),
                                              ("stop", "could not connect to the endpoint in 2 attempts")])
def test_dead_endpoint_fails_tables_commands_with_one_line_and_exit_code_4(own_s3, debug_log, failure, problem):
    TableStore("s3://own/store", own_s3.delta_options).publish("t", word_table(4, 2, seed=0))
    env = {**os.environ, **own_s3.delta_options, "FIRTH_STORE_TIMEOUT_S": "1", "FIRTH_STORE_RETRIES": "1"}
    getattr(own_s3, failure)()
    for command in (["list"], ["show", "t"]):
        done, elapsed = firth("tables", *command, "--store", "s3://own/store", env=env)
        assert done.returncode == 4, done.stderr
        assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith(f"firth: error: tables {command[0]}: store s3://own/store: {problem} (")
        assert elapsed < 60  # unbounded: `tables list` took 7 minutes, `tables show` 3
    entries = debug_log.read_text().split("\n--- ")  # one per failure: a header line, then the traceback
    assert [e.split("\n")[0].rsplit(": ", 1)[1] for e in entries] == ["firth tables list", "firth tables show"]
    assert all("\nTraceback (most recent call last):" in e for e in entries)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_whose_store_freezes_fails_with_exit_code_4(own_s3, debug_log, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "table": "t", "corpus": {"shards": [str(SAMPLE_SHARDS[0])]},
        "statistics": {"output": str(tmp_path / "statistics"), "n_workers": 1, "min_count": 3},  # not in the store
        "model": {"model": "ppmi_svd", "dim": 8}, "evaluation": {"enabled": False},  # trained on the driver
        "store": {"uri": "s3://own/store", "timeout_s": 1, "retries": 1, "storage_options": own_s3.delta_options}}))
    runs, _ = filesystem("s3://own/store/_runs", own_s3.delta_options)

    def freeze_once_the_run_is_recorded():
        while not runs.glob("own/store/_runs/t/*.json"):
            runs.invalidate_cache()
            time.sleep(0.05)
        own_s3.freeze()

    threading.Thread(target=freeze_once_the_run_is_recorded, daemon=True).start()
    done, _ = firth("run", str(config), "--incremental", env=dict(os.environ))
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("firth: error:")]  # beside progress
    # the run writes its record as each stage starts: the stage (if any) is where that first failed
    assert re.match(r"firth: error: run: store s3://own/store( \(in the \w+ stage\))?: the endpoint did not answer "
                    r"within 1 s \(store.timeout_s\) in 2 attempts \(", error), error
    own_s3.thaw()
    assert TableStore("s3://own/store", own_s3.delta_options).tables() == []  # the failed publish left no version
