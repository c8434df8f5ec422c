"""The HTML run report: self-contained, and showing the right numbers (parsed with html.parser)."""
import html
import re

import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

from firth.pipelines.cli.failures import EXIT_GATE_REFUSED
from firth.pipelines.cli.main import main
from firth.pipelines.ops.report import build_report, default_probes, pca_2d
from firth.pipelines.ops.report_charts import format_tick, label_box, nice_ticks, place_labels
from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.promotion import promote
from firth.schemas.store import TableStore
from firth.schemas.tables import embedding_schema
from tests.helpers import SAMPLE_SHARDS, write_job
from tests.helpers.report_pages import Page, documents

FRUITS = ["apple", "apricot", "banana", "cherry", "grape", "melon"]
VEHICLES = ["car", "bus", "train", "truck", "bicycle", "tram"]


def _change_class(page: Page, metric: str) -> str:
    """The class of the "change" cell of `metric`'s row in the metrics table."""
    tags = [t for t in page.tags if t[0] in ("tr", "td")]
    row = next(i for i, (tag, attrs) in enumerate(tags) if tag == "tr" and attrs.get("data-metric") == metric)
    return tags[row + 5][1]["class"]  # name, what, this version, previous, change


def _vectors(seed: int) -> np.ndarray:
    """(12, 4): fruits around axis 0, vehicles around axis 1; apricot almost equals apple."""
    rng = np.random.default_rng(seed)
    base = np.zeros((12, 4), np.float32)
    base[:6, 0], base[6:, 1] = 1.0, 1.0
    vectors = base + 0.2 * rng.standard_normal((12, 4)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01
    return vectors


def _publish(store: TableStore, vectors: np.ndarray, metrics: dict) -> int:
    tokens = FRUITS + VEHICLES
    table = pa.table({"token": tokens, "id": pa.array(range(12), pa.int32()),
                      "count": pa.array(range(100, 88, -1), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4)},
                     schema=embedding_schema(4))
    return store.publish("fruit", table, {"metrics": metrics})


@pytest.fixture
def store_with_runs(tmp_path):
    store = TableStore(str(tmp_path / "store"))
    log = RunLog(store.uri)
    _publish(store, _vectors(0), {"wordsim353_spearman": 0.5, "analogy_accuracy": 0.3})
    _publish(store, _vectors(1), {"wordsim353_spearman": 0.7, "analogy_accuracy": 0.2, "final_loss": 0.1})
    runs = [RunRecord("20260101T000000000-aaaa", "fruit", "succeeded", "s", "u", {}, timings={"statistics": 2.0},
                      epoch_losses=[3.0, 2.0], version=0),
            RunRecord("20260102T000000000-bbbb", "fruit", "succeeded", "s", "u", {},
                      timings={"statistics": 2.0, "training": 5.0, "publish": 0.5},
                      epoch_losses=[3.0, 2.0, 1.0], version=1),
            RunRecord("20260103T000000000-cccc", "fruit", "failed", "s", "u", {}, timings={"statistics": 1.0},
                      error={"stage": "training", "type": "RuntimeError", "message": "worker <died>", "traceback": ""})]
    for record in runs:
        log.write(record)
    return store


def test_the_report_is_self_contained_and_shows_timings_losses_metrics_projection_and_neighbours(store_with_runs):
    page = Page(build_report(store_with_runs, "20260102T000000000-bbbb", probes=["apple", "bus", "zebra"]))
    # self-contained: nothing fetched (the SVG namespace is a name, not a request)
    assert not [t for t, a in page.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    assert len(page.find("style")) == 1
    for section in ("summary", "timings", "losses", "metrics", "projection"):
        assert page.find("table" if section in ("summary", "metrics") else "svg", id=section), section

    assert len(page.find("rect")) == 3  # one bar per stage
    lines = {a["data-name"]: a["points"].split() for a in page.find("polyline")}
    assert {name.split("(")[1].rstrip(")"): len(points) for name, points in lines.items()} == {
        "20260102T000000000-bbbb": 3, "20260101T000000000-aaaa": 2}  # this run and the previous one

    text = " ".join(" ".join(page.text).split())
    assert "wordsim353_spearman WordSim-353 Spearman ρ 0.7000 0.5000 +0.2000" in text  # against the previous version
    assert "analogy_accuracy Google analogy accuracy (3CosAdd) 20.0 % 30.0 % -10.0 points" in text
    assert "final_loss training loss, last epoch 0.1000" in text
    assert _change_class(page, "wordsim353_spearman") == "n better" and _change_class(page, "analogy_accuracy") == "n worse"
    assert _change_class(page, "final_loss") == "n "  # nothing to compare with

    assert len(page.find("circle")) == 12  # every word (fewer than PCA_WORDS) projected
    neighbour_tables = [a["data-probe"] for a in page.find("table", **{"class": "neighbours"})]
    assert neighbour_tables == ["apple", "bus"] and "zebra not in fruit@1" in text
    apple = text.split("apple fruit@1 fruit@0", 1)[1].split()
    assert apple[0] == "apricot" and apple[2] == "apricot"  # nearest in both versions, scores between
    assert set(apple[0:10:2]) <= set(FRUITS)  # the 5 best are all fruits


def test_a_failed_run_reports_its_stage_and_error_without_embeddings(store_with_runs, tmp_path, capsys):
    output = tmp_path / "out" / "failed.html"
    assert main(["report", "20260103T000000000-cccc", "-o", str(output), "--store", store_with_runs.uri]) == 0
    page = Page(output.read_text())
    text = " ".join(" ".join(page.text).split())
    assert "stage training: RuntimeError: worker <died>" in text  # escaped in the file, text again when parsed
    assert "<died>" not in output.read_text()
    assert not page.find("svg", id="projection") and page.find("svg", id="timings")


def test_pca_matches_scikit_learn_up_to_the_sign_of_each_axis():
    vectors = np.random.default_rng(3).standard_normal((50, 6))
    ours = pca_2d(vectors)
    theirs = PCA(n_components=2, svd_solver="full").fit_transform(vectors)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-9)
    line = np.outer(np.arange(5.0), [1.0, 2.0, 2.0])  # points on a line: all variance on axis 1
    projected = pca_2d(line)
    np.testing.assert_allclose(projected[:, 1], 0, atol=1e-9)
    np.testing.assert_allclose(np.diff(projected[:, 0]), 3.0)  # |(1, 2, 2)| = 3 apart, increasing


def test_default_probes_are_alphabetic_words_spread_over_the_frequent_ranks():
    tokens = [f"w{i}" for i in range(20)] + ["the", "a1", "python", "os", "module", "list"] * 10
    probes = default_probes(tokens, n=3)
    assert len(probes) <= 3 and set(probes) <= {"python", "module", "list"}


def test_a_document_table_run_gets_no_word_sections(tmp_path):
    from firth.schemas.tables import document_embedding_schema

    store = TableStore(str(tmp_path / "store"))
    table = pa.table({"doc_id": ["a", "b"], "chunk": pa.array([0, 0], pa.int32()), "text": ["x", "y"],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(6, np.float32)), 3)},
                     schema=document_embedding_schema(3))
    version = store.publish("docs", table, {})
    RunLog(store.uri).write(RunRecord("20260101T000000000-dddd", "docs", "succeeded", "s", "u", {},
                                      timings={"training": 1.0}, version=version))
    page = Page(build_report(store, "20260101T000000000-dddd"))
    assert "a document table" in " ".join(page.text)
    assert not page.find("svg", id="projection") and not page.find("table", **{"class": "neighbours"})


