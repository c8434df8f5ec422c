#!/usr/bin/env python3
"""Build examples/sample-corpus/ from Debian's python3.11-doc package.

Usage:
    apt-get update && cd "$(mktemp -d)" && apt-get download python3.11-doc
    dpkg -x python3.11-doc_*.deb pkg        # PKG_ROOT is then ./pkg
    python3 /path/to/firth/examples/make_sample_corpus.py pkg /path/to/firth/examples/sample-corpus

PKG_ROOT is the directory the .deb was `dpkg -x`-ed into (it holds usr/share/doc/...);
OUT_DIR receives python-docs-0000.jsonl.gz ... python-docs-0007.jsonl.gz and LICENSE.
Standard library only (tested with CPython 3.11). The same package gives the same bytes
(sorted inputs, fixed shuffle seed, gzip with mtime=0 and no file name).

What goes in (a deterministic subset of the HTML documentation, about 1.1 M tokens):
    tutorial/, reference/, library/, howto/, faq/, using/, extending/, glossary.html
Left out: whatsnew/ (changelogs full of issue numbers), c-api/ (mostly C identifiers),
distutils/, install*/, distributing/, the indexes, search and table-of-contents pages.

How a page becomes documents: only the text inside <div class="body" role="main"> is
kept, so navigation sidebars, headers, footers and the prev/next links are never seen.
Inside it, permalink pilcrows (a.headerlink), section numbers and toctree link lists are
dropped; code examples are kept, with their line breaks. Each second-level <section>
(an h2 and everything under it) is one document with id "<page>#<section id>", e.g.
"library/stdtypes#text-sequence-type-str"; the page's own text outside those sections
(the h1 and its introduction) is one document with id "<page>", e.g. "library/stdtypes".
A document whose text is only its heading, or that has no token, is dropped.

Documents are sorted by id, shuffled with random.Random(SEED), then cut into N_SHARDS
contiguous runs of roughly equal uncompressed size. One JSON object per line:
{"id": ..., "text": ...} (UTF-8, not ASCII-escaped).

LICENSE is the text of the docs' own "History and License" page (license.html), which
states that the documentation is under the PSF License Agreement and its code
examples are also under the Zero-Clause BSD licence.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import sys
from html.parser import HTMLParser

SEED = 20240611
N_SHARDS = 8
SHARD_NAME = "python-docs-{:04d}.jsonl.gz"
HTML_DIR = "usr/share/doc/python3.11/html"
# Top-level folders / pages of HTML_DIR that make up the corpus.
INCLUDED_DIRS = ("tutorial", "reference", "library", "howto", "faq", "using", "extending")
INCLUDED_PAGES = ("glossary.html",)
# Same pattern as firth.pipelines.config.DEFAULT_TOKEN_PATTERN (copied so this script needs
# nothing but the standard library); used only to drop empty documents and to report.
TOKEN_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

BLOCK_TAGS = {"p", "div", "section", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3",
              "h4", "h5", "h6", "pre", "br", "tr", "table", "thead", "tbody", "blockquote",
              "figure", "figcaption", "caption", "hr", "aside", "nav"}
CELL_TAGS = {"td", "th"}
VOID_TAGS = {"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "source"}
# (tag, class word) pairs whose whole subtree is chrome, not content.
SKIP_SUBTREES = {("a", "headerlink"), ("span", "section-number"),
                 ("div", "toctree-wrapper"), ("script", None), ("style", None)}


class PageSections(HTMLParser):
    """Collects the main-body text of one Sphinx page, split by second-level section.

    After close(): self.chunks is a list of (section id or None, text piece) in page
    order; None means "the page's own text" (outside any second-level section).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body_div_depth = 0       # depth of <div>s inside the body div; 0 = outside
        self.found_body = False
        self.skip_tag: str | None = None  # tag of the chrome subtree being skipped
        self.skip_depth = 0
        self.pre_depth = 0            # inside <pre>: keep whitespace as is
        self.cell_depth = 0           # inside <td>/<th>: one table row stays one line
        self.cells_in_row = 0
        self.last_char = "\n"
        self.section_ids: list[str | None] = []  # stack of open <section> ids
        self.chunks: list[tuple[str | None, str]] = []

    def _owner(self) -> str | None:
        # sections[0] is the page (h1); sections[1] is the second level, if open.
        return self.section_ids[1] if len(self.section_ids) >= 2 else None

    def _emit(self, piece: str, collapsible: bool = True) -> None:
        # Prose and separators never start with a space after a space or a line break,
        # so prose lines come out without stray indentation while <pre> text keeps its own.
        if collapsible and self.last_char in " \n":
            piece = piece.lstrip(" ")
        if piece:
            self.chunks.append((self._owner(), piece))
            self.last_char = piece[-1]

    def _block_break(self) -> None:
        # A paragraph inside a table cell must not break the row's line.
        self._emit(" " if self.cell_depth else "\n")

    def handle_starttag(self, tag, attrs):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth += 1
            return
        attr = dict(attrs)
        if not self.body_div_depth:
            if tag == "div" and attr.get("role") == "main":
                self.body_div_depth = 1
                self.found_body = True
            return
        classes = (attr.get("class") or "").split()
        if (tag, None) in SKIP_SUBTREES or any((tag, c) in SKIP_SUBTREES for c in classes):
            if tag not in VOID_TAGS:
                self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "div":
            self.body_div_depth += 1
        elif tag == "section":
            self.section_ids.append(attr.get("id"))
        elif tag == "pre":
            self.pre_depth += 1
        elif tag == "tr":
            self.cells_in_row = 0
        if tag in BLOCK_TAGS:
            self._block_break()
        elif tag in CELL_TAGS:
            self._emit(" | " if self.cells_in_row else " ")
            self.cells_in_row += 1
            self.cell_depth += 1

    def handle_startendtag(self, tag, attrs):
        if self.body_div_depth and self.skip_tag is None and tag in BLOCK_TAGS:
            self._block_break()

    def handle_endtag(self, tag):
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if not self.skip_depth:
                    self.skip_tag = None
            return
        if not self.body_div_depth:
            return
        if tag in BLOCK_TAGS:
            self._block_break()  # emitted before a closing </section> pops its owner
        elif tag in CELL_TAGS:
            self._emit(" ")
            self.cell_depth = max(0, self.cell_depth - 1)
        if tag == "div":
            self.body_div_depth -= 1
        elif tag == "section" and self.section_ids:
            self.section_ids.pop()
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data):
        if not self.body_div_depth or self.skip_tag is not None:
            return
        if self.pre_depth:
            self._emit(data, collapsible=False)
        else:
            self._emit(re.sub(r"\s+", " ", data))  # line breaks inside prose mean nothing


