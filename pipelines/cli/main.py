"""The `firth` command line.

    firth [--quiet | --log-level LEVEL] [--debug] [--version] COMMAND ...
    firth run CONFIG.yaml [--set KEY=VALUE ...] [--store URI] [--incremental [--alias production]] [--json]
    firth tables list | show | versions | promote | rollback | gc | export   (pipelines/cli/tables.py)
    firth neighbors NAME[@VERSION|@ALIAS|@TIMESTAMP] WORD [-k K] [--json]
    firth search NAME[@VERSION|@ALIAS|@TIMESTAMP] "QUERY" ["QUERY" ...] [-k K] [--index exact|hnsw|ivf|auto] [--json]
    firth submit | jobs | runs | report | schedule   (pipelines/cli/ops.py)

The store is `--store`, else `$FIRTH_STORE`, else the store of `--config CONFIG.yaml`, else
./firth-store. S3 credentials and endpoint come from the usual AWS_* environment variables; each
S3 request waits at most $FIRTH_STORE_TIMEOUT_S (15) seconds and is retried $FIRTH_STORE_RETRIES
(2) times, or the config's store.timeout_s / store.retries. A failure is one line on stderr and an
exit code (pipelines/cli/failures.py: 1 internal, 2 bad input, 3 lock held, 4 store unreachable,
5 config, 6 promotion refused, 130/143 interrupted, 141 stdout closed); `firth --debug ...` also
prints the traceback, which always goes to the debug log. Results go to stdout (--json: one JSON
document), log lines to stderr: one per stage and per epoch, progress bars only on a terminal.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from importlib.metadata import version as package_version

from firth.pipelines.cli.common import LOG_LEVELS, configure_output, json_line, open_store
from firth.pipelines.cli.extras import MissingExtra, missing_extra, require
from firth.pipelines.cli.failures import (
    DEBUG_LOG_ENV,
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_GATE_REFUSED,
    closed_pipe,
    debug_log_path,
    report_failure,
    report_interrupt,
)
from firth.pipelines.cli.tables import add_tables_commands
from firth.pipelines.config import load_config
from firth.pipelines.ops import interrupts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, debug, quiet, log_level = _global_flags(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    configure_output(log_level, quiet)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray keeps its node on 127.0.0.1
    # Ray Train polls its workers every 2 s by default, which adds ~5 s to every run's start and end.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    os.environ.setdefault(DEBUG_LOG_ENV, str(debug_log_path()))  # where worker processes put their tracebacks
    try:
        code = args.command(args)
        sys.stdout.flush()  # a reader that closed the pipe shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        return closed_pipe()
    except KeyboardInterrupt as e:  # Ctrl-C, and SIGTERM during a run (pipelines/ops/interrupts.py)
        return report_interrupt(e, _command_words(parser, argv))
    except ModuleNotFoundError as e:
        explained = missing_extra(e)
        if explained is None:
            return report_failure(e, _command_words(parser, argv), args, debug=debug)
        print(f"firth: error: {explained}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MissingExtra as e:
        print(f"firth: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # one line and an exit code per kind; the traceback goes to the debug log
        if interrupts.received():  # what a run raised as the signal stopped it (Ray's error, when Ctrl-C reached it)
            return report_interrupt(e, _command_words(parser, argv))
        return report_failure(e, _command_words(parser, argv), args, debug=debug)


def _global_flags(argv: list[str]) -> tuple[list[str], bool, bool, str]:
    """Take --debug, --quiet and --log-level LEVEL from anywhere on the line (`firth run job.yaml --quiet`
    in a crontab reads as naturally as `firth --quiet run job.yaml`); the parser lists them for --help."""
    rest, debug, quiet, level = [], False, False, "info"
    tokens = iter(argv)
    for token in tokens:
        if token == "--debug":
            debug = True
        elif token in ("--quiet", "-q"):
            quiet = True
        elif token == "--log-level" or token.startswith("--log-level="):
            level = token.partition("=")[2] if "=" in token else next(tokens, "")
            if level.lower() not in LOG_LEVELS:
                rest = ["--log-level", level]  # the parser's own error: choose from ...
                break
            level = level.lower()
        else:
            rest.append(token)
    return rest, debug, quiet, level


def _command_words(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """The (sub)command names in argv, e.g. "tables list", for error messages."""
    words = []
    for token in argv:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if choices is None or (token not in choices and not token.startswith("-")):
            break
        if token in choices:
            words.append(token)
            parser = choices[token]
    return " ".join(words)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firth", description="Sharded corpora to versioned embedding tables.",
                                     epilog=EXIT_CODES_HELP)
    # main() takes --debug, --quiet and --log-level from anywhere on the line (_global_flags)
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a failure (it always goes to the debug log)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="log warnings and errors only (no stage and epoch lines, no progress bars)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="log lines from this level up, on stderr (default: info: a line per stage and epoch)")
    parser.add_argument("--version", action="version", version=f"firth {package_version('firth')}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline of a config and publish a table version")
    run.add_argument("config")
    run.add_argument("--store", help="table store URI (overrides the config and $FIRTH_STORE)")
    run.add_argument("--incremental", action="store_true",
                     help="the nightly run: recount only new and changed shards, publish, and promote the new "
                          "version through the quality gate (every run holds the table's run lock)")
    run.add_argument("--alias", default="production", help="the alias --incremental promotes (default: production)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one config key, e.g. --set model.epochs=3 (repeatable; the value is YAML; "
                          "validated like the file and recorded with the version)")
    run.add_argument("--json", action="store_true",
                     help="print the published version as one JSON object (table, version, metrics, ...)")
    run.set_defaults(command=_run)

    add_tables_commands(commands)

    neighbors = commands.add_parser("neighbors", help="cosine nearest neighbours of a word")
    neighbors.add_argument("ref", metavar="NAME[@VERSION|@ALIAS|@TIMESTAMP]")
    neighbors.add_argument("word")
    neighbors.add_argument("-k", type=int, default=10)
    neighbors.set_defaults(command=_neighbors)

    search = commands.add_parser("search", help="documents most similar to a text (document tables of encoders)")
    search.add_argument("ref", metavar="NAME[@VERSION|@ALIAS|@TIMESTAMP]")
    search.add_argument("queries", nargs="+", metavar="QUERY",
                        help="one or more query texts, each answered with its own k documents")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--index", choices=["exact", "hnsw", "ivf", "auto"], default="exact",
                        help="exact (default) or an approximate FAISS index for large tables")
    search.set_defaults(command=_search)

    for sub in (neighbors, search):
        sub.add_argument("--store", help="table store URI (default: $FIRTH_STORE or ./firth-store)")
        sub.add_argument("--config", help="take the store from this config file")
        sub.add_argument("--json", action="store_true", help="machine-readable output")

    from firth.pipelines.cli.ops import add_commands  # submit, jobs, runs, report, schedule
    add_commands(commands)
    return parser


def _run(args) -> int:
    """One run per table at a time (the store's run lock: a second run exits 3 naming the holder).
    --incremental: the statistics' shard cache makes the counting incremental (only shards it
    has not seen, by content, are read), and the new version is promoted to `--alias` only if it
    passes the config's promotion rules against the holder."""
    config = load_config(args.config, store=args.store, overrides=args.overrides)
    encoder = not getattr(config.model, "needs_statistics", True)
    require("firth run", "stats", "train", *(["encoder"] if encoder else []))
    args.store_uri, args.store_options = config.store.uri, config.store.storage_options  # for error messages
    from firth.pipelines.job import run

    published = run(config, promote_alias=args.alias if args.incremental else None)  # LockHeld: exit 3
    shards = None
    if args.incremental:
        from firth.schemas.store import TableStore

        store = TableStore(config.store.uri, config.store.storage_options)
        corpus = store.info(config.table, published.version).metadata.get("corpus", {})
        shards = {"counted": len(corpus.get("processed_shards", [])), "reused": len(corpus.get("reused_shards", []))}
    if args.json:
        print(json_line({**asdict(published), "shards": shards}))
    else:
        _print_published(config, published)
        if shards is not None:
            print(f"  shards: {shards['counted']} counted, {shards['reused']} reused from the cache")
            print(published.promotion)
    if published.promotion_refused:  # published, not promoted: a nightly job should say so
        print(f"firth: {published.table}@{published.version} {published.promotion}", file=sys.stderr)
        return EXIT_GATE_REFUSED
    return 0


