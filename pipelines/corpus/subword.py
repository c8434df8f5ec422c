"""Subword tokenizers (WordPiece or BPE, Hugging Face `tokenizers`): train one from a corpus, and use it
as a drop-in for the regex tokenizer (documents in, token strings + per-document offsets out).

Shared API (the statistics' tokenizer here; the one trainer of every subword vocabulary):

    train_subword_tokenizer(texts, kind="wordpiece", vocab_size=30_000, lowercase=True,
                            min_frequency=2, special_tokens=(), words_only=True) -> tokenizers.Tokenizer
    train_subwords(texts, text_pipeline, kind=..., vocab_size=..., min_frequency=..., special_tokens=...)
                                                                        # any pipeline: an encoder's
    corpus_sample(shards, corpus_config, max_bytes) -> Iterator[str]    # a bounded, streamed sample
    SubwordTokenizer(tokenizer_json)(texts) -> (tokens, offsets)        # as firth.pipelines.corpus.tokenize.Tokenizer

The trained model is one self-contained `tokenizer.json` (normalizer, pre-tokenizer, model,
decoder): whoever loads it with `tokenizers.Tokenizer.from_str` tokenises exactly as the statistics did.

Pipeline of a trained tokenizer:
  normalizer      NFC, then lowercase (if asked); with words_only, every run of characters that are
                  not letters or digits (\\p{L}, \\p{N}) becomes one space, except an apostrophe (' or ’)
                  between two letters/digits, which stays in the word - the regex tokenizer's default
                  word definition (`[^\\W_]+(?:['’][^\\W_]+)*`), up to Unicode categories where Python's
                  `\\w` and Oniguruma's \\p{L}/\\p{N} differ (rare: e.g. combining marks).
  pre-tokenizer   split on whitespace (words_only) or on whitespace and punctuation (otherwise)
  model           WordPiece or BPE; a piece that continues a word carries the prefix "##" in both,
                  so a whole word is its own plain string ("the") and statistics over subword
                  units keep whole words comparable with word-level evaluation sets
  decoder         WordPiece("##"): decode(encode(text)) gives the normalised words joined by spaces

Determinism: training is multi-threaded and breaks ties between equally frequent merges in hash
order, so two trainings on the same text may differ in a few rare units (on a bench shard: 755,213
to 755,239 units from 696,337 words over four trainings). The stored tokenizer.json is the
record: statistics and consumers use that file, never a retraining.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain

import numpy as np
import pyarrow as pa
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from firth.pipelines.config import TokenizerConfig
from firth.pipelines.corpus.tokenize import (
    Tokenizer as WordTokenizer,  # the regex tokenizer splits documents into words
)

SUBWORD_KINDS = ("wordpiece", "bpe")
CONTINUATION_PREFIX = "##"
UNKNOWN_TOKEN = "[UNK]"
# Characters that separate words: anything but letters/digits, and an apostrophe not between two of them.
_NOT_WORD = r"(?:[^\p{L}\p{N}'’]|(?<![\p{L}\p{N}])['’]|['’](?![\p{L}\p{N}]))+"


def train_subword_tokenizer(texts: Iterable[str], *, kind: str = "wordpiece", vocab_size: int = 30_000,
                            lowercase: bool = True, min_frequency: int = 2, special_tokens: Sequence[str] = (),
                            words_only: bool = True, show_progress: bool = False) -> Tokenizer:
    """A WordPiece or BPE tokenizer of the statistics' words (the pipeline of the module docstring),
    trained on `texts` (any iterable of documents, read once, streamed).

    `special_tokens` come first in the vocabulary, after "[UNK]" (e.g. "[CLS]", "[SEP]", "[PAD]",
    "[MASK]" for an encoder); `words_only=False` keeps punctuation as tokens instead of dropping it.
    Training uses all cores (Rust); the result does not depend on how `texts` is batched.
    """
    def words(tokenizer: Tokenizer) -> None:
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        if words_only:
            steps.append(normalizers.Replace(Regex(_NOT_WORD), " "))
            tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)

    specials = [UNKNOWN_TOKEN] + [t for t in special_tokens if t != UNKNOWN_TOKEN]
    return train_subwords(texts, words, kind=kind, vocab_size=vocab_size, min_frequency=min_frequency,
                          special_tokens=specials, show_progress=show_progress)


def train_subwords(texts: Iterable[str], text_pipeline: Callable[[Tokenizer], None], *, kind: str, vocab_size: int,
                   min_frequency: int, special_tokens: Sequence[str], continuation_prefix: str | None = CONTINUATION_PREFIX,
                   initial_alphabet: Sequence[str] = (), show_progress: bool = False) -> Tokenizer:
    """The one subword trainer: a WordPiece or BPE model learnt from `texts` (read once; blank ones
    skipped) with `special_tokens` (UNKNOWN_TOKEN among them) as ids 0, 1, ... in their order.

    `text_pipeline(tokenizer)` sets what comes around the model (normalizer, pre-tokenizer,
    decoder): the statistics' words above, or an encoder's (firth.workers.encoder.subword). A piece
    that continues a word carries `continuation_prefix` (None: none, as in byte-level BPE, whose
    pieces are bytes); `initial_alphabet` is in the vocabulary whatever the text.
    """
    if kind not in SUBWORD_KINDS:
        raise ValueError(f"tokenizer.kind: unknown subword kind {kind!r}; choose one of {SUBWORD_KINDS} "
                         "(an encoder's is model.tokenizer)")
    if UNKNOWN_TOKEN not in special_tokens:
        raise ValueError(f"subword tokenizer: the special tokens {list(special_tokens)} lack {UNKNOWN_TOKEN!r}")
    if vocab_size <= len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} leaves no room beyond the {len(special_tokens)} special tokens; "
                         "use a few thousand or more")
    prefix = {} if continuation_prefix is None else {"continuing_subword_prefix": continuation_prefix}
    common = dict(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(special_tokens),
                  show_progress=show_progress, **prefix)
    if kind == "wordpiece":
        model = models.WordPiece(unk_token=UNKNOWN_TOKEN, **prefix)
        trainer = trainers.WordPieceTrainer(**common)
    else:
        model = models.BPE(unk_token=UNKNOWN_TOKEN, **prefix)
        trainer = trainers.BpeTrainer(**common, initial_alphabet=list(initial_alphabet))
    tokenizer = Tokenizer(model)
    text_pipeline(tokenizer)
    tokenizer.train_from_iterator(_checked_texts(texts), trainer)
    if tokenizer.get_vocab_size() <= len(special_tokens):
        raise ValueError("subword tokenizer: the training text has no word characters; check corpus.text_field "
                         "and that the shards hold text")
    return tokenizer


def _checked_texts(texts: Iterable[str]) -> Iterator[str]:
    for n, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"subword tokenizer training: document {n} is {type(text).__name__}, not str; "
                            "pass an iterable of document texts")
        if text.strip():  # a blank one adds nothing (byte-level BPE would count its spaces)
            yield text


def corpus_sample(shards: Sequence, corpus_config, max_bytes: int) -> Iterator[str]:
    """Documents from every shard, each shard's first `max_bytes / len(shards)` bytes of text (UTF-8
    length), streamed batch by batch: a bounded sample of the corpus that does not favour the first shards."""
    from firth.pipelines.corpus.shards import ShardReport, iter_documents  # corpus IO is only needed for this helper

    per_shard = max(1, max_bytes // max(1, len(shards)))
    for shard in shards:
        taken = 0
        for batch in iter_documents(shard, corpus_config, ShardReport(shard.uri)):
            texts = batch.texts.to_pylist() if isinstance(batch.texts, (pa.Array, pa.ChunkedArray)) else batch.texts
            for text in texts:
                if not isinstance(text, str):
                    continue  # reported by the statistics pass that reads every record
                yield text
                taken += len(text.encode("utf-8", "surrogatepass"))
                if taken >= per_shard:
                    break
            if taken >= per_shard:
                break


class SubwordTokenizer:
    """A trained subword tokenizer with the regex tokenizer's interface; pickles as its JSON (engines ship it).

        tokens, offsets = SubwordTokenizer(json_text, words=Tokenizer(config))(texts)
        tokens: pa.LargeStringArray, all subword units of all documents in order; offsets: (n_docs + 1,) int64

    Documents are first split into words by `words` (the regex tokenizer: its numba scan for the
    default pattern, lowercasing when the trained model lowercases); each *distinct* word of the
    batch is then segmented once, NFC-normalised, by the model without the rest of its normalizer
    (Rust, all cores), and the pieces are expanded back to every occurrence with numpy. Several
    times faster than running the model's own normalizer over whole documents (Oniguruma regex
    replacement with offset tracking), and the words are exactly the regex tokenizer's. Loaded alone, tokenizer.json tokenises the same words up to the rare
    Unicode categories named in the module docstring.
    """

    def __init__(self, tokenizer_json: str, words: WordTokenizer | None = None):
        self.tokenizer_json = tokenizer_json
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        # The words arrive split and lowercased by `words`: segment them with NFC and the model alone (the
        # full normalizer's regex replacement costs more than the segmentation). Not Arrow's utf8_normalize:
        # pyarrow 25 returns the decomposed form (NFD) whatever form is asked for.
        self._segmenter = Tokenizer.from_str(tokenizer_json)
        self._segmenter.normalizer = normalizers.NFC()
        self._segmenter.pre_tokenizer = None
        lowercase = '"Lowercase"' in json.dumps(json.loads(tokenizer_json).get("normalizer"))
        self.words = words if words is not None else WordTokenizer(TokenizerConfig(lowercase=lowercase))
        vocab = self._tokenizer.get_vocab()  # token -> id, ids dense 0..n-1
        id_to_token = [""] * len(vocab)
        for token, token_id in vocab.items():
            id_to_token[token_id] = token
        self._id_to_token = pa.array(id_to_token, pa.large_string())  # (n_units,)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, words: WordTokenizer | None = None) -> "SubwordTokenizer":
        return cls(tokenizer.to_str(), words)

    def __getstate__(self) -> dict:
        return {"tokenizer_json": self.tokenizer_json, "words": self.words}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["tokenizer_json"], state["words"])

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __call__(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> tuple[pa.LargeStringArray, np.ndarray]:
        words, word_offsets = self.words(texts)  # (n_words,), (n_docs + 1,)
        encoded = words.dictionary_encode()
        word_index = encoded.indices.to_numpy().astype(np.int64)  # (n_words,) into the distinct words
        segmented = self._segmenter.encode_batch(encoded.dictionary.to_pylist(), add_special_tokens=False)
        pieces_per_word = np.fromiter(map(len, segmented), np.int64, len(segmented))  # (n_distinct,)
        first_piece = np.zeros(len(segmented) + 1, np.int64)
        np.cumsum(pieces_per_word, out=first_piece[1:])
        piece_ids = np.fromiter(chain.from_iterable(e.ids for e in segmented), np.int64, int(first_piece[-1]))
        # every occurrence of a word gets its word's pieces: unit u of occurrence t is piece first_piece[w_t] + k
        units_per_occurrence = pieces_per_word[word_index]  # (n_words,)
        unit_offsets = np.zeros(len(word_index) + 1, np.int64)  # (n_words + 1,) into the units
        np.cumsum(units_per_occurrence, out=unit_offsets[1:])
        within = np.arange(unit_offsets[-1]) - np.repeat(unit_offsets[:-1], units_per_occurrence)  # k
        unit_ids = piece_ids[np.repeat(first_piece[word_index], units_per_occurrence) + within]  # (n_units,)
        return self._id_to_token.take(pa.array(unit_ids)), unit_offsets[word_offsets]
