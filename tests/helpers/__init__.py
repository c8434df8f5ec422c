"""What several test modules share that is not a fixture: paths of the checkout and the sample corpus."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: examples/, infra/, pyproject.toml
SAMPLE = ROOT / "examples" / "sample-corpus"  # the small real corpus shipped with the project
SAMPLE_SHARDS = sorted(SAMPLE.glob("*.jsonl.gz"))
