"""Long documents as pieces of at most `corpus.max_document_tokens` words (pipelines/corpus/pieces.py):
exactly the documents of the text cut every N words, whatever the sizes of the reads that feed them."""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from firth.pipelines.corpus import shards
from firth.pipelines.corpus.pieces import WordPieces, split_text
from tests.helpers.statistics import run_statistics


def fed_in_steps(text: bytes, pieces: WordPieces, rng: np.random.Generator) -> list[bytes]:
    out, position = [], 0
    while position < len(text):
        step = int(rng.integers(1, 40))
        out += pieces.feed(text[position:position + step])
        position += step
    return out + pieces.finish()


@pytest.mark.parametrize("seed", range(40))
def test_pieces_are_the_text_cut_every_n_words_whatever_the_reads(seed):
    rng = np.random.default_rng(seed)
    n_words, max_words = int(rng.integers(0, 300)), int(rng.integers(1, 25))
    words = ["".join(rng.choice(list("ab€é'"), int(rng.integers(1, 7)))) for _ in range(n_words)]
    gaps = rng.choice([" ", "  ", "\t", " \r\n", "\x0b"], n_words)
    text = (" " * int(rng.integers(0, 3)) + "".join(w + g for w, g in zip(words, gaps))).encode()
    pieces = fed_in_steps(text, WordPieces(max_words), rng)
    words_bytes = [w.encode() for w in words]
    assert [p.split() for p in pieces] == [words_bytes[k:k + max_words] for k in range(0, n_words, max_words)]
    assert b"".join(pieces).strip() == text.strip()  # nothing but the whitespace around the text is lost
    if n_words:  # (a text without words is left to the reader, which skips blank documents)
        assert split_text(text.decode(), max_words) == [p.decode() for p in pieces]


def test_a_word_longer_than_the_byte_bound_is_cut_at_a_character_boundary():
    text = ("x " + "é" * 10 + " y").encode()  # é: 2 bytes
    pieces = fed_in_steps(text, WordPieces(100, max_bytes=7), np.random.default_rng(0))
    assert pieces == [b"x ", "ééé".encode(), "ééé".encode(), "ééé".encode(), "é y".encode()]
    assert all(len(p) <= 7 for p in pieces)


def test_one_line_of_two_million_words_gives_the_statistics_of_the_same_text_cut_into_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "READ_BYTES", 1 << 16)  # many reads of the line, each cut anywhere
    rng = np.random.default_rng(7)
    words = np.char.add("w", (rng.zipf(1.5, 2_000_003) % 5000).astype(str))
    (tmp_path / "one-line.txt").write_text(" ".join(words) + "\n")
    (tmp_path / "lines.txt").write_text("\n".join(" ".join(words[k:k + 10_000]) for k in range(0, len(words), 10_000))
                                        + "\n")
    settings = dict(window=2, min_count=1, n_buckets=2, cache=False)
    one_line, one_root = run_statistics(tmp_path / "one-line", [str(tmp_path / "one-line.txt")], **settings)
    lines, lines_root = run_statistics(tmp_path / "lines", [str(tmp_path / "lines.txt")], **settings)

    tokens = pq.read_table(one_root / "tokens")
    lengths = pc.list_value_length(tokens["token_ids"]).to_pylist()
    assert lengths == [10_000] * 200 + [3]  # every word is in the vocabulary (min_count 1): exact pieces
    assert tokens["doc_id"].to_pylist()[:3] == ["one-line.txt:1", "one-line.txt:1#1", "one-line.txt:1#2"]
    assert (one_line.n_documents, one_line.n_tokens) == (lines.n_documents, lines.n_tokens) == (201, 2_000_003)
    for name in ["vocabulary.parquet", "idf.parquet", "cooccurrence"]:
        assert pq.read_table(one_root / name).equals(pq.read_table(lines_root / name)), name
    assert pq.read_table(one_root / "tokens").drop(["doc_id"]).equals(
        pq.read_table(lines_root / "tokens").drop(["doc_id"]))
    assert pq.read_table(one_root / "tfidf").drop(["doc_id"]).equals(
        pq.read_table(lines_root / "tfidf").drop(["doc_id"]))
