"""A publisher run as its own process by the concurrency and kill tests in tests/schemas/.

    python tests/schemas/publisher_process.py STORE_URI OPTIONS_JSON MODE [ARGS...]

MODE:
  serve        prints "ready" once imported, then for each stdin line "NAME SEED ROWS" publishes
               word_table(ROWS, 8, SEED) with metadata {"seed": SEED} as the next version of NAME and
               prints {"version": v} or {"error": ..., "type": ...}. The test writes one line to each
               of several such processes at once: they publish at the same instant.
  slow-stream  SEED: publishes a RecordBatchReader that prints "streaming" after its second batch and
               then yields a batch every 0.2 s for a minute (the test kills it with SIGKILL meanwhile).
  kill-before, kill-during, kill-after   SEED [DELAY_S]: publishes word_table(60, 8, SEED) with an
               artifact to table "t", and SIGKILLs itself just before Delta's commit call, DELAY_S
               into it, or just after it returns (before publish returns).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.helpers

import pyarrow as pa  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from firth.schemas.store import TableStore  # noqa: E402
from firth.schemas.tables import check, embedding_schema  # noqa: E402
from tests.helpers.tables import word_table  # noqa: E402


def slow_batches(table: pa.Table):
    for i, batch in enumerate(table.to_batches(max_chunksize=10)):
        yield batch
        if i == 1:
            print("streaming", flush=True)
        if i >= 1:
            time.sleep(0.2)


def serve(store: TableStore) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        name, seed, rows = line.split()
        table = word_table(int(rows), 8, int(seed))
        try:
            result = {"version": store.publish(name, table, {"seed": int(seed)})}
        except Exception as e:  # the test asserts on it
            result = {"error": str(e), "type": type(e).__name__}
        print(json.dumps(result), flush=True)


def die(when: str, delay_s: float, call):
    """`call` (a Delta commit call), with this process SIGKILLed before it, `delay_s` into it, or after it."""
    def killed(*args, **kwargs):
        if when == "kill-before":
            os.kill(os.getpid(), signal.SIGKILL)
        if when == "kill-during":
            threading.Timer(delay_s, os.kill, (os.getpid(), signal.SIGKILL)).start()
        result = call(*args, **kwargs)
        if when == "kill-after":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # "kill-during" whose commit returned before the timer: the timer still kills it
        return result
    return killed


def main(store_uri: str, options: str, mode: str, *args: str) -> None:
    store = TableStore(store_uri, json.loads(options))
    if mode == "serve":
        serve(store)
    elif mode == "slow-stream":
        table = check(word_table(3000, 8, int(args[0])), embedding_schema(8))
        store.publish("t", pa.RecordBatchReader.from_batches(table.schema, slow_batches(table)), {"seed": int(args[0])})
    else:
        from firth.schemas import commit

        delay_s = float(args[1]) if len(args) > 1 else 0.0
        DeltaTable.create_write_transaction = die(mode, delay_s, DeltaTable.create_write_transaction)
        commit.create_table_with_add_actions = die(mode, delay_s, commit.create_table_with_add_actions)
        store.publish("t", word_table(60, 8, int(args[0])), {"seed": int(args[0])}, artifacts={"note.txt": b"killed"})


if __name__ == "__main__":
    main(*sys.argv[1:])
