"""`firth tables ...`: list, show, versions, promote, rollback, gc, export.

    firth tables list [--json]
    firth tables show NAME[@VERSION|@ALIAS|@TIMESTAMP] [--json]
    firth tables versions NAME [--json]
    firth tables promote NAME@VERSION --alias production [--force] [--note TEXT]
    firth tables rollback NAME --alias production
    firth tables gc NAME [--keep N] [--dry-run] [--json]      (also: dead runs' records and scratch)
    firth tables export NAME[@...] OUTPUT [--format word2vec|word2vec-binary|parquet]

The gate rules of `promote` and the default `--keep` of `gc` come from the `promotion:` section
of `--config CONFIG.yaml` (pipelines/config.py), else that section's defaults. Nothing here
imports the training stack.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from firth.pipelines.cli.common import open_store
from firth.pipelines.config import PromotionConfig, load_config

EXPORT_FORMATS = ("word2vec", "word2vec-binary", "parquet")


def add_tables_commands(commands: argparse._SubParsersAction) -> None:
    """Register `tables` and its actions."""
    tables = commands.add_parser("tables", help="list, inspect, promote, roll back, collect and export tables")
    actions = tables.add_subparsers(required=True, metavar="ACTION")

    def action(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help)
        sub.add_argument("--store", help="table store URI (default: $FIRTH_STORE or ./firth-store)")
        sub.add_argument("--config", help="take the store (and promotion rules) from this config file")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(command=lambda args: handler(args, open_store(args)))
        return sub

    action("list", _list, "tables in the store, with their latest version and aliases")
    action("show", _show, "metadata and metrics of a version (latest by default)").add_argument(
        "ref", metavar="NAME[@VERSION|@ALIAS|@TIMESTAMP]")
    action("versions", _versions, "every version of a table, with aliases and what gc removed").add_argument("name")
    promote = action("promote", _promote, "point an alias at a version, behind the quality gate")
    promote.add_argument("ref", metavar="NAME@VERSION")
    promote.add_argument("--alias", required=True, help="e.g. production, staging")
    promote.add_argument("--force", action="store_true", help="promote even when the gate refuses")
    promote.add_argument("--note", default="", help="recorded in the alias's history")
    rollback = action("rollback", _rollback, "move an alias back to its previous target")
    rollback.add_argument("name")
    rollback.add_argument("--alias", required=True)
    rollback.add_argument("--note", default="")
    gc = action("gc", _gc, "remove data files of versions beyond the newest N, keeping aliased ones")
    gc.add_argument("name")
    gc.add_argument("--keep", type=int, help="versions to keep (default: promotion.keep_versions, 10)")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    gc.add_argument("--orphan-grace-hours", type=float, default=24.0,
                    help="remove files no commit names once older than this (default 24)")
    export = action("export", _export, "write a version as word2vec text/binary or one Parquet file")
    export.add_argument("ref", metavar="NAME[@VERSION|@ALIAS|@TIMESTAMP]")
    export.add_argument("output", help="local path or s3:// URI")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="word2vec")


def _promotion(args) -> PromotionConfig:
    return load_config(args.config).promotion if args.config else PromotionConfig()


def _print(args, record, text: str) -> int:
    print(json.dumps(record, default=str) if args.json else text)
    return 0


def _aliases_by_version(store, name: str) -> dict[int, list[str]]:
    from firth.schemas.aliases import list_aliases

    by_version: dict[int, list[str]] = {}
    for alias in list_aliases(store, name).values():
        by_version.setdefault(alias.version, []).append(alias.name)
    return by_version


def _summary(metrics: dict) -> str:
    return "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def _list(args, store) -> int:
    from firth.schemas.aliases import list_aliases

    records = []
    for name in store.tables():
        info = store.info(name)
        aliases = {a.name: a.version for a in list_aliases(store, name).values()}
        records.append({"table": name, "version": info.version, "created_at": str(info.timestamp),
                        "model": info.metadata.get("model"), "vocab_size": info.metadata.get("vocab_size"),
                        "aliases": aliases,
                        "metrics": info.metadata.get("metrics", {})})
    lines = [f"{r['table']}@{r['version']}  {r['model'] or '?'}  vocab={r['vocab_size']}  "
             + " ".join(f"{a}->{v}" for a, v in r["aliases"].items()) + "  " + _summary(r["metrics"])
             for r in records] or [f"no tables in {store.uri}"]
    return _print(args, records, "\n".join(lines))


def _show(args, store) -> int:
    name, version = store.resolve(args.ref)
    info = store.info(name, version)
    if info.version not in store.collected(name):  # a collected version has metadata only
        store.verify(name, info.version)  # refuses a version that is not exactly one publish
    record = {"table": name, "version": info.version, "timestamp": str(info.timestamp), "rows": info.rows,
              "dim": info.dim, "parent": info.parent, "aliases": _aliases_by_version(store, name).get(info.version, []),
              "collected": info.version in store.collected(name), "artifacts": info.artifacts, **info.metadata}
    print(json.dumps(record, indent=None if args.json else 2, default=str))
    return 0


def _versions(args, store) -> int:
    by_version = _aliases_by_version(store, args.name)
    collected = store.collected(args.name)
    versions = store.versions(args.name)
    if versions:
        by_version.setdefault(versions[-1].version, []).insert(0, "latest")
    records = [{"version": v.version, "timestamp": str(v.timestamp), "rows": v.rows, "dim": v.dim,
                "parent": v.parent, "aliases": by_version.get(v.version, []), "collected": v.version in collected,
                "metrics": v.metadata.get("metrics", {})} for v in versions]
    lines = [f"{r['version']:>4}  {r['timestamp'][:19]}  rows={r['rows']}  dim={r['dim']}"
             + (f"  parent={r['parent']}" if r["parent"] else "")
             + (f"  [{', '.join(r['aliases'])}]" if r["aliases"] else "")
             + ("  (collected)" if r["collected"] else "") + "  " + _summary(r["metrics"]) for r in records]
    return _print(args, records, "\n".join(lines))


def _promote(args, store) -> int:
    from firth.schemas.promotion import promote

    result = promote(store, args.ref, args.alias, _promotion(args).rules, force=args.force, note=args.note)
    alias = result.alias
    record = {"table": alias.table, "alias": alias.name, "version": alias.version, "moved": result.moved,
              "forced": result.forced, "gate": result.gate.explain(), "holder": result.gate.holder_version}
    if not result.moved:
        text = f"{alias.table}@{alias.name} already points to version {alias.version}"
    else:
        text = (f"{alias.table}@{alias.name} -> version {alias.version}"
                + (f" (was {result.gate.holder_version})" if result.gate.holder_version is not None else "")
                + (" FORCED past the gate" if result.forced else "") + f"\n  gate: {result.gate.explain()}")
    return _print(args, record, text)


def _rollback(args, store) -> int:
    from firth.schemas.promotion import rollback

    alias = rollback(store, args.name, args.alias, args.note)
    previous = alias.history[-1].previous
    record = {"table": alias.table, "alias": alias.name, "version": alias.version, "from": previous}
    return _print(args, record, f"{alias.table}@{alias.name} -> version {alias.version} (rolled back from {previous})")


def _gc(args, store) -> int:
    from firth.pipelines.ops.scratch import ScratchRoots, collect_dead_runs

    # Runs that died (killed, crashed): their records say "abandoned", their scratch goes.
    roots = (ScratchRoots.of(load_config(args.config)) if args.config
             else ScratchRoots.default(store.uri, args.name, store.storage_options))
    swept = collect_dead_runs(store.uri, args.name, roots, orphan_grace_hours=args.orphan_grace_hours,
                              dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    record = {"table": args.name} | swept.to_json()
    if (swept.abandoned or swept.removed) and args.name not in store.tables():
        lines = [f"{args.name}: no version published yet, no data files to collect"]  # every run so far died
    else:
        lines = _collect_versions(args, store, verb, record)
    if swept.abandoned:
        lines.append(f"{args.name}: {'would mark' if args.dry_run else 'marked'} {len(swept.abandoned)} dead run(s) "
                     f"abandoned: {', '.join(swept.abandoned)}")
    if swept.removed:
        lines.append(f"{args.name}: {verb} {len(swept.removed)} scratch folder(s) of dead runs")
        lines += [f"  {uri}/" for uri in swept.removed]
    return _print(args, record, "\n".join(lines))


def _collect_versions(args, store, verb: str, record: dict) -> list[str]:
    """Retention of the table's versions (schemas/retention.py); adds the plan to `record`."""
    from firth.schemas.retention import collect_garbage

    keep = args.keep if args.keep is not None else _promotion(args).keep_versions
    plan = collect_garbage(store, args.name, keep, dry_run=args.dry_run, orphan_grace_hours=args.orphan_grace_hours)
    record.update(plan.to_json())
    kept = ", ".join(f"{v} ({'; '.join(why)})" for v, why in sorted(plan.kept.items()))
    lines = [f"{args.name}: kept versions {kept}"]
    if not plan.collected and not plan.orphans:
        lines.append(f"{args.name}: nothing to remove")
    if plan.collected:
        lines.append(f"{args.name}: {verb} versions {', '.join(map(str, plan.collected))}: {len(plan.files)} data "
                     f"files ({plan.bytes / 1e6:.1f} MB), {len(plan.artifacts)} artifact folders")
        lines += [f"  {f.uri}" for f in plan.files] + [f"  {a}/" for a in plan.artifacts]
    if plan.orphans:
        lines.append(f"{args.name}: {verb} {len(plan.orphans)} orphans (named by no commit, older than "
                     f"{args.orphan_grace_hours:g} h)")
        lines += [f"  {o}" for o in plan.orphans]
    return lines


def _export(args, store) -> int:
    from firth.schemas.consumer import Documents, open_table

    table = open_table(store.uri, args.ref, store.storage_options)
    if args.format == "parquet":
        table.to_parquet(args.output, storage_options=store.storage_options)
    elif isinstance(table, Documents):
        raise ValueError(f"{table.ref} is a document table; export it with --format parquet")
    else:
        table.to_word2vec(args.output, binary=args.format == "word2vec-binary", storage_options=store.storage_options)
    return _print(args, {"table": table.name, "version": table.version, "format": args.format,
                         "output": args.output, "rows": len(table)},
                  f"wrote {table.ref} ({len(table)} rows, dim {table.dim}) as {args.format} to {args.output}")
