"""`firth` in cron and scripts, in process: --version, the exit code of each kind of failure (the
table in pipelines/cli/failures.py and README), `run --set` overrides validated like the file, and
the log level flags. Interrupted runs and closed pipes need real processes: test_cli_runs.py."""
from __future__ import annotations

import logging
from importlib.metadata import version

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.config import ConfigError, load_config
from firth.pipelines.ops.lock import RunLock
from tests.helpers import write_job
from tests.helpers.tables import publish_with_metrics


@pytest.fixture(autouse=True)
def debug_log(tmp_path, monkeypatch):
    monkeypatch.setenv("FIRTH_DEBUG_LOG", str(tmp_path / "debug.log"))


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"firth {version('firth')}\n"


def _job(tmp_path, **sections):
    return write_job(tmp_path, {"table": "t", "corpus": {"shards": ["nothing-*.txt"]}, **sections})


def test_each_kind_of_failure_has_its_exit_code_and_one_line(tmp_path, local_store, capsys):
    store = ["--store", local_store.uri]
    config = _job(tmp_path, store={"uri": local_store.uri}, promotion={"rules": [{"metric": "wordsim353_spearman"}]})
    publish_with_metrics(local_store, "t", 0.50, 0.40)
    assert main(["tables", "promote", "t@0", "--alias", "production", *store]) == 0
    capsys.readouterr()
    damaged = tmp_path / "damaged" / "tables" / "d" / "_delta_log"
    damaged.mkdir(parents=True)
    (damaged / f"{0:020d}.json").write_text("not json\n")

    cases = {  # exit code -> (command, what its one line says)
        1: (["tables", "show", "d", "--store", str(tmp_path / "damaged")], "unexpected DeltaError"),
        2: (["tables", "show", "t@9", *store], "has no version 9"),
        5: (["run", str(config), "--set", "model.dim=-1"], "model.dim"),
        6: (["tables", "promote", "t@1", "--alias", "production", "--config", str(config), *store],
            "refused to point t@production at version 1"),
    }
    for code, (argv, says) in cases.items():
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == (err.count("\n  ") + 1) and "Traceback" not in err, err

    lock = RunLock(local_store.uri, "t", run_id="holder")
    lock.acquire()
    try:
        assert main(["run", str(config)]) == 3
        assert "(run holder," in capsys.readouterr().err
    finally:
        lock.release()


def test_set_overrides_keys_typed_as_yaml_and_validated_like_the_file(tmp_path):
    path = _job(tmp_path, model={"model": "glove", "epochs": 15})
    config = load_config(path, overrides=["model.epochs=3", "statistics.min_count=10", "tokenizer.lowercase=false",
                                          "evaluation.analogy_vocab=500"])
    assert (config.model.epochs, config.statistics.min_count, config.tokenizer.lowercase) == (3, 10, False)
    assert config.evaluation.analogy_vocab == 500
    assert config.lineage()["model"]["epochs"] == 3  # what a version records
    assert load_config(path).model.epochs == 15  # the file itself is untouched

    problems = {
        "model.epoch=3": ["--set model.epoch=3", "model.epoch: unknown key; allowed here:", "epochs"],
        "model.epochs=many": ["model.epochs: Input should be a valid integer", "'many'"],
        "model.epochs": ["--set 'model.epochs': expected KEY=VALUE"],
        "table.name=x": ["--set table.name: table in", "is a value, not a section"],
        "statistics.min_count=[1": ["--set statistics.min_count: the value is not valid YAML"],
    }
    for override, says in problems.items():
        with pytest.raises(ConfigError) as error:
            load_config(path, overrides=[override])
        assert all(text in str(error.value) for text in says), (override, str(error.value))


def test_set_on_the_command_line_exits_5_naming_the_key(tmp_path, capsys):
    path = _job(tmp_path)
    assert main(["run", str(path), "--set", "statistics.min_cont=10"]) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"firth: error: {path} with --set statistics.min_cont=10: invalid config\n")
    assert "statistics.min_cont: unknown key; allowed here:" in err and "min_count" in err


@pytest.mark.parametrize("flags, shown", [
    ([], ["info", "warning"]), (["--quiet"], ["warning"]), (["--log-level", "error"], []),
    (["--log-level=debug"], ["debug", "info", "warning"])])
def test_quiet_and_log_level_choose_which_log_lines_reach_stderr(tmp_path, capsys, flags, shown):
    logger = logging.getLogger("firth.pipelines.job")
    # anywhere on the line, as a crontab entry may put them
    assert main(["runs", "list", "--store", str(tmp_path / "store"), *flags]) == 0
    capsys.readouterr()
    for level in ("debug", "info", "warning"):
        getattr(logger, level)(f"a {level} line")
    assert capsys.readouterr().err == "".join(f"firth: a {level} line\n" for level in shown)


def test_an_unknown_log_level_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--log-level", "loud", "runs", "list"])
    assert done.value.code == 2 and "invalid choice: 'loud'" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["glove", "word2vec", "fasttext", "encoder"])
def test_use_gpu_without_a_gpu_exits_5_before_writing_anything(tmp_path, capsys, monkeypatch, model):
    import torch

    if torch.cuda.device_count():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # without the check the run would take the lock, write its record and fail at the corpus (exit 2)
    config = _job(tmp_path, model={"model": model, "use_gpu": True})
    assert main(["run", str(config)]) == 5
    err = capsys.readouterr().err
    assert err.startswith("firth: error: model.use_gpu is true but ") and err.count("\n") == 1, err
    assert "set model.use_gpu: false, or run on a node with a GPU, or give the Ray cluster GPU resources" in err
    assert not (tmp_path / "store").exists()  # no lock, run record, statistics, checkpoints or table
