"""A command that needs an absent extra says which one to install, in one line, with no traceback."""
import subprocess
import sys

import pytest

from firth.pipelines.cli.extras import EXTRA_MODULES
from tests.helpers import ROOT

# the firth CLI in a process where the named modules cannot be imported, as after `pip install firth`
WITHOUT = """
import sys
for module in sys.argv[1].split(","):
    sys.modules[module] = None
from firth.pipelines.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def firth_without(modules, *args):
    return subprocess.run([sys.executable, "-c", WITHOUT, ",".join(modules), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_run_without_the_pipeline_extras_names_them():
    absent = sorted({*EXTRA_MODULES["stats"], *EXTRA_MODULES["train"], *EXTRA_MODULES["encoder"]})
    out = firth_without(absent, "run", "examples/sample.yaml")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [out.stderr.strip()]  # one line
    assert "firth run needs the extras stats, train" in out.stderr
    assert "pip install 'firth[stats,train]'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_run_with_only_the_training_extra_missing_names_only_it():
    out = firth_without(["ray", "torch"], "run", "examples/sample.yaml")
    assert out.returncode == 2
    assert "firth run needs the extra train (not installed: ray, torch" in out.stderr
    assert "pip install 'firth[train]'" in out.stderr


def test_every_extra_named_here_exists_in_pyproject():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)
