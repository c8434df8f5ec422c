"""The one config model: a YAML file validated once, at the edge, then passed around typed.

Every section forbids unknown keys, so a typo is an error that names the key and lists
what is allowed. The validated config is serialised into every published version's
metadata (`JobConfig.lineage()`, without storage options).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from schemas.fs import join

DEFAULT_STORE = "./firth-store"
# Unicode-aware words: letters/digits (any script), optionally joined by an apostrophe
# ("don't", "python's"). Underscores split words; numbers are kept as tokens.
DEFAULT_TOKEN_PATTERN = r"[^\W_]+(?:['\u2019][^\W_]+)*"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(Section):
    """Where the shards are and how to read them."""

    shards: list[str] = Field(min_length=1, description="shard URIs or globs: local paths or s3://")
    format: Literal["auto", "text", "jsonl", "parquet"] = "auto"  # auto: by file extension
    id_field: str = "id"  # JSON Lines / Parquet document id; text shards use "<shard name>:<line>"
    text_field: str = "text"
    storage_options: dict[str, Any] = {}  # passed to fsspec (s3fs: key, secret, endpoint_url, ...)
    on_bad_record: Literal["error", "skip"] = "error"  # skip: count and report instead of failing

    @field_validator("shards", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class TokenizerConfig(Section):
    lowercase: bool = True
    pattern: str = DEFAULT_TOKEN_PATTERN  # a Python regex; each match is one token

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v):
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v


class StatisticsConfig(Section):
    engine: Literal["dask"] = "dask"
    scheduler_address: str | None = None  # e.g. tcp://host:8786; None starts a LocalCluster
    n_workers: int = Field(2, ge=1)  # LocalCluster worker processes
    min_count: int = Field(5, ge=1)
    max_vocab_size: int | None = Field(None, ge=1)
    window: int = Field(10, ge=1)
    weighting: Literal["harmonic", "uniform"] = "harmonic"  # harmonic: a pair d apart adds 1/d (GloVe)
    n_buckets: int = Field(16, ge=1)  # co-occurrence output files, keyed by i % n_buckets
    memory_mb: int = Field(128, ge=1)  # co-occurrence counting budget per shard task (dense block + pair buffer)
    output: str | None = None  # where statistics Parquet goes; default <store>/_statistics/<table>


class GloveConfig(Section):
    model: Literal["glove"] = "glove"
    dim: int = Field(100, ge=1)
    x_max: float = Field(100.0, gt=0)
    alpha: float = Field(0.75, gt=0)
    epochs: int = Field(15, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_workers: int = Field(2, ge=1)  # Ray Train workers
    use_gpu: bool = False
    syncs_per_epoch: int = Field(4, ge=1)  # parameter synchronisations between workers per epoch
    shuffle_buffer: int = Field(1_000_000, ge=1)  # co-occurrence entries shuffled together
    seed: int = 0
    max_failures: int = Field(1, ge=0)  # worker failures tolerated; restored from the last checkpoint
    checkpoint_dir: str | None = None  # default: <store>/_checkpoints/<table>


def _model_kind(value: Any) -> str | None:
    """The `model:` section's kind; GloVe when the section leaves it out."""
    return value.get("model", "glove") if isinstance(value, dict) else getattr(value, "model", None)


# Every trainable model, told apart by its `model` key (workers/trainers.py maps each to its trainer).
# One line per model.
MODEL_CONFIGS: dict[str, type[Section]] = {
    "glove": GloveConfig,
}
ModelConfig = Annotated[
    Union[tuple(Annotated[config, Tag(kind)] for kind, config in MODEL_CONFIGS.items())],
    Discriminator(_model_kind),
]


class StoreConfig(Section):
    uri: str = DEFAULT_STORE  # local directory or s3://bucket/prefix
    storage_options: dict[str, str] = {}  # deltalake/object_store options (AWS_ENDPOINT_URL, ...)


