"""Train a subword tokenizer (the `tokenizers` library) from a stream of texts.

One job: texts in, a `transformers` fast tokenizer out, with BERT's special tokens so that a
BertModel built from config can use it as is. Two kinds:

  wordpiece  BERT's: NFD + lowercase + accents stripped, split on whitespace and punctuation,
             "##" continuation pieces. Decoding gives the normalised words back.
  bpe        byte-level BPE (GPT-2's): every string round-trips exactly, case and spaces included.

The stream is consumed once, in the trainer's own batches, so memory does not grow with the corpus.
(Kept apart from the encoder on purpose: a word-statistics tokenizer can share it.)
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}


def train_subword_tokenizer(texts: Iterable[str], vocab_size: int, kind: Literal["wordpiece", "bpe"] = "wordpiece",
                            min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A tokenizer with at most `vocab_size` entries learnt from `texts` (read once).

    Every encoding is wrapped as "[CLS] text [SEP]" (BERT's template), ids 0-4 are the special
    tokens in SPECIAL_TOKENS order, [PAD] = 0 as BertConfig expects.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} leaves no room beyond the {len(SPECIAL_TOKENS)} special tokens; "
                         "use a few thousand or more")
    specials = list(SPECIAL_TOKENS.values())
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=specials, show_progress=False)
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        raise ValueError(f"tokenizer kind {kind!r}: use 'wordpiece' or 'bpe'")
    tokenizer.train_from_iterator(_non_empty(texts), trainer=trainer)
    if tokenizer.get_vocab_size() <= len(specials):
        raise ValueError("the tokenizer learnt no pieces: the text stream was empty or had only whitespace")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=kind == "wordpiece",
                                   **SPECIAL_TOKENS)


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"train_subword_tokenizer: expected str texts, got {type(text).__name__}")
        if text.strip():
            yield text