def normalise(text: str) -> str:
    text = "\n".join(ln.rstrip() for ln in text.split("\n"))  # leading space is code's
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def parse_page(path: str) -> list[tuple[str | None, str]]:
    """(owner section id or None, text piece) for the main body of one HTML page."""
    with open(path, encoding="utf-8") as f:
        html = f.read()
    parser = PageSections()
    parser.feed(html)
    parser.close()
    if not parser.found_body:
        raise SystemExit(f"{path}: no <div role=\"main\"> body found; this script expects "
                         "the Sphinx HTML of python3.11-doc (check PKG_ROOT)")
    return parser.chunks


def page_documents(path: str, page_id: str) -> list[tuple[str, str]]:
    """(doc id, text) for one HTML page, in page order; empty documents dropped."""
    pieces: dict[str | None, list[str]] = {}
    for owner, piece in parse_page(path):
        pieces.setdefault(owner, []).append(piece)
    docs = []
    for owner, parts in pieces.items():
        text = normalise("".join(parts).replace("\u00b6", ""))
        # Heading-only documents (a page whose h1 is straight followed by its first h2)
        # carry no prose; one line and no more means just the heading.
        if "\n" not in text or not TOKEN_RE.search(text):
            continue
        doc_id = page_id if owner is None else f"{page_id}#{owner}"
        docs.append((doc_id, text))
    return docs


