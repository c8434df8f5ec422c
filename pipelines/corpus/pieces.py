"""Long documents as consecutive pieces of at most `corpus.max_document_tokens` words.

A piece ends before the (N+1)-th, (2N+1)-th, ... word of its document, so the pieces are exactly
the documents the text would give with a line break there (gensim cuts sentences the same way, at
10,000 words). A word is a run of bytes other than ASCII whitespace (space, \\t, \\n, \\v, \\f, \\r):
a cut never splits a UTF-8 character, nor a token of the default tokenizer, nor a word the subword
tokenizers see. A single run longer than MAX_PIECE_BYTES is cut there, at a character boundary.

`WordPieces` takes one document's bytes in fragments of any size (the text reader's bounded reads
of one long line) and hands back each piece as soon as it is complete, so a 300 MB line is never
held whole: at most one piece and one fragment are.
"""
from __future__ import annotations

import numpy as np

MAX_PIECE_BYTES = 1 << 22  # 4 MiB: a piece of N words of ordinary length is far smaller
_SPACE = np.zeros(256, np.bool_)  # (256,) byte -> is ASCII whitespace
_SPACE[[9, 10, 11, 12, 13, 32]] = True


class WordPieces:
    """Split one document at a time into pieces of at most `max_words` words; `feed` its bytes, then `finish`."""

    def __init__(self, max_words: int, max_bytes: int = MAX_PIECE_BYTES):
        if max_words < 1 or max_bytes < 4:
            raise ValueError(f"pieces need max_words >= 1 and max_bytes >= 4, got {max_words}, {max_bytes}")
        self.max_words, self.max_bytes = max_words, max_bytes
        self.pending = bytearray()  # the unfinished piece
        self._words = 0  # words started in `pending`
        self._after_space = True  # the last byte fed was whitespace (or nothing was fed yet)

    def feed(self, data: bytes) -> list[bytes]:
        """The pieces that `data`, the document's next bytes, completes."""
        if not data:
            return []
        space = _SPACE[np.frombuffer(data, np.uint8)]  # (len(data),)
        starts = np.flatnonzero(~space & np.concatenate([[self._after_space], space[:-1]]))  # word starts
        self._after_space = bool(space[-1])
        # starts[k] begins word _words + k + 1 of the pending piece; every max_words-th from
        # word max_words + 1 on begins a new piece
        cuts = starts[self.max_words - self._words::self.max_words]
        if len(cuts) == 0:
            self.pending += data
            self._words += len(starts)
            return self._bounded()
        pieces = [bytes(self.pending) + data[:cuts[0]]]
        pieces += [data[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        self.pending = bytearray(data[cuts[-1]:])
        self._words = len(starts) - int(np.searchsorted(starts, cuts[-1]))
        return [part for piece in pieces for part in self._whole(piece)] + self._bounded()

    def finish(self) -> list[bytes]:
        """The document's last piece (none if only whitespace is left); ready for the next document."""
        last = bytes(self.pending)
        self.pending, self._words, self._after_space = bytearray(), 0, True
        return self._whole(last)

    def _whole(self, piece: bytes) -> list[bytes]:
        if not _has_word(piece):
            return []
        parts, rest = self._split_long(piece)
        return parts + [rest] if _has_word(rest) else parts

    def _bounded(self) -> list[bytes]:
        """Pieces cut from `pending` while it is longer than max_bytes (runs of very long words)."""
        if len(self.pending) <= self.max_bytes:
            return []
        if not _has_word(self.pending):
            self.pending = bytearray()  # whitespace only
            return []
        parts, rest = self._split_long(bytes(self.pending))
        self.pending = bytearray(rest)
        rest_space = _SPACE[np.frombuffer(rest, np.uint8)]
        self._words = int(np.count_nonzero(~rest_space & np.concatenate([[True], rest_space[:-1]])))
        return parts

    def _split_long(self, piece: bytes) -> tuple[list[bytes], bytes]:
        """(parts of at most max_bytes holding a word each, the rest: at most max_bytes) of `piece`, which
        holds a word. A part ends after the last whitespace that fits, or, in a word longer than that,
        at a character boundary; whitespace between two parts goes with the first."""
        parts = []
        while len(piece) > self.max_bytes:
            head = _SPACE[np.frombuffer(piece, np.uint8, count=self.max_bytes)]  # (max_bytes,) is whitespace
            first_word = int(np.argmax(~head))
            spaces_after = np.flatnonzero(head[first_word:])
            if head[first_word] or (first_word and not len(spaces_after)):
                # leading whitespace before a word that does not fit: drop the whitespace
                piece = piece[int(np.argmax(~_SPACE[np.frombuffer(piece, np.uint8)])):]
                continue
            if len(spaces_after):
                cut = first_word + int(spaces_after[-1]) + 1  # after whole words
            else:  # one word fills the bound: cut it, at a character boundary
                cut = self.max_bytes
                while cut > 1 and (piece[cut] & 0xC0) == 0x80:  # a UTF-8 continuation byte
                    cut -= 1
            parts.append(piece[:cut])
            piece = piece[cut:]
            if not _has_word(piece):
                return parts, b""
        return parts, piece


def _has_word(data: bytes) -> bool:
    return not _SPACE[np.frombuffer(data, np.uint8)].all()


def split_text(text: str, max_words: int) -> list[str]:
    """`text` as pieces of at most `max_words` words (one piece, itself, when it is short enough)."""
    if len(text) < 2 * max_words and 4 * len(text) <= MAX_PIECE_BYTES:  # a word and its separator: >= 2 characters
        return [text]
    pieces = WordPieces(max_words)
    return [p.decode("utf-8", "surrogatepass") for p in pieces.feed(text.encode("utf-8", "surrogatepass"))
            + pieces.finish()]
