"""DICOM series and multi-frame files → RAS+ volumes through ``read_scans``: slice order,
duplicated / missing / unevenly spaced slices, orientation (markers via ``scans.view``),
oblique acquisitions, enhanced multi-frame, MONOCHROME1, windows, de-identification; and
NIfTI volumes of the same anatomy in two voxel orders. Files are generated here in memory.
"""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from lrp_engine.scans import nifti as scans_nifti  # noqa: E402
from lrp_engine.scans import read_scans, view, window_presets  # noqa: E402
from tests.hostile_files import dicom_bytes  # noqa: E402

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # rows toward the patient's left, columns posterior
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # rows posterior, columns inferior
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # rows left, columns inferior
H, W = 12, 16


def slice_file(px: np.ndarray, t: float, iop: list[float] | None = AXIAL, uid: str = "1.2.3",
               inst: int | None = None, position: bool = True, **tags: object) -> bytes:
    """One slice at distance ``t`` mm along the normal of ``iop`` (through the origin)."""
    if iop is not None:
        tags["ImageOrientationPatient"] = iop
        if position:
            n = np.cross(iop[:3], iop[3:])
            tags["ImagePositionPatient"] = [float(v) for v in np.round(t * n, 6)]
    if inst is not None:
        tags["InstanceNumber"] = inst
    tags.setdefault("PixelSpacing", [0.8, 0.9])
    tags.setdefault("SeriesDescription", "T1 AXIAL")
    return dicom_bytes(px.astype(np.uint16), SeriesInstanceUID=uid, **tags)


def flat(value: int) -> np.ndarray:
    return np.full((H, W), value, np.uint16)


def series(ts: list[float], order: list[int] | None = None, **kw: object
           ) -> list[tuple[str, bytes]]:
    """Slices whose value is 100 + 10 × their rank along the normal, uploaded in ``order``."""
    files = [(f"s{i}.dcm", slice_file(flat(100 + 10 * i), t, inst=i + 1, **kw))
             for i, t in enumerate(ts)]
    return [files[i] for i in (order or range(len(files)))]


def slice_values(vol, axis: int = 2) -> list[float]:
    return [float(np.take(vol.data, k, axis=axis).mean()) for k in range(vol.shape[axis])]


# -- order and spacing -------------------------------------------------------------------------

def test_shuffled_series_comes_back_sorted() -> None:
    files = series([2.5 * k for k in range(8)], order=[5, 2, 7, 0, 3, 6, 1, 4])
    scan = read_scans(files)
    (vol,) = scan.volumes
    assert scan.problems == []
    assert slice_values(vol) == [100 + 10 * k for k in range(8)]  # inferior → superior
    assert vol.spacing == pytest.approx((0.9, 0.8, 2.5))
    assert vol.shape == (W, H, 8) and vol.oriented and vol.kind == "DICOM"
    assert vol.description == "MR · T1 AXIAL · 8 slices"
    assert not any("missing" in n or "uneven" in n or "duplicated" in n for n in vol.notes)


def test_instance_number_only_orders_the_slices() -> None:
    files = [(f"i{k}", slice_file(flat(100 + 10 * k), 0.0, iop=None, inst=k + 1,
                                  SliceThickness=3.0)) for k in range(5)]
    (vol,) = read_scans([files[i] for i in (3, 0, 4, 1, 2)]).volumes
    assert slice_values(vol) == [100, 110, 120, 130, 140]
    assert any("InstanceNumber" in n for n in vol.notes)
    assert any("SliceThickness: 3 mm" in n for n in vol.notes)
    assert not vol.oriented and view(vol, 2).markers == {}
    assert any("no ImageOrientationPatient" in n for n in vol.notes)


def test_duplicate_slice_is_kept_once() -> None:
    files = [*series([0, 2, 4, 6]), ("dup.dcm", slice_file(flat(120), 4.0))]
    (vol,) = read_scans(files).volumes
    assert vol.shape[2] == 4
    assert any("1 duplicated slice position(s) kept once (at 4.0 mm" in n for n in vol.notes)


def test_missing_slices_are_said_with_positions_and_count() -> None:
    (vol,) = read_scans(series([0, 2, 4, 10, 12])).volumes
    (note,) = [n for n in vol.notes if "missing" in n]
    assert "about 2 slice(s) missing between positions 4.0 and 10.0 mm" in note
    assert vol.spacing[2] == pytest.approx(2.0)


