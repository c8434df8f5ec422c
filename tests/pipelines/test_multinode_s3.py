"""The whole job as a cluster runs it: nodes that share no disk, S3 the only storage they share.

On loopback: a moto S3 server; a Ray head and a second Ray node (`--resources {"node2": 1}`), one
CPU each, so a job's two Ray Train workers land one on each node; a Dask scheduler with one worker
per node. Every node is a folder of its own (HOME, TMPDIR, cwd, Ray --temp-dir, Dask
--local-directory: tests/helpers/cluster.py) and the client that submits is another. `firth submit`
runs a GloVe and a word2vec config whose corpus and store are on S3; then:

- the versions, run records, statistics and checkpoints were written to S3 (moto's own record of
  every request it served shows the checkpoints, which a successful run removes at its end);
- no run wrote a file anywhere on local disk but the processes' temporary folders (TMPDIR, Ray's
  and Dask's temporary folders): not in any HOME (the debug log, ~/.local/state/firth/debug.log, is
  written only when a command fails), cwd, the config's folder, nor this checkout;
- the run record says where the Ray Train workers ran: one rank on each node.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import s3fs
import yaml

from firth.pipelines.ops.run_records import RunLog
from firth.schemas.store import TableStore
from tests.conftest import free_port
from tests.helpers import ROOT, SAMPLE_SHARDS
from tests.helpers.cluster import BIN, Layout, Node, files_under, written_between
from tests.helpers.s3 import wait_for_port
from tests.helpers.s3 import CREDENTIALS, S3_REGION, MotoServer
from tests.pipelines.test_submit import RAY_PORTS

pytestmark = pytest.mark.slow

BUCKET = "cluster"
STORE = f"s3://{BUCKET}/store"
SHARDS = 2  # sample shards in the corpus: two tokens files and two co-occurrence buckets, one per worker
# ports of a node that joins (the head has these and its own: GCS, dashboard, client server)
NODE_PORTS = ["node-manager-port", "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "runtime-env-agent-port"]
WHITESPACE = re.compile(r"\s*")
SMALL_OBJECT_STORE = str(100 << 20)  # bytes of shared memory per node; the jobs move a few MB
# Ray 2.60's raylet gives its dashboard agent 15 s to report its ports and aborts otherwise, which a
# machine loaded by other work can miss (the agent's imports alone take that long there): retried
RAY_START_ATTEMPTS = 3
SUBMIT_TIMEOUT_S = 400  # both jobs, on a loaded machine; the test's whole budget is pytest's timeout (600 s)


@dataclass
class Cluster:
    layout: Layout
    head: Node
    node2: Node
    client: Node
    moto: MotoServer
    recording: Path  # moto's log of every request it served (JSON objects, bodies included)
    address: str  # Ray dashboard URL
    token: str  # Ray auth token
    scheduler: str  # Dask scheduler address
    nodes: dict[str, tuple[str, str]]  # "head" / "node2" -> (Ray node id, node IP)

    @property
    def temporary(self) -> list[Path]:
        """The folders where processes may write: their TMPDIRs, Ray's and Dask's temporary folders."""
        return [folder for node in (self.head, self.node2, self.client)
                for folder in (node.tmp, node.root / "ray", node.root / "dask")] + [self.recording.parent]


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="fmn-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    layout = Layout(root)
    head, node2, client = layout.node("head"), layout.node("node2"), layout.node("client")
    recording = root / "moto" / "recording.jsonl"
    recording.parent.mkdir()
    moto = None
    try:
        with pytest.MonkeyPatch.context() as patch:  # moto logs every request it serves, bodies included
            patch.setenv("MOTO_ENABLE_RECORDING", "1")
            patch.setenv("MOTO_RECORDER_FILEPATH", str(recording))
            moto = MotoServer()
        moto.make_bucket(BUCKET)
        s3 = s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                               client_kwargs={"endpoint_url": moto.endpoint, "region_name": S3_REGION})
        for shard in SAMPLE_SHARDS[:SHARDS]:
            s3.put(str(shard), f"{BUCKET}/corpus/{shard.name}")

        token = uuid.uuid4().hex + uuid.uuid4().hex
        # Not RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps a one-machine Ray on 127.0.0.1 but refuses a second
        # node; so Ray gives both nodes this machine's own address instead of 127.0.0.1 (traffic stays on the machine)
        ray_env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                   "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
        ports = {name: free_port() for name in RAY_PORTS}
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats",
                  f"--object-store-memory={SMALL_OBJECT_STORE}"]
        layout.run(head, [str(BIN / "ray"), "start", "--head", "--dashboard-host=127.0.0.1", *common,
                          f"--temp-dir={head.root / 'ray'}", *(f"--{name}={port}" for name, port in ports.items())],
                   head.env(layout.trace, **ray_env), log="ray-start.log", attempts=RAY_START_ATTEMPTS)
        address = f"http://127.0.0.1:{ports['dashboard-port']}"
        ray_nodes(layout, client, address, token, count=1)  # the head has settled: node2's start competes less
        layout.run(node2, [str(BIN / "ray"), "start", f"--address=127.0.0.1:{ports['port']}", *common,
                           '--resources={"node2": 1}', f"--temp-dir={node2.root / 'ray'}",
                           *(f"--{name}={free_port()}" for name in NODE_PORTS)],
                   node2.env(layout.trace, **ray_env), log="ray-start.log", attempts=RAY_START_ATTEMPTS)

        scheduler_port = free_port()
        layout.start(head, [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port),
                            "--no-dashboard"], log="dask-scheduler.log")
        wait_for_port(scheduler_port, "the Dask scheduler")
        scheduler = f"tcp://127.0.0.1:{scheduler_port}"
        for node in (head, node2):
            layout.start(node, [str(BIN / "dask"), "worker", scheduler, "--name", node.name, "--host", "127.0.0.1",
                                "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--memory-limit", "2GiB",
                                "--local-directory", str(node.root / "dask")], log="dask-worker.log")
        yield Cluster(layout, head, node2, client, moto, recording, address, token, scheduler,
                      ray_nodes(layout, client, address, token))
    finally:
        left = layout.stop()
        if moto is not None:
            moto.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the cluster still running after teardown: {left}"


def ray_nodes(layout: Layout, client: Node, address: str, token: str, count: int = 2) -> dict[str, tuple[str, str]]:
    """{"head": (node id, IP), "node2": (node id, IP)} once `count` nodes are alive (Ray's state API)."""
    for _ in range(60):
        listed = subprocess.run([str(BIN / "ray"), "list", "nodes", "--address", address, "--format", "json",
                                 "--detail"], env=client.env(layout.trace, RAY_AUTH_TOKEN=token, RAY_AUTH_MODE="token"),
                                cwd=client.cwd, capture_output=True, text=True, timeout=120)
        alive = [n for n in json.loads(listed.stdout or "[]") if n["state"] == "ALIVE"] if listed.returncode == 0 else []
        if len(alive) == count:
            return {"node2" if "node2" in n["resources_total"] else "head": (n["node_id"], n["node_ip"]) for n in alive}
        time.sleep(1)
    raise RuntimeError(f"{count} Ray node(s) were not alive: {listed.stdout[-2000:]} {listed.stderr[-2000:]}")


def write_config(cluster: Cluster, table: str, model: dict) -> Path:
    """A config in the client's own folder: corpus and store on the moto S3, statistics on the Dask scheduler."""
    corpus_options = {"key": "testing", "secret": "testing",  # fsspec-style: the corpus glob takes no other
                      "client_kwargs": {"endpoint_url": cluster.moto.endpoint, "region_name": S3_REGION}}
    folder = cluster.client.root / "job"
    folder.mkdir(exist_ok=True)
    path = folder / f"{table}.yaml"
    path.write_text(yaml.safe_dump({
        "table": table,
        "corpus": {"shards": [f"s3://{BUCKET}/corpus/*.jsonl.gz"], "storage_options": corpus_options},
        "statistics": {"scheduler_address": cluster.scheduler, "min_count": 5, "window": 5, "n_buckets": SHARDS},
        "model": {**model, "dim": 8, "num_workers": 2, "max_failures": 0},
        "evaluation": {"enabled": False},
        "store": {"uri": STORE, "storage_options": cluster.moto.delta_options}}))
    return path


def submit_all(cluster: Cluster, configs: dict[str, Path]) -> dict[str, str]:
    """`firth submit CONFIG --wait` of every config at once, from the client; table -> job id. The jobs'
    statistics overlap; their trainings take turns (each needs a CPU of each node; Ray Train waits)."""
    submitting = {table: subprocess.Popen(
        [sys.executable, "-m", "firth.pipelines.cli.main", "submit", str(config), "--address", cluster.address,
         "--wait"], cwd=cluster.client.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cluster.client.env(cluster.layout.trace, RAY_AUTH_TOKEN=cluster.token)) for table, config in configs.items()}
    jobs = {}
    for table, process in submitting.items():
        out, err = process.communicate(timeout=SUBMIT_TIMEOUT_S)
        assert process.returncode == 0, f"{table}: {err[-3000:]}"
        jobs[table] = out.strip()
    return jobs


def written_keys(recording: Path) -> set[str]:
    """Every object key moto stored (a PUT, or the completion of a multipart upload), deleted or not."""
    # one JSON object per request; moto's threads append them concurrently, so one may follow another
    # before its newline: read them as a stream of objects, not as lines
    text, decoder, keys = recording.read_text(), json.JSONDecoder(), set()
    at = WHITESPACE.match(text, 0).end()
    while at < len(text):
        request, at = decoder.raw_decode(text, at)
        at = WHITESPACE.match(text, at).end()
        url = urlparse(request["url"])
        whole_put = request["method"] == "PUT" and "partNumber=" not in url.query
        if whole_put or (request["method"] == "POST" and "uploadId=" in url.query):
            keys.add(unquote(url.path).lstrip("/"))
    return keys


def test_glove_and_word2vec_run_on_two_nodes_that_share_only_s3(cluster):
    models = {"mn-glove": ({"model": "glove", "epochs": 2, "x_max": 10}, "glove"),
              "mn-word2vec": ({"model": "word2vec", "epochs": 2, "window": 3, "negative": 2}, "word2vec")}
    configs = {table: write_config(cluster, table, model) for table, (model, _) in models.items()}
    places = [cluster.layout.root, ROOT]  # every node's folders, and the checkout
    before = files_under(*places)

    jobs = submit_all(cluster, configs)

    new_local_files = written_between(before, files_under(*places), cluster.temporary, code=ROOT)
    assert new_local_files == []

    options = cluster.moto.delta_options
    store, runs = TableStore(STORE, options), RunLog(STORE, options)
    s3 = s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                           client_kwargs={"endpoint_url": cluster.moto.endpoint, "region_name": S3_REGION})
    listed = {key.removeprefix(f"{BUCKET}/") for key in s3.find(BUCKET)}
    written = {key.removeprefix(f"{BUCKET}/") for key in written_keys(cluster.recording) if key.startswith(f"{BUCKET}/")}
    assert {key.split("/", 1)[0] for key in written} == {"corpus", "store"}  # nothing anywhere else

    for table, (_, run_name) in models.items():
        (record,) = runs.list(table)
        run_id = record.run_id
        assert (record.outcome, record.submission_id, record.version) == ("succeeded", jobs[table], 0)
        assert f"store/_runs/{table}/{run_id}.json" in listed

        info = store.info(table)  # published to S3, read back from there
        assert info.version == 0 and info.rows == info.metadata["vocab_size"] > 100
        assert info.metadata["run_id"] == run_id
        assert f"store/tables/{table}/_delta_log/00000000000000000000.json" in listed

        statistics = f"store/_statistics/{table}/runs/{run_id}"
        latest = json.loads(s3.cat_file(f"{BUCKET}/store/_statistics/{table}/latest.json"))
        assert latest == {"run_id": run_id, "uri": f"s3://{BUCKET}/{statistics}"}
        assert {f"{statistics}/vocabulary.parquet", f"{statistics}/tokens/shard-00000.parquet"} <= listed
        if run_name == "glove":
            assert {f"{statistics}/cooccurrence/part-{b:05d}.parquet" for b in range(SHARDS)} <= listed

        # checkpoints went to S3 each epoch and were removed once the version was published
        checkpoints = f"store/_checkpoints/{table}/{run_id}/"
        epochs_saved = {key.rsplit("/", 2)[-2] for key in written
                        if key.startswith(checkpoints + run_name + "/checkpoint_") and key.endswith("/state.npy")}
        assert len(epochs_saved) == 2  # model.epochs
        assert not [key for key in listed if key.startswith(checkpoints)]

        # one rank trained on each node: the second node did train
        assert [w["rank"] for w in record.workers] == [0, 1]
        assert sorted((w["node_id"], w["ip"]) for w in record.workers) == sorted(cluster.nodes.values())
        assert info.metadata["training"]["workers"] == record.workers
