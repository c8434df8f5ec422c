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


def test_the_run_summary_says_what_each_metric_is_and_its_coverage():
    from firth.pipelines.evaluate import describe_metrics

    lines = describe_metrics({"final_loss": 0.0123, "wordsim353_spearman": 0.018, "wordsim353_coverage": 0.17,
                              "simlex999_spearman": -0.005, "simlex999_coverage": 0.251,
                              "analogy_accuracy": 0.012, "analogy_coverage": 0.08, "words_per_sec": 1234.5},
                             "glove", corpus_tokens=1_500_000)
    assert [" ".join(line.split()) for line in lines] == [
        "training loss, last epoch 0.0123",
        "WordSim-353 Spearman ρ 0.0180 over 17 % of its 353 word pairs (1.5 M tokens here; glove reaches 0.4180 "
        "on the 12.9 M-token benchmark corpus, benchmarks/README.md)",
        "SimLex-999 Spearman ρ -0.0050 over 25 % of its 999 word pairs",  # no reference measured for it yet
        "Google analogy accuracy (3CosAdd) 1.2 % over 8 % of its 19,544 questions (1.5 M tokens here; glove "
        "reaches 12.9 % on the 12.9 M-token benchmark corpus, benchmarks/README.md)",
        "training speed, words/s 1,234"]  # coverage on its metric's line, not a line of its own
    encoder = describe_metrics({"retrieval_recall_at_10": 0.75, "retrieval_recall_at_10_start": 0.5,
                                "odd_metric": 2.0}, "encoder")
    assert [" ".join(line.split()) for line in encoder] == [
        "held-out title → body recall@10, after training 0.7500",
        "held-out title → body recall@10, before training 0.5000", "odd_metric 2.0000"]
