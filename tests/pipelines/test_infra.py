"""Every file under infra/ parses, has the fields its tool requires, and agrees with the package:
image tag = pyproject version, Ray version = the locked ray, commands = firth's entry points."""
import re
import tomllib

import pytest
import yaml

from firth.pipelines.config import JobConfig, StatisticsConfig, load_config
from firth.pipelines.ops.schedule import render
from tests.helpers import ROOT

INFRA = ROOT / "infra"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
RAY_VERSION = next(m[1] for m in re.finditer(r"^ray==(.+)$", (ROOT / "requirements.lock").read_text(), re.M))
ENTRY_POINTS = set(PYPROJECT["project"]["scripts"])  # {"firth"}
YAML_FILES = sorted(INFRA.rglob("*.yaml"))


def load(relative: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((INFRA / relative).read_text()) if doc is not None]


def images(node) -> list[str]:
    """Every value under an `image` key, at any depth."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + [
            i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def test_every_infra_file_is_known_and_parses():
    assert [str(p.relative_to(INFRA)) for p in YAML_FILES] == [
        "aws/ray-cluster.yaml", "beam/dataflow.yaml", "beam/flink.yaml", "beam/spark.yaml", "dask/dask.yaml",
        "k8s/cronjob.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "nightly.yaml"]
    for path in YAML_FILES:
        assert load(str(path.relative_to(INFRA))), path
    readme = (INFRA / "README.md").read_text()
    for path in [*YAML_FILES, INFRA / "Dockerfile"]:
        assert str(path.relative_to(INFRA)) in readme, f"infra/README.md does not explain {path.name}"


@pytest.mark.parametrize("path", [p for p in YAML_FILES if p.parent.name != "beam"] + [INFRA / "Dockerfile"],
                         ids=lambda p: str(p.relative_to(INFRA)))
def test_every_image_is_this_version_of_firth(path):
    if path.name == "Dockerfile":
        found = []
    elif path.name == "nightly.yaml":
        found = [load("nightly.yaml")[0]["schedule"]["image"]]
    else:
        found = [i for doc in load(str(path.relative_to(INFRA))) for i in images(doc)]
        if path.name == "ray-cluster.yaml":
            found = [load("aws/ray-cluster.yaml")[0]["docker"]["image"]]
        assert found, f"{path.name} names no image"
    for image in found:
        assert image.rsplit("/", 1)[-1] == f"firth:{VERSION}", (path.name, image)


def test_dockerfile_has_a_cuda_base_pinned_deps_and_the_entry_point():
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:[\d.]+-\S*runtime", text, re.M)
    assert f"ARG FIRTH_VERSION={VERSION}\n" in text
    assert "requirements.lock" in text and "-c /tmp/constraints.txt" in text  # the lock constrains every install
    torch_pin = next(m[0] for m in re.finditer(r"^torch==.+$", (ROOT / "requirements.lock").read_text(), re.M))
    assert f"--index-url ${{TORCH_INDEX}} {torch_pin}" in text  # same torch, CUDA (or CPU) build by index
    assert re.search(r"^ARG TORCH_INDEX=https://download.pytorch.org/whl/cu\d+$", text, re.M)
    for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values():  # pipelines, workers, schemas
        assert f"COPY {folder} " in text
    for extra in ("stats", "train", "encoder"):  # everything `firth run` can need
        assert f"--extra {extra}" in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)[1]
    assert yaml.safe_load(cmd)[0] in ENTRY_POINTS
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "firth-store", "bench-corpus"} <= set(ignored)


def _ray_cluster_spec_checks(spec: dict, where: str):
    assert spec["rayVersion"] == RAY_VERSION, where
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0", where  # the Jobs API must be reachable
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu_groups, f"{where}: no GPU worker group"
    for group in spec["workerGroupSpecs"]:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (where, group["groupName"])
    for group in gpu_groups:
        assert group["rayStartParams"]["num-gpus"] == "1"
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]


def test_kuberay_cluster_and_job():
    (cluster,) = load("kuberay/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    _ray_cluster_spec_checks(cluster["spec"], "RayCluster")
    nightly = load("nightly.yaml")[0]["schedule"]
    assert nightly["address"].startswith(f"http://{cluster['metadata']['name']}-head-svc.")  # KubeRay's service name

    (job,) = load("kuberay/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    _ray_cluster_spec_checks(job["spec"]["rayClusterSpec"], "RayJob")
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[0] in ENTRY_POINTS and entrypoint[1] == "run"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    # the config it runs is the ConfigMap the CronJob render writes, mounted on the head
    config_map = load("k8s/cronjob.yaml")[0]
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = head["containers"][0]["volumeMounts"][0]
    volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert entrypoint[2] == f"{mount['mountPath']}/{next(iter(config_map['data']))}"


def test_aws_cluster_launcher():
    (launcher,) = load("aws/ray-cluster.yaml")
    assert launcher["provider"]["type"] == "aws" and launcher["provider"]["region"]
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    for name, node in types.items():
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", node["node_config"]["ImageId"]), name
        assert node["node_config"]["InstanceType"]
    assert sum(t.get("max_workers", 0) for t in types.values()) >= launcher["max_workers"] > 0
    assert any("ray start --head" in c for c in launcher["head_start_ray_commands"])
    assert any("ray start --address" in c for c in launcher["worker_start_ray_commands"])


def test_dask_deployment_serves_the_address_the_nightly_config_uses():
    service, scheduler, worker = load("dask/dask.yaml")
    assert (service["kind"], scheduler["kind"], worker["kind"]) == ("Service", "Deployment", "Deployment")
    labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert scheduler["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels  # the service reaches the scheduler pod
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "comm")
    scheduler_command = scheduler["spec"]["template"]["spec"]["containers"][0]["command"]
    assert scheduler_command[:2] == ["dask", "scheduler"] and str(port) in scheduler_command
    worker_command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert worker_command[:3] == ["dask", "worker", f"tcp://{service['metadata']['name']}:{port}"]
    assert worker_command[worker_command.index("--nthreads") + 1] == "1"
    address = load("nightly.yaml")[0]["statistics"]["scheduler_address"]
    assert address == (f"tcp://{service['metadata']['name']}.{service['metadata']['namespace']}"
                       f".svc.cluster.local:{port}")


@pytest.mark.parametrize("runner", ["flink", "spark", "dataflow"])
def test_beam_examples_are_statistics_sections(runner):
    (snippet,) = load(f"beam/{runner}.yaml")
    assert list(snippet) == ["statistics"]
    statistics = snippet["statistics"]
    assert statistics["engine"] == "beam"
    beam = statistics["beam"]
    assert beam["runner"] == {"flink": "FlinkRunner", "spark": "SparkRunner", "dataflow": "DataflowRunner"}[runner]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in beam["options"])  # option names, no leading --
    image = beam["options"].get("environment_config") or beam["options"].get("sdk_container_image")
    assert image.rsplit("/", 1)[-1] == f"firth:{VERSION}"
    # the other keys are the statistics section's own; the Beam keys are checked once the config knows them
    shared = {k: v for k, v in statistics.items() if k not in ("engine", "beam")}
    StatisticsConfig.model_validate(shared)
    if "beam" in StatisticsConfig.model_fields:
        JobConfig.model_validate({"table": "t", "corpus": {"shards": ["s3://b/*"]}, **snippet})


def test_the_cronjob_is_what_schedule_render_writes_for_the_nightly_config():
    config = load_config(INFRA / "nightly.yaml")
    (rendered,) = render(config, INFRA / "nightly.yaml", "k8s").values()
    assert (INFRA / "k8s" / "cronjob.yaml").read_text() == rendered, (
        "infra/k8s/cronjob.yaml is stale: firth schedule render infra/nightly.yaml --target k8s > infra/k8s/cronjob.yaml")
    _, cron_job = load("k8s/cronjob.yaml")
    assert cron_job["spec"]["concurrencyPolicy"] == "Forbid" and cron_job["spec"]["timeZone"]
    command = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] in ENTRY_POINTS and command[1] == "submit" and "--wait" in command
