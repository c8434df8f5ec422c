"""An encoder's subword tokenizer, trained from a stream of texts by the one subword trainer
(firth.pipelines.corpus.subword.train_subwords) with BERT's text pipeline and special tokens, so
that a BertModel built from config can use it as is. Two kinds:

  wordpiece  BERT's: NFD + lowercase + accents stripped, split on whitespace and punctuation,
             "##" continuation pieces. Decoding gives the normalised words back.
  bpe        byte-level BPE (GPT-2's): every string round-trips exactly, case and spaces included.

The stream is consumed once, in the trainer's own batches, so memory does not grow with the corpus.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from firth.pipelines.corpus.subword import train_subwords

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}


def train_encoder_tokenizer(texts: Iterable[str], vocab_size: int, kind: Literal["wordpiece", "bpe"] = "wordpiece",
                            min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A tokenizer with at most `vocab_size` entries learnt from `texts` (read once).

    Every encoding is wrapped as "[CLS] text [SEP]" (BERT's template), ids 0-4 are the special
    tokens in SPECIAL_TOKENS order, [PAD] = 0 as BertConfig expects.
    """
    byte_level = kind == "bpe"
    tokenizer = train_subwords(texts, _byte_level if byte_level else _bert_words, kind=kind, vocab_size=vocab_size,
                               min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS.values()),
                               continuation_prefix=None if byte_level else "##",
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else ())
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=not byte_level,
                                   **SPECIAL_TOKENS)


def _bert_words(tokenizer: Tokenizer) -> None:
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")


def _byte_level(tokenizer: Tokenizer) -> None:
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
