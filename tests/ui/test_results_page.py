"""AppTests of the Results page (lrp_explorer/app_pages/results.py, ui/results_view.py).

The folders are written by the real command, ``python -m lrp_engine batch``, once per
module: 14 bundled digits with LeNet (LRP-ε, Gradient×Input, random, B-LRP α = 5 and 95 with
4 samples; pixel flipping and region perturbation, 8 steps), and 3 MRI-demo slices with
their lesion masks (relevance mass accuracy, pointing game). A few seconds each on two cores.
The ``ray`` test writes the digits' folder again through ``--ray`` with 2 workers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lrp_engine.batch.results import ResultsFolder
from lrp_explorer.ui import results_view as rv
from tests.plotly_arrays import values

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "results.py")
DIGITS = ["--input", "mnist", "--limit", "14", "--methods", "epsilon", "gradient_x_input",
          "random", "blrp", "--blrp-samples", "4", "--blrp-alphas", "5", "95",
          "--metrics", "pf", "rp", "--steps", "8"]
MRI = ["--input", "mri-demo:3", "--methods", "epsilon", "random",
       "--metrics", "pf", "rma", "pointing", "--steps", "6"]
METHODS = ["LRP epsilon", "Gradient×Input", "Random", "B-LRP α=5", "B-LRP α=95"]


def batch(out: Path, args: list[str]) -> Path:
    """Run the batch command into ``out``; fails the test with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "lrp_engine", "batch", *args, "--out",
                           str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batch(tmp_path_factory.mktemp("results") / "digits", DIGITS)


