"""Intrinsic evaluation of word vectors, with the benchmark files shipped inside gensim's wheel.

- Word-pair similarity, WordSim-353 and SimLex-999: Spearman ρ between human scores and cosine
  similarities, over the pairs whose two words are in the vocabulary (as gensim's
  `evaluate_word_pairs`); coverage = pairs used. SimLex-999 scores similarity, not relatedness
  (coast - shore high, cup - coffee low), so it ranks models differently from WordSim-353: the
  second similarity set, which no firth default was tuned on (benchmarks/README.md).
- Google analogies (a : b :: c : ?): 3CosAdd, argmax over the `analogy_vocab` most frequent
  words of cos(v, b̂ − â + ĉ), a, b and c excluded (as gensim's `evaluate_word_analogies`);
  a question is attempted when its four words are among those words; accuracy = correct /
  attempted, coverage = attempted / all questions.
Words are compared lowercased. Nothing here imports gensim itself: only its data files.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def _gensim_test_data(name: str) -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("evaluation needs the gensim package (its wheel ships the benchmark files); "
                           "install firth's dependencies, or set evaluation.enabled: false")
    return Path(spec.submodule_search_locations[0]) / "test" / "test_data" / name


def evaluate(tokens: list[str], vectors: np.ndarray, analogy_vocab: int = 30_000) -> dict[str, float]:
    """tokens: (V,) in id order (most frequent first); vectors: (V, dim)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = {t.lower(): i for i, t in reversed(list(enumerate(tokens)))}  # the most frequent casing wins
    return {**word_pairs(index, unit, "wordsim353.tsv", "wordsim353"),
            **word_pairs(index, unit, "simlex999.txt", "simlex999"), **analogies(index, unit, analogy_vocab)}


def word_pairs(index: dict[str, int], unit: np.ndarray, file: str, name: str) -> dict[str, float]:
    """{name}_spearman and {name}_coverage for a tab-separated (word, word, score) file ('#' comments)."""
    pairs = []
    for line in _gensim_test_data(file).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a.lower(), b.lower(), float(score)))
    known = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
    if len(known) < 2:
        return {f"{name}_spearman": float("nan"), f"{name}_coverage": len(known) / len(pairs)}
    a, b, human = map(np.array, zip(*known))
    cosine = np.einsum("nd,nd->n", unit[a], unit[b])
    return {f"{name}_spearman": float(spearmanr(human, cosine).statistic),
            f"{name}_coverage": len(known) / len(pairs)}


def analogies(index: dict[str, int], unit: np.ndarray, analogy_vocab: int, batch: int = 1024) -> dict[str, float]:
    limit = min(analogy_vocab, len(unit))
    questions, total = [], 0
    for line in _gensim_test_data("questions-words.txt").read_text().splitlines():
        if line.startswith(":") or not line.strip():
            continue
        total += 1
        ids = [index.get(w.lower(), limit) for w in line.split()]
        if max(ids) < limit:
            questions.append(ids)
    if not questions:
        return {"analogy_accuracy": 0.0, "analogy_coverage": 0.0}
    q = np.array(questions)  # (n, 4): a, b, c, expected
    candidates = unit[:limit]  # (limit, dim)
    correct = 0
    for start in range(0, len(q), batch):
        a, b, c, expected = q[start:start + batch].T
        scores = (unit[b] - unit[a] + unit[c]) @ candidates.T  # (batch, limit)
        rows = np.arange(len(a))
        for excluded in (a, b, c):
            scores[rows, excluded] = -np.inf
        correct += int((scores.argmax(axis=1) == expected).sum())
    return {"analogy_accuracy": correct / len(q), "analogy_coverage": len(q) / total}


# --- what the metrics mean (the closing summary of `firth run`, and `firth report`) ----------------

