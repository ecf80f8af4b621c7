"""lrp_engine.torchvision_compat: each way ``import_torchvision`` can go.

The real import runs in a subprocess (the schemas it may define and the ``torchvision*``
modules it drops would otherwise stay in this process); the other paths replace the import
in this process with ``monkeypatch``, which puts ``sys.modules`` back afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from importlib.abc import MetaPathFinder
from pathlib import Path

import pytest

from lrp_engine import torchvision_compat as compat

ROOT = Path(__file__).resolve().parents[1]

_REAL_IMPORT = """
import json, torch
from lrp_engine.torchvision_compat import import_torchvision, uses_fallback
tv = import_torchvision()
from PIL import Image
model = tv.models.resnet18(num_classes=3).eval()
with torch.no_grad():
    logits = model(torch.rand(1, 3, 32, 32))
t = tv.transforms.Compose([tv.transforms.Resize(40), tv.transforms.CenterCrop(32),
                           tv.transforms.ToTensor()])
x = t(Image.new("RGB", (64, 48), (255, 0, 0)))
print(json.dumps({"fallback": uses_fallback(), "has_ops": tv.extension._has_ops(),
                  "logits": list(logits.shape), "x": list(x.shape), "red": float(x[0].mean())}))
"""


def test_real_import_models_and_transforms_work() -> None:
    """Here torchvision's C++ ops cannot load, so the fallback runs; on a normal install the
    plain import does. Either way the models and transforms work."""
    out = subprocess.run([sys.executable, "-c", _REAL_IMPORT], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["fallback"] is (not got["has_ops"])  # fallback exactly when the ops are missing
    assert got["logits"] == [1, 3] and got["x"] == [3, 32, 32] and got["red"] == 1.0


class _Raising(MetaPathFinder):
    """Makes ``import torchvision`` raise ``error`` (once, or every time)."""

    def __init__(self, error: Exception, times: int = 1_000) -> None:
        self.error, self.times = error, times

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and self.times > 0:
            self.times -= 1
            raise self.error
        return None


@pytest.fixture
def no_torchvision(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``torchvision`` not yet imported in this process (restored afterwards)."""
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    return monkeypatch


def _forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the fallback ran")

    for name in names:
        monkeypatch.setattr(compat, name, fail)


def test_normal_install_defines_no_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("torchvision")
    monkeypatch.setitem(sys.modules, "torchvision", fake)  # the plain import succeeds
    _forbid(monkeypatch, "_define_schemas", "_drop_partial_imports")
    assert compat.import_torchvision() is fake


def test_missing_ops_drop_partial_modules_then_define_schemas_then_retry(
        no_torchvision: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("torchvision")
    calls: list[str] = []
    no_torchvision.setattr(compat, "_drop_partial_imports", lambda: calls.append("drop"))

    def define() -> None:
        calls.append("define")
        no_torchvision.setitem(sys.modules, "torchvision", fake)  # the retry now succeeds

    no_torchvision.setattr(compat, "_define_schemas", define)
    no_torchvision.setattr(sys, "meta_path", [
        _Raising(RuntimeError(compat.MISSING_OPS_ERROR), times=1), *sys.meta_path])
    assert compat.import_torchvision() is fake
    assert calls == ["drop", "define"]


def test_any_other_runtime_error_is_a_clear_import_error(
        no_torchvision: pytest.MonkeyPatch) -> None:
    _forbid(no_torchvision, "_define_schemas", "_drop_partial_imports")
    no_torchvision.setattr(sys, "meta_path", [
        _Raising(RuntimeError("CUDA driver version is insufficient")), *sys.meta_path])
    with pytest.raises(ImportError, match="torchvision could not be imported: CUDA driver "
                                          "version is insufficient"):
        compat.import_torchvision()


def test_not_installed_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import → ModuleNotFoundError
    with pytest.raises(ImportError, match=r"torchvision is not installed: pip install "
                                          r"torchvision==0\.28\.0"):
        compat.import_torchvision()
