"""`firth report RUN_ID`: one self-contained HTML page about a run (inline CSS and SVG, no external assets).

Sections: the run (outcome, version, failing stage and error), the promotion decision (runs that
asked to promote), the corpus counts, stage timings (bars), training loss per epoch (this run and
the table's previous successful run) and, for encoders, per step, evaluation metrics against the
previous version (regressions in red), retrieval before and after training (encoders), a 2-D PCA
projection of the most frequent words with labels that do not overlap, nearest neighbours of
probe words in this version and the previous one, and last the effective config (as the version
records it). A failed run gets the run, its timings, its config and its error. Only numpy and the
light consumer API are used: no plotting library (drawing: pipelines/ops/report_charts.py).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from firth.pipelines.evaluate import format_metric, metric_info
from firth.pipelines.ops.report_charts import COLOURS, line_chart, scatter
from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.consumer import Embeddings, open_embeddings
from firth.schemas.store import NotFoundError, TableStore, VersionInfo

PCA_WORDS = 150  # most frequent words projected
PCA_LABELS = 60  # of which the first this many get a label where it fits
NEIGHBOURS = 8
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
td.worse{background:#ffebe9;color:#a40e26;font-weight:600} td.better{background:#dafbe1;color:#116329}
.ok{color:#1a7f37;font-weight:600} .bad{color:#cf222e;font-weight:600} .muted{color:#57606a}
.grid{display:flex;flex-wrap:wrap;gap:16px} pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
table.config td{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;max-width:700px;overflow-wrap:anywhere}
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
    published = record.outcome == "succeeded" and record.version is not None
    info = store.info(record.table, record.version) if published else None
    before = _previous_version(store, record) if published else None
    metadata = info.metadata if info is not None else {}
    sections = [_summary(record), _promotion(record), _corpus(record, metadata), _timings(record),
                _losses(record, previous_run)]
    if published:
        sections += [_step_losses(metadata), _metrics(info, before, record), _retrieval(metadata.get("metrics", {}))]
    if published and "token" in _columns(store, record):
        current = open_embeddings(store.uri, f"{record.table}@{record.version}", store.storage_options)
        previous = None
        if before is not None:
            try:
                previous = open_embeddings(store.uri, f"{record.table}@{before.version}", store.storage_options)
            except NotFoundError:  # its files removed by gc
                previous = None
        sections += [_projection(current), _neighbours(current, previous, probes or default_probes(current.tokens))]
    elif published:
        sections.append("<h2>Embeddings</h2><p class=muted>a document table: the word sections (projection, "
                        "neighbours) do not apply</p>")
    sections.append(_config(metadata.get("config") or record.config, "the version" if info else "the run record"))
    title = f"firth run {record.run_id} · {record.table}"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(s for s in sections if s)}</body></html>\n")


def _previous_version(store: TableStore, record: RunRecord) -> VersionInfo | None:
    if not record.version:
        return None
    try:
        return store.info(record.table, record.version - 1)
    except NotFoundError:  # removed by gc
        return None


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


def _promotion(record: RunRecord) -> str:
    decision = record.promotion
    if not decision:
        return ("<h2>Promotion</h2><p class=muted>the run did not promote its version (only "
                "<code>firth run --incremental --alias NAME</code> does, behind the config's promotion gate)</p>")
    verdict = (f'<span class=ok>promoted to {_e(decision["alias"])}</span>' if decision.get("promoted") else
               f'<span class=bad>refused: {_e(decision["alias"])} stays where it was</span>')
    rows = "".join(
        f"<tr><td>{_e(c['metric'])}</td><td class=n>{_number(c['candidate'])}</td><td class=n>{_number(c['holder'])}</td>"
        f"<td>{'higher' if c['higher_is_better'] else 'lower'} is better, tolerance {c['tolerance']:g}</td>"
        f"<td class=\"{'better' if c['passed'] else 'worse'}\">{_e(c['reason'])}</td></tr>"
        for c in decision.get("comparisons", []))
    table = ("<table id=gate><tr><th>metric</th><th>this version</th><th>holder</th><th>rule</th><th>verdict</th></tr>"
             f"{rows}</table>") if rows else "<p class=muted>no rule compared (the alias pointed nowhere yet)</p>"
    return f"<h2>Promotion</h2><p id=promotion>{verdict} — {_e(decision.get('message', ''))}</p>{table}"


def _corpus(record: RunRecord, metadata: dict) -> str:
    corpus, encoder = metadata.get("corpus", {}), metadata.get("encoder", {})

    def count(value) -> str:
        return f"{value:,}" if isinstance(value, int) else f"{len(value):,}" if isinstance(value, list) else "not recorded"

    rows = [("shards read", count(corpus.get("shards", record.shards))),
            ("shards counted", count(corpus.get("processed_shards"))),
            ("shards reused from the cache", count(corpus.get("reused_shards"))),
            ("documents", count(corpus.get("documents", encoder.get("documents")))),
            ("tokens", count(corpus.get("tokens"))),
            ("vocabulary", count(metadata.get("vocab_size"))),
            ("bad records skipped", count(corpus.get("bad_records"))),
            ("empty shards", count(corpus.get("empty_shards"))),
            ("unreadable shards", count(corpus.get("unreadable_shards")))]
    note = ""
    if encoder:
        rows = [(name, value) for name, value in rows if value != "not recorded"]
        note = ("<p class=muted>an encoder reads the corpus itself, without the statistics stage: documents are "
                "those embedded; tokens, shard cache and skipped records are not counted</p>")
    elif not corpus:
        note = ("<p class=muted>the version records no corpus counts</p>" if metadata else
                "<p class=muted>no version published: only the shards the run listed are known</p>")
    body = "".join(f"<tr><th>{_e(k)}</th><td class=n>{_e(v)}</td></tr>" for k, v in rows)
    return f"<h2>Corpus</h2><table id=corpus>{body}</table>{note}"


def _config(config: dict, source: str) -> str:
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in _flatten(config))
    if not rows:
        return f"<h2>Config</h2><p class=muted>{_e(source)} records no config</p>"
    return (f"<h2>Config</h2><p class=muted>the effective config, defaults filled in, as {_e(source)} records it "
            f"(storage options left out)</p><table id=config class=config>{rows}</table>")


def _flatten(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """{"model": {"dim": 8}} -> [("model.dim", "8")]; strings as they are, other values as JSON."""
    rows = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value if isinstance(value, str) else json.dumps(value)))
    return rows


def _timings(record: RunRecord) -> str:
    if not record.timings:
        return "<h2>Stage timings</h2><p class=muted>no stage finished</p>"
    names, seconds = list(record.timings), np.array(list(record.timings.values()), dtype=float)
    width, bar_h, left = 640, 22, 110
    scale = (width - left - 70) / max(seconds.max(), 1e-9)
    bars = "".join(
        f'<text x="{left - 8}" y="{i * bar_h + 15}" text-anchor="end">{_e(n)}</text>'
        f'<rect x="{left}" y="{i * bar_h + 4}" width="{max(s * scale, 1):.1f}" height="{bar_h - 8}" fill="{COLOURS[0]}"/>'
        f'<text x="{left + s * scale + 6:.1f}" y="{i * bar_h + 15}">{s:.1f} s</text>'
        for i, (n, s) in enumerate(zip(names, seconds)))
    svg = f'<svg id=timings xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(names) * bar_h + 4}">{bars}</svg>'
    return f"<h2>Stage timings</h2>{svg}<p class=muted>total {seconds.sum():.1f} s</p>"


def _losses(record: RunRecord, previous_run: RunRecord | None) -> str:
    if not record.epoch_losses:
        return "" if record.outcome != "succeeded" else \
            "<h2>Training loss</h2><p class=muted>the model reported no per-epoch loss</p>"
    series = {f"this run ({record.run_id})": record.epoch_losses}
    if previous_run is not None and previous_run.epoch_losses:
        series[f"previous run ({previous_run.run_id})"] = previous_run.epoch_losses
    if max(len(losses) for losses in series.values()) == 1:  # a chart of single points says nothing
        return f"<h2>Training loss per epoch</h2><p id=losses>one epoch, mean loss {record.epoch_losses[0]:.4f}</p>"
    points = {name: [(e + 1, float(v)) for e, v in enumerate(losses)] for name, losses in series.items()}
    return f"<h2>Training loss per epoch</h2>{line_chart('losses', points, 'epoch', 'loss')}"


def _step_losses(metadata: dict) -> str:
    """The encoder's loss curve per phase (metadata["encoder"]["epochs"][*]["step_losses"]), steps counted
    across the phase's epochs; each point is the mean of `loss_every` steps."""
    epochs = metadata.get("encoder", {}).get("epochs", [])
    if not epochs:
        return ""
    charts = []
    for phase, title in (("contrastive", "Contrastive loss per step"), ("mlm", "Masked-LM loss per step")):
        points, step, every = [], 0, 1
        for epoch in (e for e in epochs if e.get("phase") == phase):
            every = int(epoch.get("loss_every", 1))
            points += [(step + k * every + 1, float(v)) for k, v in enumerate(epoch.get("step_losses", []))]
            step += every * len(epoch.get("step_losses", []))
        if points:
            unit = "step" if every == 1 else f"step (each point: the mean of {every} steps)"
            charts.append(f"<h3>{title}</h3>" + line_chart(f"steps-{phase}", {phase: points}, unit, "loss"))
        elif any(e.get("phase") == phase for e in epochs):
            charts.append(f"<h3>{title}</h3><p class=muted>not recorded (a version published before per-step "
                          "losses were kept)</p>")
    return "<h2>Training loss per step</h2>" + "".join(charts)