@dataclass(frozen=True)
class Metric:
    label: str  # what it is, in words
    higher_is_better: bool | None  # None: no better or worse (a count, a speed, a coverage)
    percent: bool = False  # a fraction shown as a percentage
    digits: int = 4  # decimals shown
    coverage: str | None = None  # the metric saying over how much of its benchmark it was measured
    benchmark: str = ""  # what the coverage is a fraction of


METRICS = {
    "wordsim353_spearman": Metric("WordSim-353 Spearman ρ", True, coverage="wordsim353_coverage",
                                  benchmark="353 word pairs"),
    "wordsim353_coverage": Metric("WordSim-353 pairs in the vocabulary", None, percent=True),
    "simlex999_spearman": Metric("SimLex-999 Spearman ρ", True, coverage="simlex999_coverage",
                                 benchmark="999 word pairs"),
    "simlex999_coverage": Metric("SimLex-999 pairs in the vocabulary", None, percent=True),
    "analogy_accuracy": Metric("Google analogy accuracy (3CosAdd)", True, percent=True, coverage="analogy_coverage",
                               benchmark="19,544 questions"),
    "analogy_coverage": Metric("Google analogy questions attempted", None, percent=True),
    "final_loss": Metric("training loss, last epoch", False),
    "retrieval_recall_at_10": Metric("held-out title → body recall@10, after training", True),
    "retrieval_mrr_at_10": Metric("held-out title → body MRR@10, after training", True),
    "retrieval_recall_at_10_start": Metric("held-out title → body recall@10, before training", True),
    "retrieval_mrr_at_10_start": Metric("held-out title → body MRR@10, before training", True),
    "eval_queries": Metric("held-out retrieval queries", None, digits=0),
    "training_pairs": Metric("training pairs", None, digits=0),
    "samples_per_sec": Metric("training speed, samples/s", None, digits=1),
    "words_per_sec": Metric("training speed, words/s", None, digits=0),
}

# What each model scored on the benchmark corpus (12.9 M tokens, 72,903 words; benchmarks/README.md):
# (WordSim-353 ρ, analogy accuracy) with the shipped examples' settings.
BENCHMARK_CORPUS_TOKENS = 12.9e6
BENCHMARK_SCORES = {"glove": (0.418, 0.129), "ppmi_svd": (0.543, 0.258), "lsa": (0.455, 0.078),
                    "word2vec": (0.514, 0.256), "fasttext": (0.473, 0.614)}


def metric_info(name: str) -> Metric:
    return METRICS.get(name, Metric(name, None))


def format_metric(name: str, value) -> str:
    if not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if math.isnan(value):  # ρ of fewer than two covered pairs
        return "n/a"
    info = metric_info(name)
    return f"{100 * value:.1f} %" if info.percent else f"{value:,.{info.digits}f}"


def describe_metrics(metrics: dict[str, float], model: str, corpus_tokens: int | None = None) -> list[str]:
    """The closing summary of a run: one line per metric saying what it is, over how much of its
    benchmark it was measured, and (word benchmarks) what the same model reached on the benchmark
    corpus, so that a low figure from a small corpus does not read as a broken run."""
    covered = {metric_info(n).coverage for n in metrics}
    lines = []
    for name, value in metrics.items():
        if name in covered:
            continue  # said on its metric's line
        info = metric_info(name)
        line = f"{info.label:<46} {format_metric(name, value)}"
        if info.coverage and info.coverage in metrics:
            line += f" over {100 * metrics[info.coverage]:.0f} % of its {info.benchmark}"
            reference = BENCHMARK_SCORES.get(model)
            if reference is not None and name in ("wordsim353_spearman", "analogy_accuracy"):  # measured for these
                size = f"{corpus_tokens / 1e6:.1f} M tokens here; " if corpus_tokens else ""
                expected = format_metric(name, reference[0 if name == "wordsim353_spearman" else 1])
                line += (f" ({size}{model} reaches {expected} on the {BENCHMARK_CORPUS_TOKENS / 1e6:.1f} M-token "
                         "benchmark corpus, benchmarks/README.md)")
        lines.append(line)
    return lines
