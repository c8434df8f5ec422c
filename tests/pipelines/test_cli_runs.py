"""`firth run` as cron and scripts see it: real processes on the shipped sample corpus (2 shards,
dim 8), stdout and stderr pipes (not a terminal). A piped run logs plain lines (no carriage
return), one per stage, step and epoch, and records the config its --set overrides made; SIGINT
(to the process group, as Ctrl-C) and SIGTERM (to the driver, as cron, systemd or Kubernetes)
during training cancel it cleanly; a closed stdout is quiet."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.store import TableStore
from tests.helpers import ROOT, SAMPLE_SHARDS
from tests.helpers.runs import FirthRun, assert_all_end, processes_of

pytestmark = pytest.mark.slow

TABLE = "cron"
RUN_TIMEOUT_S = 900  # a whole run on a loaded 2-core machine


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A config and its store, shared by the module's runs (the later ones reuse the statistics cache)."""
    folder = tmp_path_factory.mktemp("cron")
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({
        "table": TABLE, "corpus": {"shards": [str(s) for s in SAMPLE_SHARDS[:2]]},
        "statistics": {"n_workers": 1, "min_count": 5, "window": 3, "n_buckets": 2},
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10}, "store": {"uri": str(folder / "store")}}))
    return path, folder / "store"


def _versions(store) -> list[int]:
    table_store = TableStore(str(store))
    return [v.version for v in table_store.versions(TABLE)] if TABLE in table_store.tables() else []


def _new_records(store, before: set[str]) -> list[RunRecord]:
    return [r for r in RunLog(str(store)).list(TABLE) if r.run_id not in before]


def test_a_piped_run_logs_plain_lines_and_publishes_the_config_its_overrides_made(job):
    config, store = job
    run = FirthRun(config, "--set", "model.epochs=3", "--set", "statistics.min_count=10", "--json")
    code, out, err = run.finish(timeout=RUN_TIMEOUT_S)
    assert code == 0, err
    assert "\r" not in err and "\r" not in out  # no progress-bar frames off a terminal
    assert [int(e) for e in re.findall(r"^firth: GloVe epoch (\d)/3: loss \d+\.\d{4}, [\d.]+[kMG]? entries/s, "
                                       r"[\d.]+ s$", err, re.M)] == [1, 2, 3], err
    for stage in ("statistics", "training", "evaluation", "publish"):
        assert len(re.findall(rf"^firth: {stage} \.\.\.$", err, re.M)) == 1, err
        assert len(re.findall(rf"^firth: {stage} done in [\d.]+ s$", err, re.M)) == 1, err
    assert re.search(r"^firth: statistics step EncodeShards: 2 task\(s\) in [\d.]+ s$", err, re.M), err
    assert "process(es) it had started" not in err  # the watchdog is silent after a normal end (finish() read
    # stderr to its end, the watchdog's too)

    published = json.loads(out)  # the whole stdout is one JSON document
    assert (published["table"], published["version"]) == (TABLE, 0)
    metadata = TableStore(str(store)).info(TABLE, 0).metadata
    assert metadata["config"]["model"]["epochs"] == 3 and metadata["config"]["statistics"]["min_count"] == 10
    assert len(metadata["training"]["epoch_losses"]) == 3
    assert published["metrics"]["final_loss"] == pytest.approx(metadata["training"]["epoch_losses"][-1])
    record = RunLog(str(store)).get(published["run_id"])
    assert record.outcome == "succeeded" and record.config == metadata["config"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_training_cancels_the_run_cleanly(job, signum):
    config, store = job
    versions = _versions(store)
    records = {r.run_id for r in RunLog(str(store)).list(TABLE)} if (store / "_runs").exists() else set()
    run = FirthRun(config, "--set", "model.epochs=500", new_session=True)
    run.wait_for("firth: GloVe epoch 1/500", timeout=RUN_TIMEOUT_S)  # trainer.fit() is running
    started_by_it = processes_of(run.process.pid)
    if signum == signal.SIGINT:
        os.killpg(run.process.pid, signum)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        os.kill(run.process.pid, signum)
    code, out, err = run.finish(timeout=300)
    ended_at = time.monotonic()
    name = signal.Signals(signum).name

    assert code == 128 + signum, err
    assert "Traceback" not in err and "SIGTERM received at time" not in err and out == "", err  # nor Ray's C++ stack
    (record,) = _new_records(store, records)
    assert (record.outcome, record.failed_stage, record.version) == ("cancelled", "training", None)
    assert record.error["message"] == f"{name} received: the run stopped before publishing"
    assert f"firth: run: cancelled by {name} (in the training stage); nothing was published" in err
    assert f"firth runs show {record.run_id}" in err
    assert _versions(store) == versions  # nothing published
    assert list((store / "_locks").iterdir()) == []  # the lock is released
    assert not (store / "_checkpoints" / TABLE / record.run_id).exists()
    assert not (store / "_statistics" / TABLE / "runs" / record.run_id).exists()
    assert_all_end(run.process.pid, started_by_it, ended_at)  # no Ray, Dask or watchdog process left


def test_a_closed_stdout_ends_the_command_quietly(tmp_path):
    """`firth runs list | head -1` with more lines than a pipe holds: firth's write fails mid-output."""
    log = RunLog(str(tmp_path / "store"))
    for n in range(1500):  # ~100 characters a line: about twice a 64 KiB pipe buffer
        log.write(RunRecord(run_id=f"20260101T000000{n:04d}-abcdef12", table=TABLE, outcome="succeeded",
                            started_at="2026-01-01T00:00:00+00:00", updated_at="", config={}))
    firth = subprocess.Popen([sys.executable, "-m", "firth.pipelines.cli.main", "runs", "list",
                              "--store", str(tmp_path / "store")], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=firth.stdout, capture_output=True, text=True, timeout=120, check=True)
    firth.stdout.close()  # as the shell does: only head reads the pipe
    err = firth.stderr.read().decode()
    assert firth.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as a shell reports for `cat` in its place
    assert err == ""
    assert head.stdout.startswith("20260101T0000000000-abcdef12  cron ")


BAR = """
import sys
from firth.pipelines.cli.common import configure_output
configure_output(quiet=sys.argv[1] == "quiet")
from tqdm.auto import tqdm  # as the engines and the Ray Train console import it: after the command starts
print(tqdm(total=3).disable)
"""


@pytest.mark.parametrize("terminal, quiet, drawn", [(True, False, True), (True, True, False), (False, False, False)])
def test_progress_bars_are_drawn_on_a_terminal_only(terminal, quiet, drawn):
    main, other = os.openpty()  # a pseudo-terminal as stderr: what a shell in a terminal gives
    try:
        done = subprocess.run([sys.executable, "-c", BAR, "quiet" if quiet else "loud"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=other if terminal else subprocess.PIPE, timeout=120,
                              check=True, env={k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"})
    finally:
        os.close(main)
        os.close(other)
    assert done.stdout == f"{not drawn}\n"