def test_ticks_are_round_numbers_covering_the_range():
    assert nice_ticks(0.0, 0.09495) == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    assert nice_ticks(0.0, 0.09495, 3) == [0.0, 0.05, 0.1]
    assert nice_ticks(0.04, 0.09495) == [0.04, 0.06, 0.08, 0.1]
    assert nice_ticks(2.31, 3.07) == [2.2, 2.4, 2.6, 2.8, 3.0, 3.2]
    assert nice_ticks(-0.3, 0.3) == [-0.4, -0.2, 0.0, 0.2, 0.4]
    assert nice_ticks(1, 3, 9, integer=True) == [1, 2, 3]  # epochs: never a step below 1
    assert nice_ticks(1, 37, 9, integer=True) == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert nice_ticks(1, 1, integer=True) == [0, 1, 2]  # one epoch: a range around it
    assert nice_ticks(5.0, 5.0) == [2, 4, 6, 8]
    assert [format_tick(v) for v in nice_ticks(0.0, 0.09495, 3)] == ["0", "0.05", "0.1"]
    assert [format_tick(v) for v in nice_ticks(0, 1500)] == ["0", "500", "1000", "1500"]
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, float("nan"))


def _label_boxes(page_html: str) -> list[tuple[float, float, float, float]]:
    """The box of every <text class=label> of the page (its x, y, text-anchor and word), by the report's estimate."""
    labels = re.findall(r'<text class=label x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)">([^<]*)</text>', page_html)
    return [label_box(float(x), float(y), html.unescape(word), anchor) for x, y, anchor, word in labels]


