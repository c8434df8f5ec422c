"""The HTML run report: self-contained, and showing the right numbers (parsed with html.parser)."""
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

from firth.pipelines.cli.main import main
from firth.pipelines.ops.report import build_report, default_probes, pca_2d
from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.schemas.store import TableStore
from firth.schemas.tables import embedding_schema

FRUITS = ["apple", "apricot", "banana", "cherry", "grape", "melon"]
VEHICLES = ["car", "bus", "train", "truck", "bicycle", "tram"]


class Page(HTMLParser):
    """Every start tag as (tag, attrs), and the text inside each element with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


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
    _publish(store, _vectors(0), {"wordsim353_spearman": 0.5})
    _publish(store, _vectors(1), {"wordsim353_spearman": 0.7, "final_loss": 0.1})
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
    assert "wordsim353_spearman 0.7000 0.5000 +0.2000" in text  # this version against the previous
    assert "final_loss 0.1000" in text

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
    assert not page.find("svg", id="projection") and not page.find("table", id="metrics")