class EvaluationConfig(Section):
    enabled: bool = True
    analogy_vocab: int = Field(30_000, ge=1)  # 3CosAdd searches the most frequent N words


class ScheduleConfig(Section):
    """When and how a nightly run starts (`firth schedule render`; pipelines/schedule.py)."""

    cron: str  # five fields: minute hour day-of-month month day-of-week, e.g. "30 2 * * *"
    timezone: str = "UTC"  # IANA name the cron expression is read in, e.g. Europe/Berlin
    action: Literal["submit", "run-incremental"] = "submit"  # firth submit --wait, or firth run --incremental
    address: str | None = None  # Ray dashboard URL (http://HEAD:8265), required for action submit
    config_path: str | None = None  # the config's path where the schedule runs; default: this file's path
    firth: str = "firth"  # the command on the scheduling host (cron, systemd)
    image: str | None = None  # container image of the CronJob; default firth:<package version>
    namespace: str = "default"  # Kubernetes namespace of the CronJob
    starting_deadline_s: int = Field(3600, ge=10)  # a run missed by longer than this is skipped (k8s, docs)

    @field_validator("cron")
    @classmethod
    def _parses(cls, v):
        from pipelines.schedule import parse_cron  # raises ValueError naming the field
        parse_cron(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return v


class JobConfig(Section):
    table: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")  # name of the published table
    corpus: CorpusConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    statistics: StatisticsConfig = StatisticsConfig()
    model: ModelConfig = GloveConfig()
    store: StoreConfig = StoreConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    schedule: ScheduleConfig | None = None  # nightly runs: pipelines/schedule.py

    def lineage(self) -> dict:
        """The config as published with every version: storage options are left out, since they
        may hold credentials (keys, secrets, session tokens) that must never reach a table."""
        return self.model_dump(mode="json", exclude={"corpus": {"storage_options"}, "store": {"storage_options"}})

    @property
    def statistics_uri(self) -> str:
        return self.statistics.output or join(self.store.uri, "_statistics", self.table)

    @property
    def checkpoint_uri(self) -> str:
        return self.model.checkpoint_dir or join(self.store.uri, "_checkpoints", self.table)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key and what is allowed."""


def load_config(path: str | os.PathLike, store: str | None = None) -> JobConfig:
    """Read and validate a YAML config.

    Relative shard paths are resolved against the config file's folder, so a config works from
    any working directory; a relative store path is under the working directory. `store`
    (CLI `--store`), else `$FIRTH_STORE`, overrides the config's store URI.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (table, corpus, ...), got {type(raw).__name__}")
    raw.setdefault("store", {})
    if store or os.environ.get("FIRTH_STORE"):
        raw["store"]["uri"] = store or os.environ["FIRTH_STORE"]
    try:
        config = JobConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: invalid config\n{_explain(e)}") from None
    base = path.resolve().parent
    return config.model_copy(update={
        "corpus": config.corpus.model_copy(update={"shards": [_resolve(s, base) for s in config.corpus.shards]}),
        "store": config.store.model_copy(update={"uri": _resolve(config.store.uri, Path.cwd())}),
    })


def _resolve(uri: str, base: Path) -> str:
    """Absolute form of a local path relative to `base`; URIs with a scheme pass through."""
    return uri if "://" in uri else str((base / uri).resolve())


def _explain(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        # drop the model union's tag from the key: "model.glove.dim" reads as "model.dim"
        key = ".".join(str(p) for i, p in enumerate(err["loc"]) if not (i == 1 and err["loc"][0] == "model"))
        key = key or "<top>"
        if err["type"] == "extra_forbidden":
            section = _section_at(err["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else "?"
            lines.append(f"  {key}: unknown key; allowed here: {allowed}")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def _section_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = JobConfig
    for index, part in enumerate(loc):
        if loc[:index] == ("model",):  # the union's tag: which model config
            model = MODEL_CONFIGS[part]
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        # an optional section (`schedule: ScheduleConfig | None`) has its class inside the union
        if type(None) in get_args(annotation):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