def test_uneven_spacing_gives_min_max_and_uses_the_median() -> None:
    (vol,) = read_scans(series([0, 2, 4.5, 6, 8.4])).volumes
    (note,) = [n for n in vol.notes if "uneven" in n]
    assert "from 1.50 to 2.50 mm" in note and "median, 2.20 mm" in note
    assert vol.spacing[2] == pytest.approx(2.2)


# -- orientation -------------------------------------------------------------------------------

def test_axial_lps_series_is_radiological_with_markers() -> None:
    px = np.full((H, W), 100, np.uint16)
    px[1, 2] = 500  # row 1 (anterior), column 2 (the patient's right)
    px[6, W - 2] = 900  # column W - 2: the patient's left
    files = [(f"a{k}", slice_file(px, 3.0 * k)) for k in range(3)]
    (vol,) = read_scans(files).volumes
    v = view(vol, 2, convention="radiological")
    assert v.markers == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    np.testing.assert_array_equal(v.array, px)  # stored DICOM rows/columns = radiological
    assert np.argwhere(v.array == 900)[0, 1] > W // 2  # the patient's left: the image's right
    # RAS+: x grows toward the right, so the patient's left is at a small x
    x, y, _ = np.argwhere(vol.data == 900)[0]
    assert x < W // 2 and y == H - 1 - 6
    neuro = view(vol, 2, convention="neurological")
    assert neuro.markers["left"] == "L" and np.argwhere(neuro.array == 900)[0, 1] < W // 2


@pytest.mark.parametrize("iop,axis", [(SAGITTAL, 0), (CORONAL, 1)])
def test_sagittal_and_coronal_series_get_superior_at_the_top(iop, axis) -> None:
    px = np.full((H, W), 100, np.uint16)
    px[0, :] = 700  # the first row: the most superior (columns point inferior)
    files = [(f"s{k}", slice_file(px, 2.0 * k, iop=iop, SeriesDescription="T2")) for k in
             range(4)]
    (vol,) = read_scans(files).volumes
    assert vol.meta["acquisition_plane"] == ("sagittal", "coronal")[axis]
    assert vol.shape[axis] == 4
    v = view(vol, axis)
    assert v.markers["top"] == "S" and v.markers["bottom"] == "I"
    assert (v.array[0] == 700).all() and (v.array[1:] != 700).all()
    assert view(vol, 2).markers["top"] == "A"  # and still an axial view of the stack


def test_oblique_series_is_reoriented_to_the_nearest_axes_with_a_note() -> None:
    a = np.radians(20)
    iop = [np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0]  # 20° about z
    files = [(f"o{k}", slice_file(flat(100 + k), 2.0 * k, iop=iop)) for k in range(4)]
    (vol,) = read_scans(files).volumes
    (note,) = [n for n in vol.notes if "oblique" in n]
    assert "20°" in note and "axial" in note
    assert vol.meta["acquisition_plane"] == "axial" and vol.shape == (W, H, 4)
    assert vol.meta["obliquity_deg"] == pytest.approx(20, abs=0.01)
    assert view(vol, 2).markers["top"] == "A"


def test_series_are_split_by_uid_and_by_frame_size() -> None:
    files = [
        *series([0, 2, 4]),
        ("big0", slice_file(np.zeros((20, 20)), 0.0, uid="1.2.3")),
        ("big1", slice_file(np.zeros((20, 20)), 2.0, uid="1.2.3")),
        ("other", slice_file(flat(5), 0.0, uid="9.9", SeriesDescription="FLAIR"))]
    scan = read_scans(files)
    assert sorted(v.shape for v in scan.volumes) == [(16, 12, 1), (16, 12, 3), (20, 20, 2)]
    assert any("2 different frame sizes" in n for n in scan.notes)
    assert len({v.description for v in scan.volumes}) == 3


# -- multi-frame -------------------------------------------------------------------------------

def _item(**kw: object) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_enhanced_multiframe_uses_per_frame_positions() -> None:
    zs = [8.0, 0.0, 6.0, 2.0, 4.0]  # stored out of order
    px = np.stack([flat(int(100 + z)) for z in zs])
    per_frame = Sequence([_item(PlanePositionSequence=Sequence([_item(
        ImagePositionPatient=[0.0, 0.0, z])])) for z in zs])
    shared = Sequence([_item(
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=AXIAL)]),
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[0.5, 0.6], SliceThickness=2.0)]))])
    data = dicom_bytes(px, frames=5, PerFrameFunctionalGroupsSequence=per_frame,
                       SharedFunctionalGroupsSequence=shared, SeriesDescription="EPI")
    (vol,) = read_scans([("enhanced.dcm", data)]).volumes
    assert slice_values(vol) == [100, 102, 104, 106, 108]
    assert vol.spacing == pytest.approx((0.6, 0.5, 2.0))
    assert vol.description == "MR · EPI · 5 frames" and vol.oriented