def _assert_apart(boxes, width, height):
    for k, a in enumerate(boxes):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= width and a[3] <= height, a
        for b in boxes[k + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_labels_are_placed_without_overlapping_or_left_out():
    rng = np.random.default_rng(0)
    words = [f"word{i:03d}" for i in range(200)]
    crowd = rng.normal(300, 40, size=(200, 2))  # 200 labels in a small area: most cannot fit
    placed = place_labels(crowd, words, 600, 600)
    boxes = [label_box(x, y, words[i], anchor) for i, x, y, anchor in placed]
    _assert_apart(boxes, 600, 600)
    assert 20 < len(placed) < 200 and placed[0][0] == 0  # the most important label always gets a place
    same_point = place_labels(np.full((10, 2), 100.0), ["same"] * 10, 600, 600)
    assert [anchor for *_, anchor in same_point] == ["start", "start", "end", "end"]  # the 4 corners; then no room
    spread = np.column_stack([np.arange(10) * 55 + 10, np.arange(10) * 50 + 30])  # a diagonal, well apart
    assert len(place_labels(spread, words[:10], 600, 600)) == 10
    dotted = place_labels(np.array([[100.0, 100.0]]), ["word"], 600, 600, dots=np.array([[100.0, 100.0], [110.0, 95.0]]))
    assert dotted == [(0, 104.0, 112.0, "start")]  # right of the point but below it: above, a dot was in the way
    # the estimate is a box, not a point: labels that would touch are not both kept
    assert len(place_labels(np.array([[100.0, 100.0], [110.0, 100.0]]), ["longer", "longer"], 120, 112)) == 1


def test_the_projection_labels_in_a_report_do_not_overlap(store_with_runs):
    text = build_report(store_with_runs, "20260102T000000000-bbbb")
    svg = Page(text).find("svg", id="projection")[0]
    boxes = _label_boxes(text)
    assert 1 <= len(boxes) <= 12 and len(boxes) == len(Page(text).find("text", **{"class": "label"}))
    _assert_apart(boxes, float(svg["width"]), float(svg["height"]))


def test_the_promotion_decision_and_the_gate_are_shown(store_with_runs):
    log = RunLog(store_with_runs.uri)
    record = log.get("20260102T000000000-bbbb")
    record.promotion = {"alias": "production", "promoted": False,
                        "message": "not promoted: refused to point fruit@production at version 1",
                        "comparisons": [{"metric": "analogy_accuracy", "candidate": 0.2, "holder": 0.3,
                                         "higher_is_better": True, "tolerance": 0.01, "passed": False,
                                         "reason": "0.2000 against 0.3000 (higher is better): worse by 0.1000 > "
                                                   "tolerance 0.01"}]}
    log.write(record)
    page = Page(build_report(store_with_runs, record.run_id))
    text = " ".join(" ".join(page.text).split())
    assert "refused: production stays where it was — not promoted: refused to point fruit@production" in text
    assert ("analogy_accuracy 0.2000 0.3000 higher is better, tolerance 0.01 0.2000 against 0.3000 (higher is "
            "better): worse by 0.1000 > tolerance 0.01") in text
    assert page.find("td", **{"class": "worse"})
    first = Page(build_report(store_with_runs, "20260101T000000000-aaaa"))
    assert "the run did not promote its version" in " ".join(first.text) and not first.find("table", id="gate")


# --- real runs -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_nightly_run_reports_its_config_corpus_refused_promotion_and_regression(tmp_path, capsys):
    """PPMI-SVD: statistics on Dask, no Ray (an encoder run's report: tests/workers/test_encoder_job.py)."""
    store = TableStore(str(tmp_path / "store"))
    # The holder of `production`: a version with a ρ no real run reaches here, so the gate refuses the run's.
    table = pa.table({"token": FRUITS, "id": pa.array(range(6), pa.int32()), "count": pa.array([9] * 6, pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(_vectors(0)[:6].reshape(-1)), 4)},
                     schema=embedding_schema(4))
    store.publish("nightly", table, {"metrics": {"wordsim353_spearman": 1.0}})
    promote(store, "nightly@0", "production", [])
    config = write_job(tmp_path, {
        "table": "nightly", "statistics": {"n_workers": 1, "min_count": 1, "window": 3, "n_buckets": 2},
        "model": {"model": "ppmi_svd", "dim": 8},
        "promotion": {"rules": [{"metric": "wordsim353_spearman"}]}}, shards=2, name="nightly.yaml")
    assert main(["run", str(config), "--incremental"]) == EXIT_GATE_REFUSED  # published, not promoted
    out = capsys.readouterr().out
    info = store.info("nightly", 1)
    tokens, coverage = info.metadata["corpus"]["tokens"], info.metadata["metrics"]["wordsim353_coverage"]
    spearman = next(line for line in out.splitlines() if "WordSim-353 Spearman ρ" in line)
    assert f"over {100 * coverage:.0f} % of its 353 word pairs ({tokens / 1e6:.1f} M tokens here; ppmi_svd reaches " \
           "0.5430 on the 12.9 M-token benchmark corpus" in spearman
    assert "not promoted" in out
    [run_record] = RunLog(store.uri).list("nightly")

    text = build_report(store, run_record.run_id)
    page = Page(text)
    words = " ".join(" ".join(page.text).split())
    assert "refused: production stays where it was" in words
    assert "wordsim353_spearman" in text.split("<table id=gate>")[1].split("</table>")[0]
    corpus = dict(re.findall(r"<tr><th>([^<]+)</th><td class=n>([^<]+)</td></tr>",
                             text.split("<table id=corpus>")[1].split("</table>")[0]))
    assert corpus == {"shards read": "2", "shards counted": "2", "shards reused from the cache": "0",
                      "documents": f"{documents(SAMPLE_SHARDS[:2], 10_000):,}", "tokens": f"{tokens:,}",
                      "vocabulary": f"{info.metadata['vocab_size']:,}",
                      "bad records skipped": "0", "empty shards": "0", "unreadable shards": "0"}
    assert "model.model ppmi_svd" in words and "statistics.window 3" in words and "store.uri" in words
    assert _change_class(page, "wordsim353_spearman") == "n worse"  # the regression the gate refused is red
    _assert_apart(_label_boxes(text), 1000, 560)