def html_pages(html_dir: str) -> list[str]:
    """Relative paths of the included pages, sorted (the build order is fixed)."""
    pages = [p for p in INCLUDED_PAGES if os.path.isfile(os.path.join(html_dir, p))]
    for top in INCLUDED_DIRS:
        for dirpath, _, filenames in os.walk(os.path.join(html_dir, top)):
            for fn in filenames:
                if fn.endswith(".html"):
                    pages.append(os.path.relpath(os.path.join(dirpath, fn), html_dir))
    return sorted(p.replace(os.sep, "/") for p in pages)


def write_gzip(path: str, data: bytes) -> None:
    with open(path, "wb") as raw:
        # filename="" and mtime=0 keep the gzip header free of build-time details.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as g:
            g.write(data)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    pkg_root, out_dir = argv
    html_dir = os.path.join(pkg_root, HTML_DIR)
    if not os.path.isdir(html_dir):
        raise SystemExit(f"{html_dir}: not a directory; PKG_ROOT must be where "
                         "python3.11-doc_*.deb was extracted with `dpkg -x DEB PKG_ROOT`")
    docs: list[tuple[str, str]] = []
    for page in html_pages(html_dir):
        docs.extend(page_documents(os.path.join(html_dir, page), page[: -len(".html")]))
    ids = [d for d, _ in docs]
    if len(set(ids)) != len(ids):
        dup = sorted({d for d in ids if ids.count(d) > 1})[:5]
        raise SystemExit(f"duplicate document ids {dup}; section ids are expected to be "
                         "unique within a page")
    docs.sort()
    random.Random(SEED).shuffle(docs)

    lines = [json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in docs]
    line_bytes = [len(ln.encode("utf-8")) for ln in lines]
    total_bytes = sum(line_bytes)
    # Contiguous cut into N_SHARDS runs of about equal uncompressed size.
    bounds, start, acc = [], 0, 0
    for k, size in enumerate(line_bytes):
        acc += size
        if len(bounds) < N_SHARDS - 1 and acc >= total_bytes * (len(bounds) + 1) / N_SHARDS:
            bounds.append((start, k + 1))
            start = k + 1
    bounds.append((start, len(lines)))

    os.makedirs(out_dir, exist_ok=True)
    print("| shard | documents | tokens | JSONL bytes | gzip bytes |")
    print("| --- | ---: | ---: | ---: | ---: |")
    totals = [0, 0, 0, 0]
    for shard, (a, b) in enumerate(bounds):
        path = os.path.join(out_dir, SHARD_NAME.format(shard))
        write_gzip(path, "".join(lines[a:b]).encode("utf-8"))
        row = [b - a, sum(len(TOKEN_RE.findall(t.lower())) for _, t in docs[a:b]),
               sum(line_bytes[a:b]), os.path.getsize(path)]
        totals = [x + y for x, y in zip(totals, row)]
        print(f"| {SHARD_NAME.format(shard)} | " + " | ".join(f"{x:,}" for x in row) + " |")
    print("| **total** | " + " | ".join(f"{x:,}" for x in totals) + " |")

    # The whole licence page, in page order (its sections are not split here).
    license_text = "".join(p for _, p in parse_page(os.path.join(html_dir, "license.html")))
    with open(os.path.join(out_dir, "LICENSE"), "w", encoding="utf-8", newline="\n") as f:
        f.write("Text of usr/share/doc/python3.11/html/license.html (\"History and License\")"
                " from Debian's python3.11-doc package.\n\n")
        f.write(normalise(license_text.replace("\u00b6", "")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
