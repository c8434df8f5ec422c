"""Acceptance of issue 17: a downstream script in a fresh virtual environment holding only
`deltalake` and `polars` (no firth, no numpy, no pyarrow) reads a table at an alias as a
(rows, dim) float32 matrix (a Polars `Array(Float32, dim)` column; `.to_numpy()` would need numpy).

    .venv/bin/python benchmarks/bare_reader.py --store ./firth-store --ref python-docs-glove@production

It makes the venv in a temporary folder (`python -m venv`, then `pip install deltalake==V polars==V`
at this venv's versions, from pip's configured index and cache), runs
examples/read_without_firth.py there, and compares its answer (version, rows, dim, dtype, first
vector) with firth's `open_embeddings` here. Figures: benchmarks/results/bare_reader.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere, as a script

import numpy as np

from benchmarks.results import save
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--ref", default="python-docs-glove@production")
    args = parser.parse_args()
    wanted = [f"deltalake=={version('deltalake')}", f"polars=={version('polars')}"]
    with tempfile.TemporaryDirectory() as folder:
        python = Path(folder) / "venv" / "bin" / "python"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(python.parent.parent)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted], check=True)
        install_s = time.perf_counter() - start
        packages = sorted(line.split("==")[0].lower() for line in subprocess.run(
            [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout.split())
        probe = "import importlib.util as u; print([m for m in ('firth', 'numpy', 'pyarrow', 'pandas') if u.find_spec(m)])"
        absent = subprocess.run([str(python), "-c", probe],
                                capture_output=True, text=True, check=True, cwd=folder).stdout.strip()
        start = time.perf_counter()
        run = subprocess.run([str(python), str(ROOT / "examples" / "read_without_firth.py"), args.store, args.ref],
                             capture_output=True, text=True, cwd=folder, check=False)
        read_s = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"the bare reader failed:\n{run.stderr}")
    answer = json.loads(run.stdout)
    expected = open_embeddings(args.store, args.ref)
    name, pinned = TableStore(args.store).resolve(args.ref)
    same = (answer["version"] == pinned and (answer["rows"], answer["dim"]) == expected.vectors.shape
            and answer["dtype"] == "Float32"
            and np.array(answer["first"], np.float32).tobytes() == expected.vectors[0].tobytes())
    figures = {"ref": args.ref, "resolved": f"{name}@{pinned}", "bare_answer": {k: answer[k] for k in
               ("version", "rows", "dim", "dtype")}, "firth_shape": list(expected.vectors.shape),
               "same_as_firth": same, "bare_packages": packages, "importable_of_firth_numpy_pyarrow_pandas": absent,
               "venv_and_install_s": round(install_s, 1), "read_s": round(read_s, 2)}
    print(figures)
    save("bare_reader", figures)
    if not same:
        sys.exit("the bare reader's answer differs from firth's")


if __name__ == "__main__":
    main()
