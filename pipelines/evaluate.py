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
