"""End to end: a tiny encoder job (new BERT + corpus tokenizer, MLM then contrastive on Ray Train,
a worker failure restored from its checkpoint, Ray batch embedding) publishes a document table
with its model, which sentence-transformers loads as it is; `firth search` finds a document by its own text;
the run's report shows retrieval before and after training and the loss per step."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.config import load_config
from firth.pipelines.job import run
from firth.pipelines.ops.report import build_report
from firth.pipelines.ops.run_records import RunLog
from firth.schemas.store import TableStore
from firth.workers.encoder.search import open_search
from tests.helpers import write_job
from tests.helpers.report_pages import Page, assert_round_ticks, documents

pytestmark = pytest.mark.slow  # every test here starts Ray, Dask, Beam, a server or a subprocess


@pytest.fixture
def encoder_config(tmp_path):
    return write_job(tmp_path, {
        "table": "docs",
        "model": {"model": "encoder", "checkpoint": None, "layers": 2, "heads": 2, "hidden_size": 32,
                  "intermediate_size": 64, "vocab_size": 500, "max_length": 64, "mlm_epochs": 1, "epochs": 1,
                  "mlm_documents": 64, "max_pairs": 64, "batch_size": 8, "learning_rate": 1e-3,
                  "holdout_fraction": 0.2, "eval_documents": 20, "num_workers": 2, "embed_workers": 1}},
        shards=1, name="encoder.yaml")


def test_encoder_job_publishes_a_document_table_with_its_model_and_search_finds_a_document(
        encoder_config, tmp_path, capsys, monkeypatch, no_ray):
    monkeypatch.setenv("FIRTH_CACHE", str(tmp_path / "cache"))
    config = load_config(encoder_config)
    marker = tmp_path / "fault"
    published = run(config, fault_injection=str(marker))  # rank 1 fails mid epoch 2: restored from epoch 1
    assert marker.exists() and published.version == 0
    assert "statistics" not in published.timings  # an encoder reads the corpus itself
    import ray

    assert not ray.is_initialized(), "the Ray the trainer started is shut down once the table is built"

    store = TableStore(config.store.uri)
    info = store.info("docs")
    meta = info.metadata
    assert meta["model"] == "encoder" and info.dim == 32 and set(info.artifacts) == {"model"}
    assert [e["phase"] for e in meta["encoder"]["epochs"]] == ["mlm", "contrastive"]
    assert len(meta["training"]["epoch_losses"]) == 2 and all(np.isfinite(meta["training"]["epoch_losses"]))
    assert meta["encoder"]["pooling"] == "mean" and meta["encoder"]["max_length"] == 64
    metrics = meta["metrics"]
    assert {"retrieval_recall_at_10", "retrieval_mrr_at_10", "retrieval_recall_at_10_start", "samples_per_sec"} <= set(metrics)
    assert metrics["eval_queries"] == 20 and 0 <= metrics["retrieval_mrr_at_10"] <= metrics["retrieval_recall_at_10"] <= 1

    table = store.read("docs")
    ids = [json.loads(line)["id"] for line in __import__("gzip").open(next((tmp_path / "corpus").glob("*")), "rt")]
    assert sorted(table.column("doc_id").to_pylist()) == sorted(ids)  # every document once, held-out ones too
    assert set(table.column("chunk").to_pylist()) == {0}
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert not list(Path(config.checkpoint_uri).glob("*")), "checkpoints are removed after publishing"

    # The published model and tokenizer reproduce the published vectors.
    search = open_search(config.store.uri, "docs")
    row = 7
    text = table.column("text")[row].as_py()
    np.testing.assert_allclose(search.encode([text])[0], vectors[row], atol=1e-5)

    # ... and so does sentence-transformers, loading the published folder as it is, for documents
    # shorter and longer than max_length (64 tokens): it cuts them where the table did.
    from sentence_transformers import SentenceTransformer

    folder = store.fetch_artifact("docs", info.version, "model", tmp_path / "artifact")
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    texts = table.column("text").to_pylist()
    lengths = np.array([len(ids) for ids in model.tokenizer(texts, truncation=False)["input_ids"]])
    assert model.max_seq_length == 64 and (lengths > 64).any() and (lengths <= 64).any()
    theirs = model.encode(texts, batch_size=16)  # (rows, 32), normalised as the table's
    assert np.sum(theirs * vectors, axis=1).min() >= 0.9999

    # firth search: a document's own text finds that document first, with cosine 1.
    capsys.readouterr()
    assert main(["search", "docs", text, "-k", "3", "--json", "--store", config.store.uri]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and hits[0]["doc_id"] == table.column("doc_id")[row].as_py()
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert main(["search", "docs", "   ", "--store", config.store.uri]) == 2
    assert "query text is empty" in capsys.readouterr().err

    # The run's report: retrieval before and after training, the contrastive loss per step, the corpus.
    [run_record] = RunLog(store.uri).list("docs")
    page = build_report(store, run_record.run_id)
    retrieval = page.split("<table id=retrieval>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=n>([^<]+)</td><td class=n>([^<]+)</td>", retrieval)
    assert rows == [(name.replace("_at_", "@"), f"{metrics[f'retrieval_{name}_start']:.4f}",
                     f"{metrics[f'retrieval_{name}']:.4f}") for name in ("mrr_at_10", "recall_at_10")]
    contrastive = meta["encoder"]["epochs"][1]
    assert contrastive["loss"] == pytest.approx(np.mean(contrastive["step_losses"]))
    curve = Page(page).find("polyline", **{"data-name": "contrastive"})
    assert len(curve) == 1 and len(curve[0]["points"].split()) == len(contrastive["step_losses"])  # a point per step
    steps = page.split("<svg id=steps-contrastive")[1].split("</svg>")[0]
    assert assert_round_ticks(steps, "x-tick")[-1] >= len(contrastive["step_losses"])
    corpus = dict(re.findall(r"<tr><th>([^<]+)</th><td class=n>([^<]+)</td></tr>",
                             page.split("<table id=corpus>")[1].split("</table>")[0]))
    assert corpus == {"shards read": "1", "documents": f"{documents(sorted((tmp_path / 'corpus').glob('*'))):,}"}


def test_encoder_config_names_a_bad_key_and_the_checkpoint(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("table: t\ncorpus: {shards: [x]}\nmodel: {model: encoder, pooling: max}\n")
    assert main(["run", str(path)]) == 5
    assert "model.pooling" in capsys.readouterr().err
    from firth.workers.encoder.model import resolve_checkpoint

    with pytest.raises(ValueError, match="no config.json"):
        resolve_checkpoint(str(tmp_path))
