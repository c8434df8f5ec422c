"""Concurrent first publishes: N rounds of K publisher processes, started at the same instant, each
publishing the first version of a fresh table; on a local directory and on a moto_server S3
endpoint this script starts on 127.0.0.1. It reports the versions that hold anything but exactly
one publisher's rows ("mixed") and the publishes reported successful whose version does not hold
exactly their rows ("lost"). Both must be 0.

    .venv/bin/python benchmarks/publish_races.py                          # 20 rounds x 4, local and S3
    .venv/bin/python benchmarks/publish_races.py --rounds 5 --publishers 2 --backend s3

Every version is read back with deltalake directly (not through TableStore.read, whose checks
would refuse a mixed version) and compared with each publisher's table. The figures go to
benchmarks/results/publish_races.json (command, date, CPU, counts per backend).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

import numpy as np
import pyarrow as pa

from benchmarks.moto import BUCKET, start_moto  # noqa: E402
from benchmarks.results import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "publish_races.json"
DIM = 8


def publisher_table(round_: int, publisher: int) -> pa.Table:
    """Publisher k's table in a round: 40 + k rows w0..w{n-1}, vectors seeded by (round, k)."""
    rows = 40 + publisher
    vectors = np.random.default_rng([round_, publisher]).standard_normal((rows, DIM)).astype(np.float32)
    return pa.table({"token": [f"w{i}" for i in range(rows)], "id": pa.array(np.arange(rows), pa.int32()),
                     "count": pa.array(np.arange(rows, 0, -1), pa.int64()),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM)})


def publish(store_uri: str, options: str, name: str, round_: int, publisher: int) -> None:
    """One publisher process: say "ready" once imported, publish on "go" (stdin), print one JSON line."""
    from firth.schemas.store import TableStore

    store = TableStore(store_uri, json.loads(options))
    table = publisher_table(round_, publisher)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        result = {"version": store.publish(name, table, {"publisher": publisher})}
    except Exception as e:  # counted, not raised: a clean failure is allowed
        result = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)


def contents(store_uri: str, options: dict, name: str) -> tuple[list[pa.Table], list[str]]:
    """Every version of table `name`, rows sorted by id, read with deltalake directly; and the
    commit attempt each version's publish needed (its commit's `firth.attempt`)."""
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    from firth.schemas.fs import join, pyarrow_filesystem

    uri = join(store_uri, "tables", name)
    fs, root = pyarrow_filesystem(uri, options)
    dt = DeltaTable(uri, storage_options=options or None)
    tables = []
    for version in range(dt.version() + 1):
        dt.load_as_version(version)
        tables.append(dt.to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(root, fs)).sort_by("id"))
    attempts = [commit.get("firth.attempt", "?") for commit in sorted(dt.history(), key=lambda c: c["version"])]
    return tables, attempts


def same_rows(stored: pa.Table, table: pa.Table) -> bool:
    if stored.num_rows != table.num_rows or stored["token"].to_pylist() != table["token"].to_pylist():
        return False
    vectors = np.array(stored["vector"].to_pylist(), np.float32)  # (rows, dim)
    expected = table["vector"].combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    return vectors.tobytes() == expected.tobytes()


def run_round(store_uri: str, options: dict, round_: int, publishers: int) -> dict:
    name = f"race-{round_}"
    processes = [subprocess.Popen([sys.executable, __file__, "--publisher", store_uri, json.dumps(options), name,
                                   str(round_), str(k)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for k in range(publishers)]
    for process in processes:  # all imported and holding their tables: then start them at one instant
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        process.stdin.close()
        lines = process.stdout.read().strip().splitlines()
        process.wait(timeout=60)
        results.append(json.loads(lines[-1]) if lines else {"error": f"exit code {process.returncode}"})
    versions, attempts = contents(store_uri, options, name)
    expected = [publisher_table(round_, k) for k in range(publishers)]
    owners = [[k for k in range(publishers) if same_rows(stored, expected[k])] for stored in versions]
    mixed = [v for v, who in enumerate(owners) if len(who) != 1]
    succeeded = [(k, r["version"]) for k, r in enumerate(results) if "version" in r]
    lost = [k for k, v in succeeded if not (0 <= v < len(versions) and owners[v] == [k])]
    claimed = [v for _, v in succeeded]
    return {"versions": len(versions), "mixed": mixed, "succeeded": len(succeeded), "lost": lost,
            "failed": [r["error"] for r in results if "error" in r],
            "claimed_twice": sorted({v for v in claimed if claimed.count(v) > 1}), "attempts": attempts}


def run_backend(backend: str, rounds: int, publishers: int) -> dict:
    moto, folder = None, None
    try:
        if backend == "s3":
            moto, options = start_moto()
            store_uri = f"s3://{BUCKET}/store"
        else:
            folder = tempfile.mkdtemp(prefix="publish-races-")
            store_uri, options = folder, {}
        per_round = []
        for round_ in range(rounds):
            per_round.append(run_round(store_uri, options, round_, publishers))
            print(backend, round_, json.dumps(per_round[-1]), flush=True)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return {"rounds": rounds, "publishers": publishers, "publishes": rounds * publishers,
            "versions": sum(r["versions"] for r in per_round),
            "mixed_versions": sum(len(r["mixed"]) for r in per_round),
            "successful_publishes": sum(r["succeeded"] for r in per_round),
            "lost_successful_publishes": sum(len(r["lost"]) for r in per_round),
            "failed_publishes": sum(len(r["failed"]) for r in per_round),
            "versions_claimed_twice": sum(len(r["claimed_twice"]) for r in per_round),
            "versions_by_commit_attempt": dict(sorted(Counter(a for r in per_round for a in r["attempts"]).items())),
            "failures": sorted({e[:200] for r in per_round for e in r["failed"]})[:5]}


def code_version(folder: Path) -> str:
    """The commit of the checkout `folder` is in, "+ changes" when the working tree differs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + changes" if git("status", "--porcelain", "--", ".") else "")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        store_uri, options, name, round_, publisher = sys.argv[2:7]
        publish(store_uri, options, name, int(round_), int(publisher))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--label", help="what code this measures (default: the git commit of the store module)")
    args = parser.parse_args()
    from firth.schemas import store

    environment = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("PYTHONPATH",) if k in os.environ)
    report = {"command": " ".join(filter(None, [environment, shlex.join([Path(sys.executable).name, *sys.argv])])),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(),
              "code": args.label or code_version(Path(store.__file__).parent), "store_module": store.__file__,
              "backends": {}}
    for backend in (["local", "s3"] if args.backend == "both" else [args.backend]):
        report["backends"][backend] = run_backend(backend, args.rounds, args.publishers)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["backends"], indent=1))


if __name__ == "__main__":
    main()
