"""Per-shard statistics kernels: plain numpy / numba / pyarrow functions, no engine.

An engine maps these over shards and merges the results:

  pass 1 (per shard)   count_words(tokens, offsets) → WordCounts, split by word_buckets(words, n)
          (per bucket) merge_word_counts over shards; build_vocabulary(counts, min_count, None) orders them
          (one task)   the buckets merged in vocabulary order, cut at max_size; idf(doc_counts, n_docs)
  pass 2 (per shard)   encode → ids; term_frequencies → tfidf; CooccurrenceCounter.add per batch,
                       .result(n_buckets) → one Cooc per bucket (i % n_buckets); or, out of core,
                       spill=callback: sorted pieces per bucket as the budget fills, .finish() the rest
  reduce (per bucket)  merge_cooccurrence(the shards' Cooc of that bucket) → Cooc; .x is float32

Modules: words (counts, vocabulary, encode), cooccur (GloVe co-occurrence counts), tfidf, documents
(the (values, offsets) batch shape), runs (sorted (key, value) runs behind the co-occurrence merge),
bucketing (spilled pairs → directed entries per bucket, sorted: the pieces of out-of-core counting).
"""
from firth.pipelines.statistics.kernels.cooccur import (
                                      DEFAULT_MEMORY_BYTES,
                                      Cooc,
                                      CooccurrenceCounter,
                                      cooccurrence,
                                      merge_cooccurrence,
                                      weight_units,
)
from firth.pipelines.statistics.kernels.documents import drop_out_of_vocabulary
from firth.pipelines.statistics.kernels.tfidf import idf, term_frequencies, tfidf
from firth.pipelines.statistics.kernels.words import (
                                      WordCounts,
                                      build_vocabulary,
                                      count_words,
                                      encode,
                                      merge_word_counts,
                                      word_buckets,
)

__all__ = ["DEFAULT_MEMORY_BYTES", "Cooc", "CooccurrenceCounter", "WordCounts", "build_vocabulary",
           "cooccurrence", "count_words", "drop_out_of_vocabulary", "encode", "idf", "merge_cooccurrence",
           "merge_word_counts", "term_frequencies", "tfidf", "weight_units", "word_buckets"]
