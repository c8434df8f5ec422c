"""Subword tokenizers (pipelines/corpus/subword.py): training, round trip, the regex tokenizer's interface."""
import gzip
import json
import pickle

import numpy as np
import pytest

from firth.pipelines.config import CorpusConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.corpus.subword import SubwordTokenizer, corpus_sample, train_subword_tokenizer
from firth.pipelines.corpus.tokenize import Tokenizer
from firth.pipelines.statistics import kernels

TEXTS = ["The lowest lows were lower than the low tide's lowest mark.",
         "Don't stop: the tokenizer_test tokenizes tokens, Ünïcode café and 123 numbers too!",
         "A lower tide; a higher tide. Tides turn."]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_encode_then_decode_gives_back_the_words_of_the_training_text(kind):
    tokenizer = train_subword_tokenizer(TEXTS * 3, kind=kind, vocab_size=70, min_frequency=1)
    words, word_offsets = Tokenizer()(TEXTS)  # the regex tokenizer's words: the same word definition
    for d, text in enumerate(TEXTS):
        encoding = tokenizer.encode(text, add_special_tokens=False)
        assert any(t.startswith("##") for t in encoding.tokens), "a small vocabulary splits words"
        expected = " ".join(words.slice(word_offsets[d], word_offsets[d + 1] - word_offsets[d]).to_pylist())
        assert tokenizer.decode(encoding.ids) == expected


def test_subword_tokenizer_has_the_regex_tokenizers_interface_and_pickles_as_its_json():
    trained = train_subword_tokenizer(TEXTS, vocab_size=80, min_frequency=1)
    tokenizer = SubwordTokenizer.from_tokenizer(trained)
    tokens, offsets = tokenizer(TEXTS + [""])
    for d, text in enumerate(TEXTS):  # regex words + the model alone = the stored tokenizer.json on whole text
        assert tokens.slice(offsets[d], offsets[d + 1] - offsets[d]).to_pylist() == \
            trained.encode(text, add_special_tokens=False).tokens
    assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(tokens)
    assert offsets[-1] == offsets[-2], "an empty document has no tokens"
    first = tokens.slice(0, offsets[1]).to_pylist()
    assert "".join(t.removeprefix("##") if t.startswith("##") else " " + t for t in first).split() == \
        Tokenizer()(TEXTS[:1])[0].to_pylist()
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy(TEXTS)[0].equals(tokenizer(TEXTS)[0])
    with pytest.raises(TypeError, match="document 1 .* not str"):
        tokenizer(["fine", None])


def test_alphabet_only_vocabulary_gives_hand_counted_unit_statistics():
    # vocab_size 5 = [UNK] + the alphabet {a, b, ##a, ##b}: no merges, every letter is one unit
    tokenizer = SubwordTokenizer.from_tokenizer(
        train_subword_tokenizer(["ab ba", "aab"], kind="wordpiece", vocab_size=5, min_frequency=1))
    tokens, offsets = tokenizer(["ab ba", "aab"])
    assert tokens.to_pylist() == ["a", "##b", "b", "##a", "a", "##a", "##b"]
    counts = kernels.count_words(tokens, offsets)
    assert dict(zip(counts.words.to_pylist(), counts.counts.tolist())) == {"##a": 2, "##b": 2, "a": 2, "b": 1}
    assert dict(zip(counts.words.to_pylist(), counts.doc_counts.tolist())) == {"##a": 2, "##b": 2, "a": 2, "b": 1}


def test_lowercase_off_keeps_case_and_words_only_off_keeps_punctuation():
    cased = train_subword_tokenizer(TEXTS, vocab_size=200, min_frequency=1, lowercase=False)
    assert "The" in cased.encode("The end").tokens
    with_punctuation = train_subword_tokenizer(TEXTS, vocab_size=200, min_frequency=1, words_only=False,
                                               special_tokens=["[CLS]", "[SEP]"])
    assert with_punctuation.encode("tide.", add_special_tokens=False).tokens == ["tide", "."]
    assert with_punctuation.token_to_id("[UNK]") == 0 and with_punctuation.token_to_id("[SEP]") == 2


def test_training_refuses_text_without_words_and_unknown_kinds():
    with pytest.raises(ValueError, match="no word characters"):
        train_subword_tokenizer(["...", "!!"], vocab_size=50)
    with pytest.raises(ValueError, match="tokenizer.kind"):
        train_subword_tokenizer(TEXTS, kind="unigram")
    with pytest.raises(ValueError, match="vocab_size 3 leaves no room beyond the 3 special tokens"):
        train_subword_tokenizer(TEXTS, vocab_size=3, special_tokens=["[CLS]", "[SEP]"])


def test_corpus_sample_takes_a_bounded_share_of_every_shard(tmp_path):
    for s in range(2):
        with gzip.open(tmp_path / f"s{s}.jsonl.gz", "wt") as f:
            for d in range(100):
                f.write(json.dumps({"id": f"{s}-{d}", "text": f"shard{s} doc{d:03d}"}) + "\n")  # 13 bytes each
    config = CorpusConfig(shards=[str(tmp_path / "*.jsonl.gz")])
    sample = list(corpus_sample(list_shards(config), config, max_bytes=130))  # 65 bytes a shard: 5 documents
    assert sample == [f"shard0 doc{d:03d}" for d in range(5)] + [f"shard1 doc{d:03d}" for d in range(5)]
