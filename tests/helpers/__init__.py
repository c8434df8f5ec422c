"""What several test modules share that is not a fixture: paths of the checkout and the sample corpus."""
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the checkout: examples/, infra/, pyproject.toml
SAMPLE = ROOT / "examples" / "sample-corpus"  # the small real corpus shipped with the project
SAMPLE_SHARDS = sorted(SAMPLE.glob("*.jsonl.gz"))


def write_job(folder, config: dict | None = None, *, shards: int = 0, name: str = "job.yaml", **sections):
    """A job config file in `folder`, the one writer the tests share.

    `shards` sample shards are copied to `folder/corpus`, and the config names them
    (`corpus/*.jsonl.gz`, relative to the file) unless it gives a corpus of its own; the store is
    `folder/store` unless the config names one. Sections may also come as keywords (`table="t"`).
    """
    folder = Path(folder)
    if shards:
        (folder / "corpus").mkdir(parents=True, exist_ok=True)
        for shard in SAMPLE_SHARDS[:shards]:
            shutil.copy(shard, folder / "corpus")
    config = {"corpus": {"shards": ["corpus/*.jsonl.gz"]}, "store": {"uri": str(folder / "store")}, **(config or {}), **sections}
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path
