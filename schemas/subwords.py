"""fastText subwords: character n-grams, their bucket hash, and the out-of-vocabulary rule.

numpy only: the trainer (workers/word2vec/train.py) and the light consumer (schemas/consumer.py)
both import this, so one piece of code decides which rows make up a word.

- N-grams (Bojanowski et al. 2017, as fastText's `Dictionary::computeSubwords`): the word is
  wrapped in boundary markers `<` `>`; every substring of n characters (Unicode code points,
  min_n <= n <= max_n) is an n-gram, ordered by start then length, the single markers `<` and
  `>` excluded. `ngrams("where", 3, 3)` == ["<wh", "whe", "her", "ere", "re>"]. When max_n
  reaches the wrapped word's length, the whole "<where>" is one of them, as in fastText.
- Bucket: FNV-1a 32-bit over the n-gram's UTF-8 bytes, modulo `buckets`. Bytes are taken as
  *signed* chars before the xor, exactly as fastText's `Dictionary::hash` (and gensim's
  `ft_hash_bytes`) do, so buckets agree with theirs for non-ASCII n-grams too. HASH names it.
- A word's vector is the **mean** of its rows: for an in-vocabulary word its own vector and its
  n-gram bucket vectors (what fastText's `getWordVector` computes); for an out-of-vocabulary
  word the mean of the bucket vectors of its n-grams that exist in the published bucket table
  (buckets no training word touched were never trained and are not published).
"""
from __future__ import annotations

import numpy as np

HASH = "fnv1a32-signed-bytes"  # recorded in a table's metadata: how n-grams map to buckets
FNV_OFFSET, FNV_PRIME = np.uint32(2166136261), np.uint32(16777619)


def ngrams(word: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams of `<word>`, by start position then length (fastText's order)."""
    wrapped = f"<{word}>"
    out = []
    for start in range(len(wrapped)):
        for n in range(min_n, max_n + 1):
            end = start + n
            if end > len(wrapped):
                break
            if n == 1 and (start == 0 or end == len(wrapped)):  # a lone boundary marker
                continue
            out.append(wrapped[start:end])
    return out


def bucket_hashes(grams: list[str]) -> np.ndarray:
    """(len(grams),) uint32 FNV-1a hashes, vectorised over a padded byte matrix."""
    if not grams:
        return np.zeros(0, dtype=np.uint32)
    encoded = [g.encode("utf-8") for g in grams]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    flat = np.frombuffer(b"".join(encoded), dtype=np.int8)
    width = int(lengths.max())
    padded = np.zeros((len(encoded), width), dtype=np.int8)  # (n, longest n-gram in bytes)
    rows = np.repeat(np.arange(len(encoded)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, cols] = flat
    hashes = np.full(len(encoded), FNV_OFFSET, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for col in range(width):
            live = lengths > col
            byte = padded[live, col].astype(np.int32).astype(np.uint32)  # sign-extended, as fastText
            hashes[live] = (hashes[live] ^ byte) * FNV_PRIME
    return hashes


def word_buckets(words: list[str], min_n: int, max_n: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of every word's n-gram buckets: (offsets (len(words)+1,) int64, buckets (total,) int64);
    word w's buckets are `bucket_ids[offsets[w]:offsets[w+1]]`, in `ngrams` order."""
    per_word = [ngrams(w, min_n, max_n) for w in words]
    counts = np.fromiter((len(g) for g in per_word), dtype=np.int64, count=len(per_word))
    offsets = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = [g for grams in per_word for g in grams]
    return offsets, (bucket_hashes(flat) % np.uint32(buckets)).astype(np.int64)


def oov_vector(word: str, bucket_ids: np.ndarray, bucket_vectors: np.ndarray, min_n: int, max_n: int,
               buckets: int) -> np.ndarray | None:
    """(dim,) float32 mean of the vectors of `word`'s n-grams found in the published bucket table,
    or None when none of them is there. bucket_ids: (K,) int64 sorted; bucket_vectors: (K, dim)."""
    _, wanted = word_buckets([word], min_n, max_n, buckets)  # (n-grams,), repeats kept as fastText does
    wanted = wanted[np.isin(wanted, bucket_ids)]
    if len(wanted) == 0:
        return None
    rows = np.searchsorted(bucket_ids, wanted)
    return bucket_vectors[rows].astype(np.float64).mean(axis=0).astype(np.float32)