@pytest.fixture(scope="module")
def mri(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batch(tmp_path_factory.mktemp("results") / "mri", MRI)


def open_page(folder: Path | str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state[rv.FOLDER_KEY] = str(folder)
    at.run()
    assert not at.exception
    return at


def frame(at: AppTest, first_column: str) -> pd.DataFrame:
    """The st.dataframe whose first column is ``first_column`` ("method": the summary, with
    its "items" column; "rank": the page of items)."""
    found = [d.value for d in at.dataframe if d.value.columns[0] == first_column
             and (first_column != "method" or "items" in d.value.columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def item_metrics(at: AppTest) -> pd.DataFrame:
    """The selected item's metrics table (one row per method)."""
    (found,) = [d.value for d in at.dataframe if d.value.columns[0] == "method"
                and "items" not in d.value.columns]
    return found


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def maps_chart(at: AppTest) -> dict:
    (spec,) = [s for s in charts(at) if s["data"] and s["data"][0]["name"] == "input"]
    return spec


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# -- a folder opens ---------------------------------------------------------------------

def test_config_summary_table_and_curves(digits: Path) -> None:
    at = open_page(digits)
    assert not at.error and not at.warning
    m = metrics(at)
    assert m["Items"] == "14" and m["Skipped"] == "0"
    assert m["Model"] == "lenet" and m["Input"] == "mnist" and m["Backend"] == "local"

    table = frame(at, "method")
    assert table["method"].tolist() == METHODS
    assert table["items"].tolist() == [14] * 5
    summary = pd.read_csv(digits / "summary.csv")
    for name in ("pf_auc", "pf_aopc", "rp_auc", "rp_aopc"):
        col = rv.short_label(name)
        for shown, mean, sem in zip(table[col], summary[f"{name}_mean"],
                                    summary[f"{name}_sem"], strict=True):
            assert shown == f"{mean:.4f} ± {sem:.4f}", (name, shown)
    assert col == "RP AOPC ↑" and rv.short_label("pf_auc") == "PF AUC ↓"

    curves = pd.read_csv(digits / "curves.csv")
    titles = {"Pixel flipping: mean over 14 items": "pf",
              "Region perturbation: mean over 14 items": "rp"}
    specs = [s for s in charts(at) if s["layout"].get("title", {}).get("text") in titles]
    assert len(specs) == 2
    for spec in specs:
        pert = titles[spec["layout"]["title"]["text"]]
        part = curves[curves["perturbation"] == pert]
        assert [t["name"] for t in spec["data"]] == METHODS
        for trace, key in zip(spec["data"], ["epsilon", "gradient_x_input", "random",
                                              "blrp_a5", "blrp_a95"], strict=True):
            np.testing.assert_allclose(values(trace["x"]), 100 * part["fraction"], atol=1e-3)
            np.testing.assert_allclose(values(trace["y"]), part[key], atol=1e-3)  # 5 digits

    # B-LRP certainty of correct against wrong predictions (all 14 digits are right)
    assert m["Correct predictions (n = 14)"] == rv.value_text(
        pd.read_csv(digits / "certainty.csv")["mean_correct"][0])
    assert "Wrong predictions (n = 0)" in m


# -- the items, sorted ------------------------------------------------------------------

def test_items_worst_first_paged_and_resorted(digits: Path) -> None:
    at = open_page(digits)
    folder = ResultsFolder(digits)
    column = "Pixel-flipping AUC, LRP epsilon"
    page1 = frame(at, "rank")
    assert at.selectbox(key="rs_sort").value == "pf_auc"
    assert at.selectbox(key="rs_method").value == "epsilon"
    assert at.radio(key="rs_order").value == "worst first"
    assert page1["rank"].tolist() == list(range(1, 13))
    # worst first for an AUC of most-relevant-first flipping: the highest first
    auc = page1[column].to_numpy()
    assert (np.diff(auc) <= 0).all(), auc
    ranked = folder.ranked("epsilon.pf_auc")  # the engine's own order, worst first
    keys = dict(zip(folder.metrics_columns()["name"], folder.keys(), strict=True))
    assert [keys[n] for n in page1["name"]] == ranked[:12]

    at.number_input(key="rs_page").set_value(2).run()
    page2 = frame(at, "rank")
    assert page2["rank"].tolist() == [13, 14]
    assert [keys[n] for n in page2["name"]] == ranked[12:]
    assert page2[column].max() <= auc.min()

    # AOPC: lower is worse, so worst first is ascending; best first reverses it
    at.number_input(key="rs_page").set_value(1)
    at.selectbox(key="rs_sort").set_value("rp_aopc").run()
    aopc = frame(at, "rank")["Region-perturbation AOPC, LRP epsilon"].to_numpy()
    assert (np.diff(aopc) >= 0).all(), aopc
    at.radio(key="rs_order").set_value("best first").run()
    best = frame(at, "rank")["Region-perturbation AOPC, LRP epsilon"].to_numpy()
    assert (np.diff(best) <= 0).all() and best[0] >= aopc.max()
    at.selectbox(key="rs_method").set_value("random").run()
    assert "Region-perturbation AOPC, Random" in frame(at, "rank").columns

    # B-LRP certainty is one value per item: the method does not apply
    at.radio(key="rs_order").set_value("worst first")
    at.selectbox(key="rs_sort").set_value("blrp_certainty").run()
    assert not at.exception
    assert at.selectbox(key="rs_method").disabled
    cert = frame(at, "rank")["B-LRP certainty"].to_numpy()
    assert (np.diff(cert) >= 0).all(), cert


def test_selecting_an_item_shows_its_maps(digits: Path) -> None:
    at = open_page(digits)
    folder = ResultsFolder(digits)
    ranked = folder.ranked("epsilon.pf_auc")
    assert at.selectbox(key="rs_item").value == ranked[0]  # the worst item, at first

    def check(key: str) -> None:
        spec = maps_chart(at)
        item = folder.item(key)
        assert [t["name"] for t in spec["data"]] == ["input", *METHODS]
        for trace, m in zip(spec["data"][1:], ["epsilon", "gradient_x_input", "random",
                                               "blrp_a5", "blrp_a95"], strict=True):
            np.testing.assert_allclose(values(trace["z"]), item.maps[m], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values(spec["data"][0]["z"]),
                                   (item.input - item.input.min())
                                   / (item.input.max() - item.input.min()), atol=1e-5)
        assert item.row["name"] in " ".join(md.value for md in at.markdown)
        own = item_metrics(at)
        assert own["method"].tolist() == METHODS
        assert own["Pixel-flipping AUC"][0] == pytest.approx(item.row["epsilon.pf_auc"])

    check(ranked[0])
    at.selectbox(key="rs_item").set_value(ranked[2]).run()
    assert not at.exception
    check(ranked[2])
    # the item's own curves: one chart per perturbation, each method's curve from its file
    own = {s["layout"]["title"]["text"]: s for s in charts(at)
           if s["layout"].get("title", {}).get("text", "").endswith(": this item")}
    assert sorted(own) == ["Pixel flipping: this item", "Region perturbation: this item"]
    item = folder.item(ranked[2])
    for title, pert in (("Pixel flipping: this item", "pf"),
                        ("Region perturbation: this item", "rp")):
        trace = own[title]["data"][0]
        assert trace["name"] == "LRP epsilon"
        np.testing.assert_allclose(values(trace["y"]), item.curves[("epsilon", pert)],
                                   atol=1e-3)


def test_mask_outline_and_localisation_metrics(mri: Path) -> None:
    at = open_page(mri)
    assert not at.error
    table = frame(at, "method")
    assert "RMA ↑" in table.columns and "pointing ↑" in table.columns
    folder = ResultsFolder(mri)
    key = at.selectbox(key="rs_item").value
    item = folder.item(key)
    spec = maps_chart(at)
    outline = [t for t in spec["data"] if t["name"] == "mask"]
    if item.mask is None or not item.mask.any():
        assert not outline
        return
    assert len(outline) == 3  # on the input and on both maps
    xs = [x for x in outline[0]["x"] if x is not None]
    ys = [y for y in outline[0]["y"] if y is not None]
    rows, cols = np.nonzero(item.mask)
    assert min(xs) == cols.min() - 0.5 and max(xs) == cols.max() + 0.5
    assert min(ys) == rows.min() - 0.5 and max(ys) == rows.max() + 0.5
    assert any("mask's outline" in c.value for c in at.caption)


def test_outline_of_a_square() -> None:
    mask = np.zeros((5, 5), bool)
    mask[1:3, 2:4] = True  # a 2×2 square: 8 unit edges
    xs, ys = rv.outline(mask)
    assert len(xs) == len(ys) == 8 * 3
    assert {x for x in xs if x is not None} == {1.5, 2.5, 3.5}
    assert {y for y in ys if y is not None} == {0.5, 1.5, 2.5}


def test_default_is_the_newest_folder_under_results(digits: Path, mri: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "results").mkdir()
    shutil.copytree(digits, tmp_path / "results" / "old")
    shutil.copytree(mri, tmp_path / "results" / "new")
    (tmp_path / "results" / "not_results").mkdir()
    os.utime(tmp_path / "results" / "old" / "config.json", (1, 1))
    monkeypatch.chdir(tmp_path)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception and not at.error
    assert at.text_input(key=rv.FOLDER_KEY).value == str(Path("results") / "new")
    assert metrics(at)["Input"] == "mri-demo:3"
    assert at.selectbox(key=rv.BROWSE_KEY).options == ["results/new", "results/old"]
    at.selectbox(key="rs_sort").set_value("rma").run()
    # another folder: the widgets that named the first one's metrics and items start over
    at.selectbox(key=rv.BROWSE_KEY).set_value("results/old").run()
    assert not at.exception
    assert at.text_input(key=rv.FOLDER_KEY).value == "results/old"
    assert metrics(at)["Input"] == "mnist"
    assert at.selectbox(key="rs_sort").value == "pf_auc"
    assert at.selectbox(key="rs_item").value == ResultsFolder(digits).ranked("epsilon.pf_auc")[0]


# -- bad folders: one clear message, never a traceback ------------------------------------

def _copy(digits: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(digits, out)
    return out


def _break(case: str, digits: Path, tmp_path: Path) -> Path:
    """A folder (or path) broken in the way ``case`` says."""
    if case == "missing":
        return tmp_path / "nowhere"
    if case == "a file":
        (tmp_path / "f.txt").write_text("x")
        return tmp_path / "f.txt"
    if case == "no config":
        (tmp_path / "plain").mkdir()
        (tmp_path / "plain" / "metrics.csv").write_text("a,b\n1,2\n")
        return tmp_path / "plain"
    out = _copy(digits, tmp_path)
    if case == "format 2":
        info = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**info, "format": 2}))
    elif case == "config not JSON":
        (out / "config.json").write_text("{ not json")
    elif case == "metrics damaged":
        (out / "metrics.csv").write_bytes(b"key,name,label\n\x00\xff,zz,notanumber\n")
    elif case == "not finished":
        for name in ("metrics.csv", "metrics.parquet", "summary.csv", "curves.csv"):
            (out / name).unlink(missing_ok=True)
    return out


BAD = {"missing": ("error", "There is no folder"),
       "a file": ("error", "is a file, not a results folder"),
       "no config": ("error", "is not a results folder: it has no config.json"),
       "format 2": ("error", "holds results of format 2; this app reads format 1"),
       "config not JSON": ("error", "cannot be opened"),
       "metrics damaged": ("error", "cannot be read: a file in it is damaged"),
       "not finished": ("warning", "has not finished")}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folder_gives_one_clear_message(case: str, digits: Path, tmp_path: Path) -> None:
    level, text = BAD[case]
    at = open_page(_break(case, digits, tmp_path))
    boxes = at.error if level == "error" else at.warning
    others = at.warning if level == "error" else at.error
    assert len(boxes) == 1 and not others, ([e.value for e in at.error],
                                            [w.value for w in at.warning])
    assert text in boxes[0].value.replace("\\", ""), boxes[0].value
    assert "Traceback" not in boxes[0].value
    assert not at.dataframe and not at.get("plotly_chart")


def test_empty_path_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no results/ here
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception and not at.error
    assert "Type the path of a results folder" in at.warning[0].value


def test_a_damaged_item_file_is_said_and_the_rest_shows(digits: Path, tmp_path: Path) -> None:
    out = _copy(digits, tmp_path)
    worst = ResultsFolder(out).ranked("epsilon.pf_auc")[0]
    (out / "items" / f"{worst}.npz").write_bytes(b"PK\x03\x04 not a zip")
    at = open_page(out)
    assert len(at.error) == 1 and "cannot be read" in at.error[0].value
    assert frame(at, "rank")["rank"].tolist()[:3] == [1, 2, 3]  # the list is still there
    at.selectbox(key="rs_item").set_value(ResultsFolder(out).ranked("epsilon.pf_auc")[1])
    at.run()
    assert not at.exception and not at.error
    assert maps_chart(at)["data"][0]["name"] == "input"


# -- a folder written by Ray ----------------------------------------------------------------

@pytest.mark.ray
def test_a_ray_run_reads_the_same(digits: Path, tmp_path: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("LRP_REQUIRE_RAY") == "1":
            pytest.fail("ray is not installed (LRP_REQUIRE_RAY=1)")
        pytest.skip("ray is not installed: pip install -e '.[ray]'")
    out = batch(tmp_path / "ray", [*DIGITS, "--ray", "--workers", "2", "--batch-size", "7"])
    at = open_page(out)
    assert not at.error
    assert metrics(at)["Backend"] == "Ray (2 workers)"
    local = open_page(digits)
    pd.testing.assert_frame_equal(frame(at, "method"), frame(local, "method"))
    pd.testing.assert_frame_equal(frame(at, "rank"), frame(local, "rank"))
    assert at.selectbox(key="rs_item").value == local.selectbox(key="rs_item").value
    assert maps_chart(at)["data"][1]["name"] == "LRP epsilon"
    assert not math.isnan(float(frame(at, "rank").iloc[0, -1]))