def test_plain_multiframe_stacks_along_the_normal() -> None:
    px = np.stack([flat(100 + k) for k in range(3)])
    data = dicom_bytes(px, frames=3, ImageOrientationPatient=AXIAL,
                       ImagePositionPatient=[0, 0, 0], SpacingBetweenSlices=2.5,
                       PixelSpacing=[1, 1])
    (vol,) = read_scans([("cine.dcm", data)]).volumes
    assert slice_values(vol) == [100, 101, 102] and vol.spacing[2] == 2.5
    assert any("without per-frame positions" in n for n in vol.notes)
    assert any("SpacingBetweenSlices: 2.5 mm" in n for n in vol.notes)


# -- values, windows, identifiers --------------------------------------------------------------

def test_monochrome1_series_is_inverted_as_a_whole() -> None:
    files = [(f"m{k}", slice_file(flat(v), 2.0 * k, photometric="MONOCHROME1",
                                  WindowCenter=300, WindowWidth=200))
             for k, v in enumerate((100, 400))]
    (vol,) = read_scans(files).volumes
    assert slice_values(vol) == [400, 100]  # lo + hi − value over the series
    assert vol.windows == {"from the file 1": (200.0, 200.0)}
    assert any("MONOCHROME1" in n for n in vol.notes)


def test_rescale_per_slice() -> None:
    files = [("r0", slice_file(flat(10), 0.0, RescaleSlope=1, RescaleIntercept=-1024)),
             ("r1", slice_file(flat(10), 2.0, RescaleSlope=2, RescaleIntercept=0))]
    (vol,) = read_scans(files).volumes
    assert slice_values(vol) == [-1014, 20]
    assert any("rescaled per slice" in n for n in vol.notes)


def test_windows_from_the_file_then_ct_presets() -> None:
    files = [(f"c{k}", slice_file(flat(1000), 2.0 * k, Modality="CT", WindowCenter=[40, 400],
                                  WindowWidth=[80, 1800],
                                  WindowCenterWidthExplanation=["BRAIN", "BONE"]))
             for k in range(2)]
    (vol,) = read_scans(files).volumes
    assert vol.windows == {"BRAIN": (40.0, 80.0), "BONE": (400.0, 1800.0)}
    names = list(window_presets(vol))
    assert names[:2] == ["BRAIN", "BONE"]
    assert names[2:8] == ["brain", "subdural", "stroke", "soft tissue", "lung", "bone"]
    assert names[-2:] == ["auto (0.5–99.5 %)", "full range"]
    mr = read_scans(series([0, 2])).volumes[0]
    assert list(window_presets(mr)) == ["auto (0.5–99.5 %)", "full range"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_meta_never_holds_patient_identifiers() -> None:
    files = series([0, 2], PatientBirthDate="19700101", AccessionNumber="ACC777",
                   InstitutionName="St Elsewhere", ReferringPhysicianName="Who^Doctor",
                   StudyDate="20240131", Manufacturer="ACME", BodyPartExamined="HEAD")
    (vol,) = read_scans(files).volumes
    text = repr((vol.meta, vol.description, vol.notes, vol.windows))
    for secret in ("Doe", "Jane", "12345", "19700101", "ACC777", "Elsewhere", "Doctor",
                   "s0.dcm", "s1.dcm"):
        assert secret not in text
    assert vol.study_date == "2024-01-31"
    assert vol.meta["manufacturer"] == "ACME" and vol.meta["body_part"] == "HEAD"
    assert read_scans(series([0, 2], StudyDate="2024xx31")).volumes[0].study_date is None


# -- NIfTI -------------------------------------------------------------------------------------

def test_ras_and_lps_nifti_of_the_same_anatomy_give_the_same_volume() -> None:
    rng = np.random.default_rng(0)
    ras = rng.random((6, 7, 5)).astype(np.float32)
    a_ras = np.diag([2.0, 2.5, 3.0, 1.0])
    lps = ras[::-1, ::-1, :].copy()  # index i grows toward the left, j toward posterior
    a_lps = np.diag([-2.0, -2.5, 3.0, 1.0])
    a_lps[:3, 3] = [2.0 * 5, 2.5 * 6, 0.0]  # voxel (0, 0, 0) is the RAS file's (5, 6, 0)
    v1 = read_scans([("a.nii", nib.Nifti1Image(ras, a_ras).to_bytes())]).volumes[0]
    v2 = read_scans([("b.nii", nib.Nifti1Image(lps, a_lps).to_bytes())]).volumes[0]
    np.testing.assert_array_equal(v1.data, v2.data)
    assert v1.spacing == v2.spacing == (2.0, 2.5, 3.0)
    assert "reoriented from LPS to RAS" in v2.notes and v1.kind == "NIfTI"
    assert v1.description == "NIfTI · 6 × 7 × 5 voxels"


def test_nifti_without_orientation_codes_is_unoriented() -> None:
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), None)  # qform, sform codes 0
    vol = scans_nifti.to_volume(img.to_bytes())
    assert not vol.oriented and any("no orientation" in n for n in vol.notes)


