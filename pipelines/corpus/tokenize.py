"""The tokenizer: documents → one flat array of tokens plus per-document offsets.

Semantics (scikit-learn's CountVectorizer convention): each document is lowercased with Python's
`str.lower` (when `tokenizer.lowercase`), then every non-empty match of `tokenizer.pattern`
(Python `re`) is one token; a pattern with one capturing group yields the group's text.

    tokens, offsets = Tokenizer(config)(texts)
    tokens: pyarrow LargeStringArray, all tokens of all documents, in order
    offsets: (n_docs + 1,) int64; document d is tokens[offsets[d]:offsets[d + 1]]

Two implementations give identical tokens (tests/pipelines/test_tokenize.py compares them):

- any pattern: `pattern.findall` per document (C loop inside `re`), flattened into one array.
- the default pattern `[^\\W_]+(?:['’][^\\W_]+)*`: a numba scan over the UTF-8 bytes of the Arrow
  text buffer, about 5x faster and creating no Python string per token. A token is a maximal run
  of word characters, where a single apostrophe (' or ’) between two word characters joins them.
  "Word character" is a lookup table built from Python's own `re` (exactly the code points that
  `[^\\W_]` matches in this interpreter), so both implementations agree on every script.

Known quirk, shared with scikit-learn: lowercasing happens before matching, so a character whose
lowercase form is not a word character splits a word ("İstanbul" lowercases to "i̇stanbul" with a
combining dot, U+0307, which `[^\\W_]` does not match → "i", "stanbul").
"""
from __future__ import annotations

import functools
import re
from itertools import chain
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from firth.pipelines.config import DEFAULT_TOKEN_PATTERN, TokenizerConfig

_APOSTROPHES = (ord("'"), 0x2019)  # the joiners of the default pattern


