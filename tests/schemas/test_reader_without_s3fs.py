"""The plain install (no extras) reads S3 stores: without s3fs, `s3://` goes through pyarrow's own
S3 client (schemas/fs.py). Run in a fresh process where s3fs cannot be imported, on moto S3."""
import json
import subprocess
import sys

import numpy as np
import pytest

from firth.schemas.aliases import read_alias
from tests.helpers import ROOT
from tests.helpers.tables import vectors_of, word_table

pytestmark = pytest.mark.slow  # a moto server and a subprocess

READER = """
import json, sys
sys.modules["s3fs"] = None  # as in `pip install firth`: importing s3fs fails
from firth.pipelines.cli.main import main
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore

uri, options = sys.argv[1], json.loads(sys.argv[2])
embeddings = open_embeddings(uri, "words@latest", options)
print(json.dumps({"tables": TableStore(uri, options).tables(), "a": embeddings.vector("w0").tolist(),
                  "neighbors": [t for t, _ in embeddings.neighbors("w0", k=3)]}))
sys.stdout.flush()
code = main(["tables", "promote", "words@1", "--alias", "production", "--store", uri, "--force"])
code |= main(["tables", "list", "--store", uri])
loaded = sorted(m for m, module in sys.modules.items() if module and m.split(".")[0] in {"s3fs", "botocore", "aiobotocore"})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def test_the_reader_reads_and_moves_aliases_on_s3_without_s3fs(s3_store, monkeypatch):
    for k, v in s3_store.storage_options.items():  # `firth tables` takes the S3 settings from the environment
        monkeypatch.setenv(k, v)
    first, second = word_table(50, 4, seed=1), word_table(50, 4, seed=2)
    s3_store.publish("words", first, {})
    s3_store.publish("words", second, {})
    out = subprocess.run([sys.executable, "-c", READER, s3_store.uri, json.dumps(s3_store.storage_options)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    read, done = lines[0], lines[-1]
    assert read["tables"] == ["words"]
    np.testing.assert_array_equal(np.float32(read["a"]), vectors_of(second)[0])  # row 0 is token w0
    assert len(read["neighbors"]) == 3 and "w0" not in read["neighbors"]
    assert done == {"code": 0, "loaded": []}  # no s3fs, no botocore
    assert read_alias(s3_store, "words", "production").version == 1  # written through pyarrow's client
