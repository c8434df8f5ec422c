"""A publisher run as its own process by tests/schemas/test_concurrency.py.

    python tests/schemas/publisher_process.py STORE_URI OPTIONS_JSON SEED START_AT MODE
MODE: "table" publishes word_table(200, 8, SEED) at the wall-clock time START_AT and prints
{"version": v} or {"error": ..., "type": ...}; "slow-stream" publishes a RecordBatchReader that
prints "streaming" after its second batch and then yields a batch every 0.2 s for a minute
(the test kills it with SIGKILL meanwhile).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.helpers

import pyarrow as pa  # noqa: E402

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


def main(store_uri: str, options: str, seed: str, start_at: str, mode: str) -> None:
    store = TableStore(store_uri, json.loads(options))
    if mode == "slow-stream":
        table = check(word_table(3000, 8, int(seed)), embedding_schema(8))
        store.publish("t", pa.RecordBatchReader.from_batches(table.schema, slow_batches(table)), {"seed": int(seed)})
        return
    table = word_table(200, 8, int(seed))
    while time.time() < float(start_at):  # line the publishers up on one instant
        time.sleep(0.001)
    try:
        print(json.dumps({"version": store.publish("t", table, {"seed": int(seed)})}))
    except Exception as e:  # the test asserts on it
        print(json.dumps({"error": str(e), "type": type(e).__name__}))


if __name__ == "__main__":
    main(*sys.argv[1:])
