"""Resuming, refusing another config, Ctrl-C and batch sizes, on the bundled digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lrp_engine.batch import (
    BatchConfig,
    BatchError,
    BatchWorker,
    Interrupted,
    ResultsFolder,
    config_hash,
    run_local,
)
from lrp_engine.batch import worker as worker_module
from tests.batch_data import fast_config

N = 10


def _cfg(out: Path, **changes: object) -> BatchConfig:
    return fast_config(input="mnist", limit=N, out=str(out), **changes)


class Counting(BatchWorker):
    """A worker that counts the items it is given (and can be told to stop)."""

    def __init__(self, cfg: BatchConfig, out_dir: str, interrupt_at: int | None = None) -> None:
        super().__init__(cfg, out_dir)
        self.items: list[str] = []
        self.interrupt_at = interrupt_at

    def __call__(self, batch):  # type: ignore[no-untyped-def]
        if self.interrupt_at is not None and self.calls + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.items += list(batch["key"])
        return super().__call__(batch)


def _snapshot(out: Path) -> dict[str, dict[str, np.ndarray]]:
    items = {}
    for p in sorted((out / "items").glob("*.npz")):
        with np.load(p) as z:
            items[p.stem] = {k: z[k] for k in z.files}
    return items


def _same(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].keys() == b[k].keys()
        for name in a[k]:
            np.testing.assert_array_equal(a[k][name], b[k][name], err_msg=f"{k} {name}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    run_local(_cfg(out), plots=False)
    return out


def test_resume_skips_finished_items(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "out"
    cfg = _cfg(out)
    first = Counting(cfg, str(out))
    run_local(cfg, plots=False, worker=first)
    assert first.calls == 3 and len(first.items) == N  # batches of 4: 4 + 4 + 2
    table = (out / "metrics.csv").read_bytes()
    again = Counting(cfg, str(out))
    report = run_local(cfg, plots=False, worker=again)
    assert again.calls == 0 and report.n_done_before == N and report.n_computed == 0
    assert (out / "metrics.csv").read_bytes() == table
    # one item lost: only its batch runs again, and the results are the same
    lost = sorted((out / "items").glob("*.npz"))[0]
    lost.unlink()
    third = Counting(cfg, str(out))
    run_local(cfg, plots=False, worker=third)
    assert third.calls == 1 and lost.stem in third.items and len(third.items) <= 4
    assert (out / "metrics.csv").read_bytes() == table
    _same(_snapshot(out), _snapshot(reference))


def test_another_config_is_refused(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "out"
    run_local(_cfg(out), plots=False)
    other = _cfg(out, steps=5)
    assert config_hash(other) != config_hash(_cfg(out))
    with pytest.raises(BatchError, match="another configuration"):
        run_local(other, plots=False)
    # where it runs and how fast do not change the hash: resumed, not refused
    assert config_hash(_cfg(out, batch_size=7, device="auto", quiet=False)) == \
        config_hash(_cfg(out))
    report = run_local(other.replace(overwrite=True), plots=False)
    assert report.n_done_before == 0 and report.n_computed == N
    assert ResultsFolder(out).config.steps == 5
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("keep me")
    with pytest.raises(BatchError, match="not empty"):
        run_local(_cfg(tmp_path / "foreign"), plots=False)
    run_local(_cfg(tmp_path / "foreign", overwrite=True), plots=False)
    assert (tmp_path / "foreign" / "thesis.tex").read_text() == "keep me"


def test_interrupt_leaves_no_partial_file_and_resumes_to_the_same_results(
        tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "out"
    cfg = _cfg(out)
    stopping = Counting(cfg, str(out), interrupt_at=2)
    with pytest.raises(Interrupted) as info:
        run_local(cfg, plots=False, worker=stopping)
    assert info.value.report.n_computed == 4
    assert len(list((out / "items").glob("*.npz"))) == 4
    assert not list(out.rglob("*.tmp"))
    assert len(ResultsFolder(out).metrics_rows()) == 4  # what was done is finalised
    rest = Counting(cfg, str(out))
    run_local(cfg, plots=False, worker=rest)
    assert rest.calls == 2 and len(rest.items) == N - 4
    _same(_snapshot(out), _snapshot(reference))
    assert (out / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()


def test_interrupt_while_writing_an_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         reference: Path) -> None:
    """Ctrl-C inside np.savez (the third item file): that file never appears, not even as
    a temporary one; a rerun completes to the same results."""
    out = tmp_path / "out"
    real = np.savez_compressed
    calls = []

    def savez(f, **arrays):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            f.write(b"half a file")
            raise KeyboardInterrupt
        return real(f, **arrays)

    monkeypatch.setattr(worker_module.np, "savez_compressed", savez)
    with pytest.raises(Interrupted):
        run_local(_cfg(out), plots=False)
    monkeypatch.setattr(worker_module.np, "savez_compressed", real)
    assert len(list((out / "items").glob("*.npz"))) == 2
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    run_local(_cfg(out), plots=False)
    _same(_snapshot(out), _snapshot(reference))


def test_batch_size_changes_results_by_rounding_only(tmp_path: Path, reference: Path) -> None:
    """Not bit-identical on the CPU: batched convolutions round differently with another
    batch size (LRP and G×I maps differ by ~1e-7); everything agrees to float rounding."""
    out = tmp_path / "out"
    run_local(_cfg(out, batch_size=3), plots=False)
    a, b = _snapshot(out), _snapshot(reference)
    assert a.keys() == b.keys()
    for k in a:
        for name, v in a[k].items():
            if name == "row":
                continue
            np.testing.assert_allclose(v, b[k][name], rtol=1e-4, atol=1e-5, err_msg=name)
    ra = {r["key"]: r for r in ResultsFolder(out).metrics_rows()}
    for r in ResultsFolder(reference).metrics_rows():
        for col, v in r.items():
            if isinstance(v, float) and np.isfinite(v):
                assert ra[r["key"]][col] == pytest.approx(v, rel=1e-4, abs=1e-5), col
