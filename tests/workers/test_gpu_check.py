"""The GPU check: model.use_gpu's early check (workers/raytrain/harness.py check_gpus: where training
will run decides; the CLI side, exit 5 and nothing written, is in tests/pipelines/test_cli_exit_codes.py),
and benchmarks/gpu_check.py reading the figures of the steps of benchmarks/gpu_check.sh."""
from __future__ import annotations

import pytest

from firth.pipelines.config import ConfigError


def test_collect_reads_each_tables_figures_as_word2vec_vs_gensim_prints_them(capsys):
    from benchmarks.gpu_check import word2vec_figures
    from benchmarks.word2vec_vs_gensim import show, summary

    runs = {"sg": ("skip-gram, numba-cuda kernel on cuda", {"words_per_sec": 23456789.0, "loss": 2.51234,
                                                            "wordsim353_spearman": 0.62345, "analogy_accuracy": 0.0456}),
            "cbow": ("CBOW on cuda", {"words_per_sec": 4.1e7, "loss": float("nan"), "wordsim353_spearman": -0.01})}
    log = ""
    for step, (title, run) in runs.items():  # as gpu_check.sh writes the log: a marker, the step's output
        show(title, summary([run]), None, 1)
        log += f"=== {step}: python3 word2vec_vs_gensim.py ...\ncorpus: 12,538,311 words\n{capsys.readouterr().out}"
        log += f"=== {step}: exit 0 after 40 s\n"
    assert word2vec_figures(log) == {  # what show() prints: 4 significant digits, a missing figure left out
        "sg": {"table": "skip-gram, numba-cuda kernel on cuda", "words_per_sec": 2.346e7, "loss": 2.512,
               "wordsim353_spearman": 0.6234, "analogy_accuracy": 0.0456},
        "cbow": {"table": "CBOW on cuda", "words_per_sec": 4.1e7, "wordsim353_spearman": -0.01}}


@pytest.mark.slow  # starts Ray
def test_the_ray_clusters_gpu_resources_decide_not_the_drivers_devices(monkeypatch):
    import ray
    import torch

    from firth.workers.raytrain.harness import check_gpus

    if torch.cuda.device_count():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    check_gpus(False)
    with pytest.raises(ConfigError, match=r"model.use_gpu is true but this machine has no GPU .*set model.use_gpu: false"):
        check_gpus(True)
    assert not ray.is_initialized()  # decided without starting Ray
    ray.init(num_cpus=1, num_gpus=1, _node_ip_address="127.0.0.1")  # a cluster declaring a GPU; the driver has none
    try:
        assert ray.cluster_resources()["GPU"] == 1
        check_gpus(True)
    finally:
        ray.shutdown()
