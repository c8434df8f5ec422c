"""Reading sharded corpora and splitting their documents into tokens (regex words or trained subwords)."""
