"""Evaluation agrees with gensim's own evaluate_word_pairs (WordSim-353, SimLex-999) and
evaluate_word_analogies."""
import numpy as np
import pytest
from gensim.models import KeyedVectors

from firth.pipelines.evaluate import _gensim_test_data, evaluate


def benchmark_words() -> list[str]:
    words = []  # the analogy words first: the analogy vocabulary is the first `limit` tokens
    for line in _gensim_test_data("questions-words.txt").read_text().splitlines():
        if not line.startswith(":"):
            words += [w.lower() for w in line.split()]
    for name in ("wordsim353.tsv", "simlex999.txt"):
        for line in _gensim_test_data(name).read_text().splitlines():
            if not line.startswith("#"):
                words += [w.lower() for w in line.split("\t")[:2]]
    return list(dict.fromkeys(words))


def test_metrics_equal_gensim_on_the_same_vectors():
    rng = np.random.default_rng(0)
    words = benchmark_words()
    # Drop every 7th word so that coverage < 1, add filler words, and give the capital-country
    # pairs a shared offset so that part of the analogy set is solvable (accuracy well above 0).
    tokens = [w for n, w in enumerate(words) if n % 7] + [f"filler{n}" for n in range(500)]
    vectors = rng.normal(size=(len(tokens), 32)).astype(np.float32)
    index = {t: i for i, t in enumerate(tokens)}
    offset = rng.normal(size=32).astype(np.float32) * 3
    for line in _gensim_test_data("questions-words.txt").read_text().split(": ")[1].splitlines()[1:]:
        capital, country = (w.lower() for w in line.split()[:2])
        if capital in index and country in index:
            vectors[index[country]] = vectors[index[capital]] + offset
    limit = 1000
    ours = evaluate(tokens, vectors, analogy_vocab=limit)

    kv = KeyedVectors(32)
    kv.add_vectors(tokens, vectors)
    _, spearman, oov_percent = kv.evaluate_word_pairs(str(_gensim_test_data("wordsim353.tsv")))
    _, simlex, simlex_oov = kv.evaluate_word_pairs(str(_gensim_test_data("simlex999.txt")))
    accuracy, sections = kv.evaluate_word_analogies(str(_gensim_test_data("questions-words.txt")),
                                                    restrict_vocab=limit)
    total = sections[-1]
    assert ours["wordsim353_spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["wordsim353_coverage"] == pytest.approx(1 - oov_percent / 100, abs=1e-9)
    assert ours["simlex999_spearman"] == pytest.approx(simlex.statistic, abs=1e-6)
    assert ours["simlex999_coverage"] == pytest.approx(1 - simlex_oov / 100, abs=1e-9)
    assert ours["simlex999_coverage"] < 1 and ours["wordsim353_coverage"] < 1  # some pairs dropped
    assert ours["analogy_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert len(total["correct"]) + len(total["incorrect"]) == pytest.approx(
        ours["analogy_coverage"] * 19544, abs=0.5)
    assert 0.02 < ours["analogy_accuracy"] < 1  # the planted analogies are found: the comparison is not 0 == 0
