"""What the statistics stage hands to training: where its tables are and what they hold.

The trainers (firth.workers) read the tables under `uri` (schemas in schemas/tables.py) and need
nothing else of the statistics graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from firth.schemas.fs import join


@dataclass
class StatisticsSummary:
    uri: str
    vocab_size: int
    n_documents: int
    n_tokens: int  # all tokens, before the vocabulary cut
    n_cooccurrence_entries: int
    bad_records: int
    empty_shards: list[str]
    problems: list[str]  # the first few skipped-record messages
    unreadable_shards: list[str] = field(default_factory=list)  # read up to their damage (on_bad_record: skip)
    processed_shards: list[str] = field(default_factory=list)  # URIs read from source in this run
    reused_shards: list[str] = field(default_factory=list)  # URIs whose partial results all came from the cache

    @property
    def cooccurrence_uri(self) -> str:
        return join(self.uri, "cooccurrence")
