"""`firth report RUN_ID`: one self-contained HTML page about a run (inline CSS and SVG, no external assets).

Sections: the run (outcome, version, failing stage and error), stage timings (bars), training
loss per epoch (this run and the table's previous successful run, lines), evaluation metrics
against the previous version, a 2-D PCA projection of the most frequent words, and nearest
neighbours of probe words in this version and the previous one. A failed run gets the first two
sections and its error. Only numpy and the light consumer API are used: no plotting library.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.consumer import Embeddings, open_embeddings
from firth.schemas.store import NotFoundError, TableStore

PCA_WORDS = 150  # most frequent words projected
PCA_LABELS = 60  # of which the first this many carry a label
NEIGHBOURS = 8
_COLOURS = ["#1f6feb", "#d9480f", "#2f9e44", "#862e9c"]
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .bad{color:#cf222e;font-weight:600} .muted{color:#57606a}
.grid{display:flex;flex-wrap:wrap;gap:16px} pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
svg text{font:11px system-ui,sans-serif}
"""


def write_report(store: TableStore, run_id: str, output: str | Path, probes: list[str] | None = None) -> Path:
    """Write the report of `run_id` to `output` (a local file); return its path."""
    page = build_report(store, run_id, probes)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output


def build_report(store: TableStore, run_id: str, probes: list[str] | None = None) -> str:
    log = RunLog(store.uri, store.storage_options)
    record = log.get(run_id)
    previous_run = log.previous_success(record)
    sections = [_summary(record), _timings(record)]
    if record.outcome == "succeeded" and record.version is not None and "token" not in _columns(store, record):
        sections.append("<h2>Embeddings</h2><p class=muted>a document table: the word sections (losses aside) "
                        "do not apply</p>" + _losses(record, previous_run))
    elif record.outcome == "succeeded" and record.version is not None:
        current = open_embeddings(store.uri, f"{record.table}@{record.version}", store.storage_options)
        previous = None
        if record.version > 0:
            try:
                previous = open_embeddings(store.uri, f"{record.table}@{record.version - 1}", store.storage_options)
            except NotFoundError:
                previous = None
        sections += [_losses(record, previous_run), _metrics(current, previous), _projection(current),
                     _neighbours(current, previous, probes or default_probes(current.tokens))]
    title = f"firth run {record.run_id} · {record.table}"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n")


def _columns(store: TableStore, record: RunRecord) -> list[str]:
    from deltalake import DeltaTable  # the schema only, no data

    table = DeltaTable(store.table_uri(record.table), version=record.version,
                       storage_options=store.storage_options or None)
    return [field.name for field in table.schema().fields]


def default_probes(tokens: list[str], n: int = 6) -> list[str]:
    """Probe words when none are given: alphabetic words of 4+ letters among ranks 20-400, evenly spread."""
    candidates = [t for t in tokens[20:400] if t.isalpha() and len(t) >= 4]
    if not candidates:
        return tokens[:n]
    picks = np.linspace(0, len(candidates) - 1, min(n, len(candidates))).round().astype(int)
    return list(dict.fromkeys(candidates[i] for i in picks))


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(n, dim) -> (n, 2): coordinates on the first two principal axes (numpy SVD of the centred rows).
    Each axis's sign is fixed so that its largest-magnitude loading is positive (reproducible pictures)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)  # (n, dim)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(n, dim), dim)
    axes = vt[:2]  # (2, dim)
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    return centred @ (axes * signs[:, None]).T  # (n, 2)


# --- sections -------------------------------------------------------------------------------------


def _summary(record: RunRecord) -> str:
    outcome = f'<span class="{"ok" if record.outcome == "succeeded" else "bad"}">{_e(record.outcome)}</span>'
    version = f"{record.table}@{record.version}" if record.version is not None else "no version published"
    rows = [("run", record.run_id), ("table", version), ("started", record.started_at),
            ("finished", record.updated_at), ("host", record.host), ("shards", str(len(record.shards)))]
    if record.submission_id:
        rows.append(("Ray job", record.submission_id))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    error = ""
    if record.error:
        error = (f"<h2>Failure</h2><p class=bad>stage {_e(record.error.get('stage'))}: "
                 f"{_e(record.error.get('type'))}: {_e(record.error.get('message'))}</p>"
                 f"<pre>{_e(record.error.get('traceback', ''))}</pre>")
    return f"<h1>Run {_e(record.run_id)} {outcome}</h1><table id=summary>{body}</table>{error}"


def _timings(record: RunRecord) -> str:
    if not record.timings:
        return "<h2>Stage timings</h2><p class=muted>no stage finished</p>"
    names, seconds = list(record.timings), np.array(list(record.timings.values()), dtype=float)
    width, bar_h, left = 640, 22, 110
    scale = (width - left - 70) / max(seconds.max(), 1e-9)
    bars = "".join(
        f'<text x="{left - 8}" y="{i * bar_h + 15}" text-anchor="end">{_e(n)}</text>'
        f'<rect x="{left}" y="{i * bar_h + 4}" width="{max(s * scale, 1):.1f}" height="{bar_h - 8}" fill="{_COLOURS[0]}"/>'
        f'<text x="{left + s * scale + 6:.1f}" y="{i * bar_h + 15}">{s:.1f} s</text>'
        for i, (n, s) in enumerate(zip(names, seconds)))
    svg = f'<svg id=timings xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(names) * bar_h + 4}">{bars}</svg>'
    return f"<h2>Stage timings</h2>{svg}<p class=muted>total {seconds.sum():.1f} s</p>"


