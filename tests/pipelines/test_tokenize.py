"""The tokenizer: default-pattern semantics, both implementations agreeing, offsets, bad input."""
import re

import numpy as np
import pyarrow as pa
import pytest

from firth.pipelines.config import DEFAULT_TOKEN_PATTERN, TokenizerConfig
from firth.pipelines.corpus.tokenize import Tokenizer, _findall


def tokenize(texts, **config):
    tokens, offsets = Tokenizer(TokenizerConfig(**config))(texts)
    assert isinstance(tokens, pa.LargeStringArray) and offsets.dtype == np.int64
    return tokens.to_pylist(), offsets.tolist()


def test_unicode_letters_are_word_characters():
    assert tokenize(["Café naïve"]) == (["café", "naïve"], [0, 2])
    tokens = tokenize(["Москва, 東京 and 𝔘𝔫𝔦 — ٣٤!"])[0]
    assert tokens == ["москва", "東京", "and", "𝔘𝔫𝔦", "٣٤"]


def test_apostrophes_join_only_between_word_characters():
    text = "Don't stop: ’tis rock'n'roll, 'quoted' o’clock a''b c'"
    assert tokenize([text])[0] == ["don't", "stop", "tis", "rock'n'roll", "quoted", "o’clock", "a", "b", "c"]


def test_underscores_and_punctuation_split_and_numbers_stay():
    assert tokenize(["snake_case x2 3.14 e-mail"])[0] == ["snake", "case", "x2", "3", "14", "e", "mail"]


def test_lowercase_off_keeps_case():
    assert tokenize(["Hello World, ÉCOLE"], lowercase=False)[0] == ["Hello", "World", "ÉCOLE"]


def test_lowercasing_happens_before_matching():
    # str.lower of the whole text: final sigma by context; "İ" becomes "i" + U+0307, a non-word character
    assert tokenize(["ΟΔΟΣ İstanbul"])[0] == ["οδος", "i", "stanbul"]
    assert tokenize(["Hello World"], pattern="[a-z]+")[0] == ["hello", "world"]


def test_offsets_with_empty_documents_and_empty_batch():
    assert tokenize(["", "a b", "", "  ,. ", "c"]) == (["a", "b", "c"], [0, 0, 2, 2, 2, 3])
    assert tokenize([]) == ([], [0])
    assert tokenize([""], pattern=r"\w+") == ([], [0, 0])


def test_custom_patterns_groups_and_empty_matches():
    assert tokenize(["it's Bob's"], pattern=r"(\w+)'s") == (["it", "bob"], [0, 2])  # the group's text
    assert tokenize(["ab, cd"], pattern=r"\w*") == (["ab", "cd"], [0, 2])  # empty matches dropped
    with pytest.raises(ValueError, match="at most one is allowed"):
        Tokenizer(TokenizerConfig(pattern=r"(\w)(\w)"))


def test_arrow_input_gives_the_same_tokens():
    texts = ["Café X", "", "don't"]
    for lowercase in (True, False):
        expected = tokenize(texts, lowercase=lowercase)
        assert tokenize(pa.array(texts), lowercase=lowercase) == expected
        assert tokenize(pa.chunked_array([pa.array(texts[:1]), pa.array(texts[1:])]), lowercase=lowercase) == expected
        sliced = pa.array(["skipped", *texts, "skipped too"], pa.large_string()).slice(1, 3)  # non-zero offset
        assert tokenize(sliced, lowercase=lowercase) == expected


def test_numba_scan_equals_python_re_on_mixed_scripts():
    rng = np.random.default_rng(7)
    alphabet = list("ab'’ _-.,ΣσİIß1٣\n\t") + [chr(c) for c in rng.integers(0x80, 0x30000, 300)
                                                if not 0xD800 <= c < 0xE000]
    texts = ["".join(rng.choice(alphabet, rng.integers(0, 40))) for _ in range(3000)]
    for lowercase in (True, False):
        tokens, offsets = Tokenizer(TokenizerConfig(lowercase=lowercase))(texts)
        prepared = [t.lower() for t in texts] if lowercase else texts
        reference = [re.findall(DEFAULT_TOKEN_PATTERN, t) for t in prepared]
        assert tokens.to_pylist() == [tok for doc in reference for tok in doc]
        assert np.diff(offsets).tolist() == [len(doc) for doc in reference]
        re_tokens, re_offsets = _findall(re.compile(DEFAULT_TOKEN_PATTERN), prepared)
        assert re_tokens.equals(tokens) and np.array_equal(re_offsets, offsets)


def test_lone_surrogates_fall_back_to_re():
    assert tokenize(["\ud800abc def"]) == (["abc", "def"], [0, 2])


def test_non_text_document_is_named():
    with pytest.raises(TypeError, match="document 1 of the batch is NoneType"):
        Tokenizer()(["ok", None])
    with pytest.raises(TypeError, match="document 2 of the batch is int"):
        Tokenizer(TokenizerConfig(lowercase=False))(["ok", "fine", 3])
    with pytest.raises(TypeError, match="document 0 of the batch is NoneType"):
        Tokenizer()(pa.array([None, "x"], pa.string()))
