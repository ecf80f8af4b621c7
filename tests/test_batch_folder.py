"""lrp_engine.batch on a folder of PNGs (ImageFolder layout, masks beside it): every table is
written and agrees with direct engine calls; ResultsFolder reads it back; flat folders,
unreadable files, DICOM and NIfTI files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrp_engine.batch import BatchConfig, ResultsFolder, run_local
from lrp_engine.batch.sources import item_key, list_items
from lrp_engine.core import explain, gradient_x_input
from lrp_engine.evaluation import aopc, auc, fill_values, pixel_flipping, region_perturbation
from lrp_engine.localisation import pointing_game, relevance_mass_accuracy
from lrp_engine.models import load_bundled
from lrp_engine.models.zoo import spec
from tests.batch_data import digit_folder, fast_config

N = 10


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[BatchConfig, Path, list[str]]:
    base = tmp_path_factory.mktemp("folder")
    names = digit_folder(base / "digits", N, masks=base / "masks")
    cfg = fast_config(input=str(base / "digits"), masks=str(base / "masks"),
                      out=str(base / "out"))
    run_local(cfg)
    return cfg, base, names


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_table_is_written(run) -> None:
    cfg, base, names = run
    out = base / "out"
    for name in ("config.json", "metrics.csv", "summary.csv", "curves.csv", "summary.md",
                 "skipped.csv"):
        assert (out / name).is_file(), name
    assert len(list((out / "items").glob("*.npz"))) == N
    assert not list(out.rglob("*.tmp"))
    info = json.loads((out / "config.json").read_text())
    assert info["format"] == 1 and info["backend"] == "local" and info["config_hash"]
    assert info["methods"] == ["epsilon", "gradient_x_input", "random"]
    assert info["metrics"] == ["pf_auc", "pf_aopc", "rp_auc", "rp_aopc", "rma", "pointing"]
    assert BatchConfig.from_dict(info["config"]) == cfg
    rows = _rows(out / "metrics.csv")
    assert [r["name"] for r in rows] == sorted(names)  # sorted relative paths
    assert [int(r["label"]) for r in rows] == [int(n.split("/")[0]) for n in sorted(names)]
    summary = _rows(out / "summary.csv")
    assert [r["method"] for r in summary] == info["methods"]
    for rec in summary:
        m = rec["method"]
        vals = [float(r[f"{m}.pf_auc"]) for r in rows]
        assert float(rec["pf_auc_mean"]) == pytest.approx(np.mean(vals), rel=1e-12)
        assert int(rec["rma_n"]) == sum(1 for r in rows if r[f"{m}.rma"])  # masks: every 2nd
    curves = _rows(out / "curves.csv")
    assert {r["perturbation"] for r in curves} == {"pf", "rp"}
    assert len([r for r in curves if r["perturbation"] == "pf"]) == cfg.steps
    if (out / "plots" / "curves.html").exists():
        assert "plotly" in (out / "plots" / "curves.html").read_text()[:100000].lower()
    md = (out / "summary.md").read_text()
    assert "| epsilon |" in md and "PF AUC" in md and "RMA" in md


def test_items_agree_with_direct_engine_calls(run) -> None:
    """Each stored map, curve and metric is what the engine gives for that picture alone
    (to float rounding: the batch shares its forward passes with its neighbours)."""
    cfg, base, names = run
    folder = ResultsFolder(base / "out")
    model, card = load_bundled("lenet"), spec("lenet").preprocessing
    rows = {r["name"]: r for r in folder.metrics_rows()}
    for name in names[:3]:
        payload = (base / "digits" / name).read_bytes()
        mask_file = base / "masks" / name
        key = item_key(payload, mask_file.read_bytes() if mask_file.exists() else b"")
        item = folder.item(key)
        x = card.to_tensor(Image.open(base / "digits" / name))
        label = int(name.split("/")[0])
        t = torch.tensor([label])
        assert rows[name]["pred"] == int(model(x).argmax()) and rows[name]["target"] == label
        np.testing.assert_allclose(item.input, card.denormalise(x)[0, 0].clamp(0, 1),
                                   atol=1e-6)
        rel = {"epsilon": explain(model, x, t, "epsilon"),
               "gradient_x_input": gradient_x_input(model, x, t)}
        for m, r in rel.items():
            np.testing.assert_allclose(item.maps[m], r.sum(1)[0], rtol=1e-4, atol=1e-6)
        sid = int(key[:15], 16)
        values = fill_values(x, "uniform", (0.0, 1.0), (card.mean, card.std), 0, [sid])
        pf = pixel_flipping(model, x, t, rel["epsilon"], steps=cfg.steps,
                            pixels_per_step=cfg.pixels_per_step, fill=values, image_ids=[sid])
        np.testing.assert_allclose(item.curves[("epsilon", "pf")], pf[0], rtol=1e-4,
                                   atol=1e-4)
        rp = region_perturbation(model, x, t, rel["epsilon"], region=cfg.patch,
                                 steps=cfg.steps, fill=values, image_ids=[sid])
        np.testing.assert_allclose(item.curves[("epsilon", "rp")], rp[0], rtol=1e-4, atol=1e-4)
        assert rows[name]["epsilon.pf_auc"] == pytest.approx(float(auc(pf)[0]), rel=1e-4)
        assert rows[name]["epsilon.pf_aopc"] == pytest.approx(float(aopc(pf)[0]), rel=1e-3,
                                                              abs=1e-4)
        if mask_file.exists():
            m = torch.from_numpy(item.mask)[None]
            assert item.mask.shape == (32, 32) and item.mask.any()
            assert rows[name]["epsilon.rma"] == pytest.approx(
                float(relevance_mass_accuracy(rel["epsilon"], m)[0]), rel=1e-4)
            assert rows[name]["epsilon.pointing"] == float(pointing_game(rel["epsilon"], m)[0])
        else:
            assert item.mask is None and math.isnan(rows[name]["epsilon.rma"])
        assert 0 <= item.maps["random"].min() and item.maps["random"].max() < 1


def test_results_folder_round_trip(run) -> None:
    cfg, base, _ = run
    folder = ResultsFolder(base / "out")
    assert folder.config == cfg and folder.finalised and folder.backend == "local"
    rows = folder.metrics_rows()
    assert len(rows) == N and folder.keys() == [r["key"] for r in rows]
    for r in rows:
        stored = folder.item(r["key"]).row
        for k, v in stored.items():
            assert (math.isnan(v) and math.isnan(r[k])) if isinstance(v, float) and \
                math.isnan(v) else r[k] == v, k
    cols = folder.metrics_columns()
    assert cols["label"].dtype == np.int64 and cols["epsilon.pf_auc"].dtype == np.float64
    np.testing.assert_array_equal(folder.metric("epsilon.pf_auc"), cols["epsilon.pf_auc"])
    curves = folder.curves()
    mean = np.mean([folder.item(k).curves[("epsilon", "pf")].astype(np.float64)
                    for k in folder.keys()], 0)
    np.testing.assert_allclose(curves["pf"]["epsilon"], mean, rtol=1e-9)
    np.testing.assert_allclose(curves["pf"]["fraction"],
                               np.arange(cfg.steps) * cfg.pixels_per_step / 1024)
    summary = folder.summary_rows()
    assert summary[0]["method"] == "epsilon" and summary[0]["n"] == N
    worst = folder.ranked("epsilon.pf_auc")
    aucs = [folder.item(k).row["epsilon.pf_auc"] for k in worst]
    assert aucs == sorted(aucs, reverse=True)  # the highest AUC: the worst explained
    with_mask = folder.ranked("epsilon.rma")
    assert math.isnan(folder.item(with_mask[-1]).row["epsilon.rma"])  # no value: last
    assert folder.certainty() is None and folder.skipped() == []
    with pytest.raises(KeyError):
        folder.item("../config")


def test_flat_folder_unreadable_file_and_duplicates(tmp_path: Path) -> None:
    digit_folder(tmp_path / "in", 4, flat=True)
    (tmp_path / "in" / "broken.png").write_bytes(b"this is not a picture")
    (tmp_path / "in" / "zz_copy.png").write_bytes((tmp_path / "in" / "000.png").read_bytes())
    (tmp_path / "in" / "notes.txt").write_text("not an item")
    cfg = fast_config(input=str(tmp_path / "in"), out=str(tmp_path / "out"), metrics=("pf",))
    report = run_local(cfg, plots=False)
    assert report.n_items == 5 and report.n_computed == 4 and report.n_skipped == 2
    folder = ResultsFolder(tmp_path / "out")
    rows = folder.metrics_rows()
    assert [r["label"] for r in rows] == [-1] * 4
    assert all(r["target"] == r["pred"] for r in rows) and all(math.isnan(r["correct"])
                                                              for r in rows)
    skipped = {s["name"]: s["reason"] for s in folder.skipped()}
    assert set(skipped) == {"broken.png", "zz_copy.png"}
    assert "same content as 000.png" in skipped["zz_copy.png"]
    assert skipped["broken.png"]  # the decoder's reason, in words
    assert "rma" not in ",".join(folder.metrics)  # no masks: no localisation metrics


def test_dicom_and_nifti_files(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    pytest.importorskip("nibabel")
    from tests.hostile_files import dicom_bytes, head_volume, mr_slice, nifti_bytes

    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.dcm").write_bytes(dicom_bytes(mr_slice(64, 80)))
    (tmp_path / "scans" / "b.nii").write_bytes(nifti_bytes(mr_slice(48, 48)[:, :, None]
                                                           .astype(np.float32)))
    (tmp_path / "scans" / "c.nii.gz").write_bytes(nifti_bytes(head_volume(), gz=True))
    listing = list_items(BatchConfig(input=str(tmp_path / "scans")))
    assert [r["name"] for r in listing.rows] == ["a.dcm", "b.nii", "c.nii.gz"]
    cfg = fast_config(input=str(tmp_path / "scans"), model="mri_demo",
                      out=str(tmp_path / "out"), metrics=("pf",), pixels_per_step=32)
    report = run_local(cfg, plots=False)
    assert report.n_computed == 2 and report.n_skipped == 1
    folder = ResultsFolder(tmp_path / "out")
    assert "3-D volume" in folder.skipped()[0]["reason"]
    item = folder.item(folder.keys()[0])
    assert item.input.shape == (96, 96) and item.maps["epsilon"].shape == (96, 96)


def test_an_empty_mask_counts_as_no_mask(tmp_path: Path) -> None:
    """An all-black mask (an image without the object) has no region to point at: its
    relevance mass accuracy and pointing game are NaN, not 0, and no mask is stored."""
    names = digit_folder(tmp_path / "digits", 4, masks=tmp_path / "masks", mask_every=1)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "masks" / names[1])
    cfg = fast_config(input=str(tmp_path / "digits"), masks=str(tmp_path / "masks"),
                      out=str(tmp_path / "out"), methods=("epsilon",), metrics=("rma",
                      "pointing"))
    run_local(cfg)
    folder = ResultsFolder(tmp_path / "out")
    rows = {r["name"]: r for r in folder.metrics_rows()}
    empty, full = rows[names[1]], rows[names[0]]
    assert math.isnan(float(empty["epsilon.rma"]))
    assert math.isnan(float(empty["epsilon.pointing"]))
    assert 0.0 <= float(full["epsilon.rma"]) <= 1.0
    assert folder.item(empty["key"]).mask is None
    assert folder.item(full["key"]).mask is not None