def _metrics(info: VersionInfo, before: VersionInfo | None, record: RunRecord) -> str:
    """This version's metrics against the previous version's; a change for the worse (by the config's
    promotion rule for the metric when it has one: beyond its tolerance) is red, for the better green."""
    now, then = info.metadata.get("metrics", {}), (before.metadata.get("metrics", {}) if before else {})
    config = info.metadata.get("config") or record.config
    rules = {r["metric"]: r for r in config.get("promotion", {}).get("rules", [])}
    header = (f"<tr><th>metric</th><th>what</th><th>{_e(record.table)}@{info.version}</th>"
              f"<th>{f'{_e(record.table)}@{before.version}' if before else 'previous'}</th><th>change</th></tr>")
    rows = []
    for name in sorted(set(now) | set(then)):
        a, b = now.get(name), then.get(name)
        change, verdict = "", ""
        if _finite(a) and _finite(b):
            rule = rules.get(name)
            higher = rule["higher_is_better"] if rule else metric_info(name).higher_is_better
            tolerance = rule["tolerance"] if rule else 0.0
            change = f"{100 * (a - b):+.1f} points" if metric_info(name).percent else f"{a - b:+.4f}"
            if higher is not None and a != b:
                worse_by = (b - a) if higher else (a - b)
                verdict = "worse" if worse_by > tolerance else "better" if worse_by < 0 else ""
        rows.append(f"<tr data-metric=\"{_e(name)}\"><td>{_e(name)}</td><td class=muted>{_e(metric_info(name).label)}</td>"
                    f"<td class=n>{_e(format_metric(name, a))}</td><td class=n>{_e(format_metric(name, b))}</td>"
                    f"<td class=\"n {verdict}\">{change}</td></tr>")
    note = ("<p class=muted>red: worse than the previous version (beyond the promotion rule's tolerance, for a metric "
            "with a rule); green: better</p>" if before else
            "<p class=muted>first version of the table: nothing to compare with</p>")
    return f"<h2>Evaluation</h2><table id=metrics>{header}{''.join(rows)}</table>{note}"


