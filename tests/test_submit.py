"""`firth submit` against a real Ray head on 127.0.0.1, and what a submission ships."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from pipelines import submit
from pipelines.cli import main
from pipelines.config import ConfigError
from pipelines.runs import RunLog
from schemas.store import TableStore

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "examples" / "sample-corpus"
RAY = Path(sys.executable).parent / "ray"
# every port `ray start` would otherwise take at a fixed default, so heads of other users never clash
RAY_PORTS = ["port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
             "object-manager-port"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of its own on loopback (own ports, own --temp-dir); stopped by killing its process group
    only (`ray stop` would stop every Ray on the machine). Yields the dashboard URL."""
    ports = {name: _free_port() for name in RAY_PORTS}
    temp = tempfile.mkdtemp(prefix="firth-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    command = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
               "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
               *(f"--{name}={port}" for name, port in ports.items())]
    with open(Path(temp) / "ray-start.log", "wb") as out:
        starter = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        code = starter.wait(timeout=180)
    if code != 0:
        _stop(starter.pid)
        pytest.fail(f"ray start failed: {(Path(temp) / 'ray-start.log').read_text()[-2000:]}")
    try:
        yield f"http://127.0.0.1:{ports['dashboard-port']}"
    finally:
        _stop(starter.pid)
        shutil.rmtree(temp, ignore_errors=True)


def _stop(process_group: int) -> None:
    """Terminate the head's processes: `ray start` ran in its own session, its daemons stay in its group."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(process_group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process_group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.fixture
def tiny_config(tmp_path):
    """A tiny variant of examples/sample.yaml: one shard, small dim, few epochs, one training worker."""
    folder = tmp_path / "job"
    (folder / "sample-corpus").mkdir(parents=True)
    shutil.copy(sorted(SAMPLE.glob("*.jsonl.gz"))[0], folder / "sample-corpus")
    (folder / "firth-store").mkdir()  # a store beside the config is never shipped
    (folder / "firth-store" / "big.bin").write_bytes(b"x")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "table": "tiny-submit", "corpus": {"shards": ["sample-corpus/*.jsonl.gz"]},
        "statistics": {"n_workers": 1, "min_count": 5, "window": 5, "n_buckets": 2},
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10},
        "evaluation": {"enabled": False}}))
    return path


def test_a_submission_ships_the_code_and_the_config_folder_and_names_an_absolute_store(tiny_config, tmp_path):
    store = str(tmp_path / "elsewhere" / "store")
    job = submit.build_submission(tiny_config, store=store, python="/opt/py/bin/python", submission_id="j-1")
    assert job.entrypoint == f"/opt/py/bin/python -m pipelines.cli run tiny.yaml --store {store}"
    env = job.runtime_env
    assert env["working_dir"] == str(tiny_config.parent)
    assert {".git", ".venv", "firth-store", "bench-corpus", "__pycache__"} <= set(env["excludes"])
    assert env["py_modules"] == [str(ROOT / p) for p in ("pipelines", "workers", "schemas")]
    assert env["env_vars"]["FIRTH_SUBMISSION_ID"] == "j-1"
    installed = submit.build_submission(tiny_config, store=store, ship_code=False)
    assert "py_modules" not in installed.runtime_env and installed.entrypoint.startswith("python -m pipelines.cli")
    assert submit.default_python("http://127.0.0.1:8265") == sys.executable
    assert submit.default_python("http://ray-head.example:8265") == "python"


def test_a_bad_config_or_address_fails_before_anything_is_submitted(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("table: t\ncorpus: {shards: [x]}\nmodel: {dimension: 3}\n")
    with pytest.raises(ConfigError, match="model.dimension: unknown key"):
        submit.build_submission(bad)
    assert main(["jobs", "status", "some-job", "--address", "127.0.0.1:6379"]) == 2
    assert "expected the Ray dashboard URL" in capsys.readouterr().err


def test_submit_runs_the_pipeline_on_the_ray_head_and_publishes(ray_head, tiny_config, tmp_path, capsys):
    store = str(tmp_path / "store")
    assert main(["submit", str(tiny_config), "--address", ray_head, "--store", store, "--wait"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("firth-tiny-submit-")

    assert main(["jobs", "status", job_id, "--address", ray_head, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "SUCCEEDED" and status["metadata"]["table"] == "tiny-submit"
    assert main(["jobs", "logs", job_id, "--address", ray_head]) == 0
    logs = capsys.readouterr().out
    assert "published tiny-submit@0" in logs and "firth: training done" in logs

    info = TableStore(store).info("tiny-submit")
    assert info.version == 0 and info.rows == info.metadata["vocab_size"] > 100
    assert [s["uri"].rsplit("/", 1)[-1] for s in info.metadata["corpus"]["shards"]] == [
        sorted(p.name for p in SAMPLE.glob("*.jsonl.gz"))[0]]
    (record,) = RunLog(store).list("tiny-submit")
    assert record.outcome == "succeeded" and record.submission_id == job_id and record.version == 0
    assert list(record.timings) == ["statistics", "training", "publish"]

    assert main(["jobs", "stop", job_id, "--address", ray_head]) == 0
    assert "already ended" in capsys.readouterr().out
    assert main(["jobs", "status", "firth-no-such-job", "--address", ray_head]) == 2
    assert "no job 'firth-no-such-job'" in capsys.readouterr().err