class Tokenizer:
    """Callable on a batch of documents; cheap to construct (the word table is built once per process)."""

    def __init__(self, config: TokenizerConfig | None = None):
        config = config or TokenizerConfig()
        self.lowercase = config.lowercase
        self.pattern = re.compile(config.pattern)
        if self.pattern.groups > 1:
            raise ValueError(f"tokenizer.pattern {config.pattern!r} has {self.pattern.groups} capturing groups; "
                             "at most one is allowed (its text becomes the token): write (?:...) for grouping")
        self._default = config.pattern == DEFAULT_TOKEN_PATTERN

    def __call__(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> tuple[pa.LargeStringArray, np.ndarray]:
        """(tokens, offsets) of `texts`; see the module docstring."""
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            if texts.null_count:
                _raise_not_text(texts.to_pylist())
            if self._default and not self.lowercase:
                return _split_default(_as_large_strings(texts))
            texts = texts.to_pylist()
        try:
            texts = list(map(str.lower, texts)) if self.lowercase else list(texts)
            if self._default:
                try:
                    arrow_texts = pa.array(texts, type=pa.large_string())
                except (pa.ArrowException, UnicodeEncodeError):  # lone surrogates: no UTF-8; `re` skips them
                    return _findall(self.pattern, texts)
                return _split_default(arrow_texts)
            return _findall(self.pattern, texts)
        except TypeError:  # str.lower / findall / pa.array on a non-str document
            _raise_not_text(texts)
            raise


def _findall(pattern: re.Pattern, texts: list[str]) -> tuple[pa.LargeStringArray, np.ndarray]:
    found = list(map(pattern.findall, texts))  # one list of str per document
    counts = np.fromiter(map(len, found), np.int64, len(found))
    tokens = pa.array(list(chain.from_iterable(found)), type=pa.large_string())
    keep = pc.greater(pc.binary_length(tokens), 0)  # a pattern that can match "" yields empty tokens
    if not pc.all(keep).as_py():
        keep_np = keep.to_numpy(zero_copy_only=False)
        tokens = tokens.filter(keep)
        counts = np.bincount(np.repeat(np.arange(len(found)), counts)[keep_np], minlength=len(found))
    offsets = np.zeros(len(found) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return tokens, offsets


def _split_default(texts: pa.LargeStringArray) -> tuple[pa.LargeStringArray, np.ndarray]:
    """The default pattern's tokens by the numba scan (see the module docstring)."""
    _, offsets_buffer, data_buffer = texts.buffers()
    n_docs = len(texts)
    text_offsets = np.frombuffer(offsets_buffer, np.int64, n_docs + 1, texts.offset * 8)  # (n_docs + 1,) bytes
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    token_data, token_offsets, doc_offsets = _scan_words(data, text_offsets, _word_table())
    tokens = pa.LargeStringArray.from_buffers(len(token_offsets) - 1, pa.py_buffer(token_offsets),
                                              pa.py_buffer(token_data))
    return tokens, doc_offsets


@njit(cache=True)
def _scan_words(data, text_offsets, is_word):
    """Tokens of the default pattern in UTF-8 `data`: (token bytes, token byte offsets, doc offsets).

    data: (n_bytes,) uint8; text_offsets: (n_docs + 1,) int64; is_word: (0x110000,) bool.
    """
    n_docs = len(text_offsets) - 1
    n_bytes = text_offsets[n_docs] - text_offsets[0]
    starts = np.empty(n_bytes // 2 + n_docs + 1, np.int64)  # a token and its separator take ≥ 2 bytes
    ends = np.empty_like(starts)
    doc_offsets = np.zeros(n_docs + 1, np.int64)
    n = 0
    for d in range(n_docs):
        b, stop = text_offsets[d], text_offsets[d + 1]
        in_token = False
        apostrophe = False  # in a token, one apostrophe seen after its last word character
        start = end = 0
        while b < stop:
            c = np.int64(data[b])  # decode one code point (Arrow strings are valid UTF-8)
            if c < 0x80:
                size = 1
            elif c < 0xE0:
                size, c = 2, ((c & 0x1F) << 6) | (data[b + 1] & 0x3F)
            elif c < 0xF0:
                size, c = 3, ((c & 0x0F) << 12) | ((data[b + 1] & 0x3F) << 6) | (data[b + 2] & 0x3F)
            else:
                size, c = 4, (((c & 0x07) << 18) | ((data[b + 1] & 0x3F) << 12)
                              | ((data[b + 2] & 0x3F) << 6) | (data[b + 3] & 0x3F))
            if is_word[c]:
                if not in_token:
                    in_token, start = True, b
                end, apostrophe = b + size, False
            elif in_token and not apostrophe and (c == 0x27 or c == 0x2019):
                apostrophe = True  # joins only if a word character follows
            elif in_token:
                starts[n], ends[n] = start, end  # the token ends before any trailing apostrophe
                n += 1
                in_token = apostrophe = False
            b += size
        if in_token:
            starts[n], ends[n] = start, end
            n += 1
        doc_offsets[d + 1] = n
    token_offsets = np.zeros(n + 1, np.int64)
    for t in range(n):
        token_offsets[t + 1] = token_offsets[t] + ends[t] - starts[t]
    token_data = np.empty(token_offsets[n], np.uint8)
    for t in range(n):
        token_data[token_offsets[t]:token_offsets[t + 1]] = data[starts[t]:ends[t]]
    return token_data, token_offsets, doc_offsets


@functools.cache
def _word_table() -> np.ndarray:
    """(0x110000,) bool: the code points Python's `[^\\W_]` matches (built once, ~0.15 s)."""
    table = np.zeros(0x110000, np.bool_)
    for first_code, chars in ((0, "".join(map(chr, range(0xD800)))),
                              (0xE000, "".join(map(chr, range(0xE000, 0x110000))))):
        for m in re.finditer(r"[^\W_]+", chars):
            table[first_code + m.start():first_code + m.end()] = True
    assert not any(table[a] for a in _APOSTROPHES)
    return table


def _as_large_strings(texts: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"tokenizer: documents must be strings, got an Arrow array of {texts.type}; "
                        "read the text column (corpus.text_field) instead")
    try:
        texts.validate(full=True)  # the numba scan trusts the bytes to be valid UTF-8
    except pa.ArrowInvalid as e:
        raise ValueError(f"tokenizer: the batch's Arrow text array is not valid UTF-8 ({e}); "
                         "re-encode the shard as UTF-8") from None
    return texts.cast(pa.large_string())


def _raise_not_text(texts: Sequence) -> None:
    bad = next((k for k, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"tokenizer: document {bad} of the batch is {type(texts[bad]).__name__} "
                        f"({texts[bad]!r:.40}), not str; every document must be text "
                        "(check corpus.text_field, or set corpus.on_bad_record: skip)")