def test_multi_echo_series_gives_one_volume_per_echo() -> None:
    files = [(f"e{te}_{k}", slice_file(flat(te + k), 2.0 * k, EchoTime=te)) for te in (10, 80)
             for k in range(3)]
    scan = read_scans(files)
    assert [v.description for v in scan.volumes] == ["MR · T1 AXIAL · TE 10 ms · 3 slices",
                                                     "MR · T1 AXIAL · TE 80 ms · 3 slices"]
    assert not any("duplicated" in n for v in scan.volumes for n in v.notes)


def test_rows_toward_the_right_are_flipped_and_slices_still_run_inferior_to_superior() -> None:
    iop = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # rows toward the patient's right: normal is −z
    px = np.full((H, W), 100, np.uint16)
    px[3, 1] = 900  # column 1: near the patient's left
    files = [(f"f{k}", dicom_bytes(px + k, SeriesInstanceUID="7", ImageOrientationPatient=iop,
                                   ImagePositionPatient=[0.0, 0.0, 2.0 * k],
                                   PixelSpacing=[1, 1])) for k in range(3)]
    (vol,) = read_scans(files[::-1]).volumes
    assert [float(vol.data[0, 0, k]) for k in range(3)] == [100, 101, 102]  # z grows: S
    v = view(vol, 2, index=0)
    np.testing.assert_array_equal(v.array, px[:, ::-1])  # radiological: the left on the right
    assert np.argwhere(v.array == 900)[0, 1] == W - 2


def test_dicom_series_and_nifti_of_the_same_anatomy_agree() -> None:
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 1000, (4, H, W)).astype(np.uint16)  # [slice, row, column]
    files = [(f"d{k}", slice_file(stack[k], 3.0 * k, PixelSpacing=[1.0, 1.0]))
             for k in range(4)]
    (dcm,) = read_scans(files).volumes
    # the same voxels as NIfTI: index (column, row, slice), voxel → RAS = LPS with x, y negated
    nii = nib.Nifti1Image(stack.transpose(2, 1, 0).astype(np.float32),
                          np.diag([-1.0, -1.0, 3.0, 1.0]))
    (nvol,) = read_scans([("same.nii", nii.to_bytes())]).volumes
    np.testing.assert_array_equal(dcm.data, nvol.data)
    assert dcm.spacing == nvol.spacing == (1.0, 1.0, 3.0)


def test_gantry_tilt_is_said() -> None:
    files = [(f"g{k}", dicom_bytes(flat(100 + k), SeriesInstanceUID="8",
                                   ImageOrientationPatient=AXIAL, PixelSpacing=[1, 1],
                                   ImagePositionPatient=[0.0, 0.5 * k, 2.0 * k]))
             for k in range(3)]
    (vol,) = read_scans(files).volumes
    assert any("sheared (gantry tilt about 14°)" in n for n in vol.notes)


def test_differing_slices_at_one_position_are_said() -> None:
    files = [*series([0, 2, 4]), ("t2", slice_file(flat(999), 2.0))]
    (vol,) = read_scans(files).volumes
    (note,) = [n for n in vol.notes if "duplicated" in n]
    assert "1 of them differ from the slice kept" in note and vol.shape[2] == 3


def test_nifti_free_text_description_stays_out_of_the_volume_description() -> None:
    """A NIfTI header's ``descrip`` is free text (a name may be there): it is kept in
    ``meta`` for the screen and left out of the description that reports carry."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ones((4, 5, 3), np.float32), np.eye(4))
    img.header["descrip"] = b"DOE^JANE T1 1951"
    vol = read_scans([("x.nii", img.to_bytes())]).volumes[0]
    assert "DOE" not in vol.description and vol.description.startswith("NIfTI")
    assert vol.meta["description"] == "DOE^JANE T1 1951"