def _retrieval(metrics: dict) -> str:
    """Encoders: retrieval of held-out documents by their titles with the starting and the trained encoder."""
    names = sorted(n[:-len("_start")] for n in metrics if n.startswith("retrieval_") and n.endswith("_start"))
    if not names:
        return ""
    rows = []
    for name in names:
        start, end = metrics[name + "_start"], metrics.get(name)
        verdict = "" if not _finite(end) or end == start else "better" if end > start else "worse"
        change = f"{end - start:+.4f}" if _finite(end) else ""
        rows.append(f"<tr><td>{_e(name.removeprefix('retrieval_').replace('_at_', '@'))}</td>"
                    f"<td class=n>{_number(start)}</td><td class=n>{_number(end)}</td>"
                    f"<td class=\"n {verdict}\">{change}</td></tr>")
    queries = metrics.get("eval_queries")
    return ("<h2>Retrieval, before and after training</h2><p class=muted>each held-out document's title is a query "
            f"that must find its own body among {format_metric('eval_queries', queries)} held-out bodies</p>"
            f"<table id=retrieval><tr><th>measure</th><th>before training</th><th>after training</th><th>change</th></tr>"
            f"{''.join(rows)}</table>")


def _projection(current: Embeddings) -> str:
    n = min(PCA_WORDS, len(current))
    if n < 3:
        return "<h2>Projection</h2><p class=muted>too few words for a projection</p>"
    points = pca_2d(current.vectors[:n].astype(np.float64))  # rows are by frequency: the n most frequent
    svg, shown = scatter("projection", points, current.tokens[:n], PCA_LABELS)
    return (f"<h2>Projection</h2><p class=muted>the {n} most frequent words of {_e(current.ref)} on their first two "
            f"principal axes (PCA); {shown} of the {min(PCA_LABELS, n)} most frequent labelled (a label that would "
            f"overlap another is left out)</p>{svg}")


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


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and bool(np.isfinite(value))


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ("" if value is None else _e(str(value)))


def _e(text) -> str:
    return html.escape(str(text), quote=True)
