"""`firth submit` against a real Ray head on 127.0.0.1, and what a submission ships."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.config import ConfigError
from firth.pipelines.ops import submit
from firth.pipelines.ops.run_records import RunLog
from firth.schemas.store import TableStore
from tests.conftest import free_port
from tests.helpers import ROOT, SAMPLE, write_job

RAY = Path(sys.executable).parent / "ray"
# every port `ray start` would otherwise take at a fixed default, so heads of other users never clash
RAY_PORTS = ["port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
             "object-manager-port"]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of its own on loopback (own ports, own --temp-dir) with token auth on and a token of its
    own; stopped by killing its process group only (`ray stop` would stop every Ray on the machine).
    Yields (dashboard URL, token). Clients run as `firth` processes (firth_cli): Ray fixes a process's
    auth mode when it is first imported, and this test process may have imported Ray long before."""
    ports = {name: free_port() for name in RAY_PORTS}
    temp = tempfile.mkdtemp(prefix="firth-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    token = uuid.uuid4().hex + uuid.uuid4().hex
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
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
        yield f"http://127.0.0.1:{ports['dashboard-port']}", token
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


def firth_cli(*args: str, token: str | None, home: Path | None = None) -> subprocess.CompletedProcess:
    """`firth ARGS` in a fresh process, with the head's token in its environment (or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
    env.update(**({"RAY_AUTH_TOKEN": token} if token else {}), **({"HOME": str(home)} if home else {}))
    return subprocess.run([sys.executable, "-m", "firth.pipelines.cli.main", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture
def tiny_config(tmp_path):
    """A tiny variant of examples/sample.yaml: one shard, small dim, few epochs, one training worker."""
    folder = tmp_path / "job"
    (folder / "firth-store").mkdir(parents=True)  # a store beside the config is never shipped
    (folder / "firth-store" / "big.bin").write_bytes(b"x")
    path = write_job(folder, {
        "table": "tiny-submit", "statistics": {"n_workers": 1, "min_count": 5, "window": 5, "n_buckets": 2},
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10},
        "evaluation": {"enabled": False}}, shards=1, name="tiny.yaml")
    return path


def test_a_submission_ships_the_code_and_the_config_folder_and_names_an_absolute_store(tiny_config, tmp_path):
    store = str(tmp_path / "elsewhere" / "store")
    job = submit.build_submission(tiny_config, store=store, python="/opt/py/bin/python", submission_id="j-1")
    assert job.entrypoint == f"/opt/py/bin/python -m firth.pipelines.cli.main run tiny.yaml --store {store}"
    env = job.runtime_env
    assert env["working_dir"] == str(tiny_config.parent)
    assert {".git", ".venv", "firth-store", "bench-corpus", "__pycache__"} <= set(env["excludes"])
    [code] = env["py_modules"]
    assert Path(code).name == "firth"  # one folder: the namespace package Ray puts on the job's path
    assert {p.name for p in Path(code).iterdir()} == {"pipelines", "workers", "schemas"}
    assert (Path(code) / "pipelines" / "cli" / "main.py").read_bytes() == (ROOT / "pipelines/cli/main.py").read_bytes()
    assert not list(Path(code).rglob("__pycache__"))
    assert env["env_vars"]["FIRTH_SUBMISSION_ID"] == "j-1"
    installed = submit.build_submission(tiny_config, store=store, ship_code=False)
    assert "py_modules" not in installed.runtime_env and installed.entrypoint.startswith("python -m firth.pipelines.cli.main")
    assert submit.default_python("http://127.0.0.1:8265") == sys.executable
    assert submit.default_python("http://ray-head.example:8265") == "python"


def test_a_bad_config_or_address_fails_before_anything_is_submitted(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("table: t\ncorpus: {shards: [x]}\nmodel: {dimension: 3}\n")
    with pytest.raises(ConfigError, match="model.dimension: unknown key"):
        submit.build_submission(bad)
    assert main(["jobs", "status", "some-job", "--address", "127.0.0.1:6379"]) == 2
    assert "expected the Ray dashboard URL" in capsys.readouterr().err


@pytest.mark.slow
def test_submit_runs_the_pipeline_on_the_ray_head_and_publishes(ray_head, tiny_config, tmp_path):
    address, token = ray_head
    store = str(tmp_path / "store")
    submitted = firth_cli("submit", str(tiny_config), "--address", address, "--store", store, "--wait", "--json",
                          token=token)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = json.loads(submitted.stdout)["job_id"]  # stdout is one JSON object
    assert json.loads(submitted.stdout) == {"job_id": job_id, "address": address, "status": "SUCCEEDED"}
    assert job_id.startswith("firth-tiny-submit-") and f"job {job_id}: SUCCEEDED" in submitted.stderr

    status = firth_cli("jobs", "status", job_id, "--address", address, "--json", token=token)
    status = json.loads(status.stdout)
    assert status["status"] == "SUCCEEDED" and status["metadata"]["table"] == "tiny-submit"
    logs = firth_cli("jobs", "logs", job_id, "--address", address, token=token).stdout
    assert "published tiny-submit@0" in logs and "firth: training done" in logs

    info = TableStore(store).info("tiny-submit")
    assert info.version == 0 and info.rows == info.metadata["vocab_size"] > 100
    assert [s["uri"].rsplit("/", 1)[-1] for s in info.metadata["corpus"]["shards"]] == [
        sorted(p.name for p in SAMPLE.glob("*.jsonl.gz"))[0]]
    (record,) = RunLog(store).list("tiny-submit")
    assert record.outcome == "succeeded" and record.submission_id == job_id and record.version == 0
    assert list(record.timings) == ["statistics", "training", "publish"]

    # the training joined this cluster: its Ray Train worker ran there, in this job
    actors = subprocess.run([sys.executable, "-c", ACTORS, address, job_id], cwd=ROOT, text=True, capture_output=True,
                            env={**os.environ, "RAY_AUTH_TOKEN": token}, timeout=120)
    ray_job, worker_jobs = json.loads(actors.stdout)
    assert worker_jobs == [ray_job]  # model.num_workers: 1

    stop = firth_cli("jobs", "stop", job_id, "--address", address, token=token)
    assert stop.returncode == 0 and "already ended" in stop.stdout
    unknown = firth_cli("jobs", "status", "firth-no-such-job", "--address", address, token=token)
    assert unknown.returncode == 2 and "no job 'firth-no-such-job'" in unknown.stderr


ACTORS = """
import json, sys
from firth.pipelines.ops import submit
client = submit.client(sys.argv[1])  # sets the auth mode before Ray is imported
from ray.util.state import list_actors

from tests.helpers import ROOT, SAMPLE
ray_job = client.get_job_info(sys.argv[2]).driver_info.id
actors = list_actors(address=sys.argv[1], limit=10_000, detail=True)
print(json.dumps([ray_job, [a.job_id for a in actors if a.class_name == "RayTrainWorker"]]))
"""


@pytest.mark.slow
def test_a_client_without_the_clusters_token_is_told_where_to_get_it(ray_head, tmp_path):
    address, _ = ray_head
    result = firth_cli("jobs", "status", "any-job", "--address", address, token=None, home=tmp_path)
    assert result.returncode == 2 and "requires its auth token" in result.stderr