def _print_published(config, published) -> None:
    print(f"published {published.table}@{published.version} to {published.store}")
    for name, seconds in published.timings.items():
        print(f"  {name:<12} {seconds:8.1f} s")
    from firth.pipelines.evaluate import describe_metrics
    from firth.schemas.store import TableStore

    corpus = TableStore(config.store.uri, config.store.storage_options).info(
        published.table, published.version).metadata.get("corpus", {})
    for line in describe_metrics(published.metrics, config.model.model, corpus.get("tokens")):
        print(f"  {line}")  # what each metric is, its coverage, and what to expect of it
    if published.skipped:
        print(f"  skipped: {published.skipped['bad_records']} bad records, "
              f"{len(published.skipped['empty_shards'])} empty shards, "
              f"{len(published.skipped['unreadable_shards'])} unreadable shards (corpus.on_bad_record: skip)")
        for problem in published.skipped["problems"]:
            print(f"    {problem}")
    firth = sys.argv[0] if os.path.basename(sys.argv[0]) == "firth" else "firth"  # e.g. .venv/bin/firth
    query = 'search {} "QUERY TEXT"' if config.model.model == "encoder" else "neighbors {} WORD"
    print(f"next: {firth} {query.format(published.table)} --store {published.store}")
    print(f"run record: {firth} runs show {published.run_id} --store {published.store}  "
          f"(report: {firth} report {published.run_id} --store {published.store})")