def _losses(record: RunRecord, previous_run: RunRecord | None) -> str:
    series = {f"this run ({record.run_id})": record.epoch_losses}
    if previous_run is not None and previous_run.epoch_losses:
        series[f"previous run ({previous_run.run_id})"] = previous_run.epoch_losses
    if not record.epoch_losses:
        return "<h2>Training loss</h2><p class=muted>the model reported no per-epoch loss</p>"
    return f"<h2>Training loss</h2>{_line_chart(series, 'epoch', 'loss')}"


def _metrics(current: Embeddings, previous: Embeddings | None) -> str:
    now = current.metadata.get("metrics", {})
    before = previous.metadata.get("metrics", {}) if previous is not None else {}
    header = f"<tr><th>metric</th><th>{_e(current.ref)}</th><th>{_e(previous.ref) if previous else 'previous'}</th><th>change</th></tr>"
    rows = []
    for name in sorted(set(now) | set(before)):
        a, b = now.get(name), before.get(name)
        change = f"{a - b:+.4f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
        rows.append(f"<tr><td>{_e(name)}</td><td class=n>{_number(a)}</td><td class=n>{_number(b)}</td>"
                    f"<td class=n>{change}</td></tr>")
    note = "" if previous is not None else "<p class=muted>first version of the table: nothing to compare with</p>"
    return f"<h2>Evaluation</h2><table id=metrics>{header}{''.join(rows)}</table>{note}"


def _projection(current: Embeddings) -> str:
    n = min(PCA_WORDS, len(current))
    if n < 3:
        return "<h2>Projection</h2><p class=muted>too few words for a projection</p>"
    points = pca_2d(current.vectors[:n].astype(np.float64))  # rows are by frequency: the n most frequent
    width, height, pad = 1000, 560, 30
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    xy = pad + (points - low) / span * np.array([width - 2 * pad - 60, height - 2 * pad])  # (n, 2) pixels
    xy[:, 1] = height - xy[:, 1]  # SVG's y grows downwards
    marks = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_COLOURS[0]}"/>'
        + (f'<text x="{x + 4:.1f}" y="{y - 3:.1f}">{_e(current.tokens[i])}</text>' if i < PCA_LABELS else "")
        for i, (x, y) in enumerate(xy))
    svg = (f'<svg id=projection xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'style="border:1px solid #d0d7de">{marks}</svg>')
    return (f"<h2>Projection</h2><p class=muted>the {n} most frequent words of {_e(current.ref)} on their first two "
            f"principal axes (PCA); the first {min(PCA_LABELS, n)} labelled</p>{svg}")


def _neighbours(current: Embeddings, previous: Embeddings | None, probes: list[str]) -> str:
    tables = []
    for word in probes:
        if word not in current:
            tables.append(f"<div><b>{_e(word)}</b><p class=muted>not in {_e(current.ref)}</p></div>")
            continue
        columns = [(current.ref, current.neighbors(word, NEIGHBOURS))]
        if previous is not None and word in previous:
            columns.append((previous.ref, previous.neighbors(word, NEIGHBOURS)))
        header = "".join(f"<th colspan=2>{_e(ref)}</th>" for ref, _ in columns)
        rows = "".join("<tr>" + "".join(f"<td>{_e(hits[r][0])}</td><td class=n>{hits[r][1]:.3f}</td>"
                                        if r < len(hits) else "<td></td><td></td>" for _, hits in columns) + "</tr>"
                       for r in range(NEIGHBOURS))
        tables.append(f"<div><b>{_e(word)}</b><table class=neighbours data-probe=\"{_e(word)}\">"
                      f"<tr>{header}</tr>{rows}</table></div>")
    return f"<h2>Nearest neighbours</h2><div class=grid>{''.join(tables)}</div>"


# --- drawing --------------------------------------------------------------------------------------


def _line_chart(series: dict[str, list[float]], x_label: str, y_label: str) -> str:
    width, height, left, bottom, top, right = 640, 300, 66, 40, 12, 16
    values = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    longest = max(len(v) for v in series.values())
    y_low, y_high = float(values.min()), float(values.max())
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 1, y_high + 1

    def px(epoch: int, value: float) -> tuple[float, float]:
        x = left + (epoch - 1) / max(longest - 1, 1) * (width - left - right)
        y = top + (y_high - value) / (y_high - y_low) * (height - top - bottom)
        return x, y

    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>',
             f'<text x="10" y="{(height - bottom + top) / 2}" transform="rotate(-90 10 {(height - bottom + top) / 2})" '
             f'text-anchor="middle">{_e(y_label)}</text>']
    for value in np.linspace(y_low, y_high, 5):
        _, y = px(1, value)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.4g}</text>')
    for epoch in sorted({1, longest, *range(1, longest + 1, max(longest // 8, 1))}):
        x, _ = px(epoch, y_low)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{epoch}</text>')
    for k, (name, losses) in reversed(list(enumerate(series.items()))):  # the first series drawn last, on top
        colour = _COLOURS[k % len(_COLOURS)]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (px(e + 1, v) for e, v in enumerate(losses)))
        dash = ' stroke-dasharray="6 4"' if k else ""
        parts.append(f'<polyline class=series data-name="{_e(name)}" fill="none" stroke="{colour}" stroke-width="2"'
                     f'{dash} points="{points}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 14 + 16 * k}" text-anchor="end" fill="{colour}">{_e(name)}</text>')
    return f'<svg id=losses xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ("" if value is None else _e(str(value)))


def _e(text) -> str:
    return html.escape(str(text), quote=True)
