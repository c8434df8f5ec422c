"""Reading `firth report` pages in tests: their tags, their chart ticks, and the documents a corpus should report."""
from __future__ import annotations

import gzip
import json
import math
import re
from html.parser import HTMLParser

import numpy as np


class Page(HTMLParser):
    """Every start tag as (tag, attrs), and the text inside each element with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def documents(shards, piece_words: int | None = None) -> int:
    """Documents in the shards; with `piece_words`, a longer one counts as ceil(words / piece_words) pieces
    (corpus.max_document_tokens; the sample has one such document, of 11,169 words)."""
    texts = []
    for shard in shards:
        with gzip.open(shard, "rt") as lines:
            texts += [json.loads(line)["text"] for line in lines if line.strip()]
    return sum(max(1, math.ceil(len(t.split()) / piece_words)) if piece_words else 1 for t in texts)


def assert_round_ticks(svg: str, cls: str) -> list[float]:
    ticks = [float(t) for t in re.findall(rf'<text class={cls} [^>]*>([^<]+)</text>', svg)]
    steps = np.diff(ticks)
    assert len(ticks) >= 2 and np.allclose(steps, steps[0]), ticks  # evenly spaced
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6, ticks  # a step of 1, 2 or 5 x 10^k
    return ticks