def _neighbors(args) -> int:
    from firth.schemas.consumer import open_embeddings

    store = open_store(args)
    embeddings = open_embeddings(store.uri, args.ref, store.storage_options)
    result = embeddings.neighbors(args.word, k=args.k)
    oov = embeddings.is_oov(args.word)  # not in the table: its vector is the mean of its n-grams' (fastText)
    if args.json:
        print(json.dumps({"table": embeddings.ref, "word": args.word, "oov": oov,
                          "neighbors": [{"token": t, "cosine": s} for t, s in result]}))
    else:
        if oov:  # on stderr: stdout stays one line per neighbour
            print(f"note: {args.word!r} is not in {embeddings.ref}; its vector was built from its character "
                  "n-grams", file=sys.stderr)
        for token, score in result:
            print(f"{score:7.4f}  {token}")
    return 0


def _search(args) -> int:
    require("firth search", "train", "encoder")
    from firth.workers.encoder.search import open_search  # torch and transformers load only for this command

    store = open_store(args)
    several = len(args.queries) > 1
    found = open_search(store.uri, args.ref, store.storage_options, index=args.index).search(
        args.queries if several else args.queries[0], k=args.k)
    results = found if several else [found]  # one list of hits per query
    if args.json:  # one document: the hits of one query, or one list of hits per query
        lists = [[hit._asdict() for hit in hits] for hits in results]
        print(json.dumps(lists if several else lists[0]))
        return 0
    for number, (query, hits) in enumerate(zip(args.queries, results)):
        if several:
            print(("\n" if number else "") + f"query {number + 1}: {query}")
        for hit in hits:
            snippet = " ".join((hit.text or "").split())[:80]
            print(f"{hit.score:7.4f}  {hit.doc_id}" + (f"#{hit.chunk}" if hit.chunk else "") + f"  {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
