"""The installable package: the wheel's contents, the engine alone in a fresh venv (torch,
numpy and pillow only: no Streamlit, plotly, pydicom or nibabel), and the ``lrp-explorer``
command run from a directory outside the repository.

The fresh venv gets the wheel with ``--no-deps`` and borrows torch, numpy, pillow and torch's
own import-time dependencies from this interpreter's site-packages through symlinks in a
temporary folder named by a ``.pth`` file, so nothing is downloaded or reinstalled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

ROOT = Path(__file__).resolve().parents[1]

#: what a wheel is built from (a copy, so that no build/ or *.egg-info lands in the checkout)
SOURCES = ("pyproject.toml", "README.md", "lrp_engine", "lrp_explorer")

#: top-level names torch, numpy and pillow need on import (torch's Requires-Dist that it
#: imports, and the vendored shared libraries of numpy and pillow)
BORROWED = ("torch", "functorch", "torchgen", "numpy", "numpy.libs", "PIL", "pillow.libs",
            "typing_extensions.py", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
            "fsspec", "filelock")
#: distributions whose metadata comes along (importlib.metadata look-ups)
BORROWED_DISTS = ("torch", "numpy", "pillow", "typing_extensions", "sympy", "mpmath",
                  "networkx", "jinja2", "markupsafe", "fsspec", "filelock")

#: the bundled files the engine reads at run time
ENGINE_ASSETS = (
    "lrp_engine/assets/models/lenet_mnist.pt",
    "lrp_engine/assets/models/mlp_mnist.pt",
    "lrp_engine/assets/models/efficientnet_lite0_imagenet.pth",
    "lrp_engine/assets/models/mri_demo.pt",
    "lrp_engine/assets/models/mri_demo3d.pt",
    "lrp_engine/assets/mnist/mnist_5k_split.npz",
    "lrp_engine/assets/mri/mni152_slices.npz",
    "lrp_engine/assets/images/cat_chelsea.jpg",
    "lrp_engine/assets/README.md",
    "lrp_engine/assets/MRI.md",
    "lrp_engine/assets/IMAGES.md",
    "lrp_engine/models/imagenet_classes.txt",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(out.glob("lrp_explorer-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv_with_wheel(venv: Path, wheel: Path) -> Path:
    """A new venv at ``venv`` (no pip) with only the wheel installed, no dependencies;
    returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                        "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return python


@pytest.fixture(scope="module")
def engine_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel (no dependencies) and a .pth to the borrowed packages;
    returns its python."""
    base = tmp_path_factory.mktemp("venv")
    venv = base / "venv"
    python = _venv_with_wheel(venv, wheel)
    here = Path(sysconfig.get_paths()["purelib"])
    borrowed = base / "borrowed"
    borrowed.mkdir()
    for name in BORROWED:
        if (here / name).exists():
            (borrowed / name).symlink_to(here / name)
    for dist in BORROWED_DISTS:
        for info in here.glob(f"{dist}-*.dist-info"):
            (borrowed / info.name).symlink_to(info)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(f"{borrowed}\n")
    return python


def _run(python: Path | str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    # every file the repository keeps in the two packages (data included) is in the wheel
    tracked = subprocess.run(["git", "ls-files", "lrp_engine", "lrp_explorer"], cwd=ROOT,
                             capture_output=True, text=True)
    if tracked.returncode == 0:
        missing = sorted(set(tracked.stdout.split()) - names)
        assert not missing, missing
    with zipfile.ZipFile(wheel) as z:
        entry_points = next(z.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for path in ("lrp_engine/__init__.py", "lrp_engine/cli.py", "lrp_engine/models/zoo.py",
                 "lrp_explorer/__init__.py", "lrp_explorer/cli.py", "lrp_explorer/app.py",
                 "lrp_explorer/app_pages/digits.py", "lrp_explorer/app_pages/mri_inspector.py",
                 "lrp_explorer/ui/__init__.py", "lrp_explorer/ui/resources.py", *ENGINE_ASSETS):
        assert path in names, path
    assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names)
    assert "lrp-explorer = lrp_explorer.cli:main" in entry_points
    requires = {line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")}
    for req in ("torch==2.13.0", "numpy==2.4.6", "pillow==12.0.0",
                'streamlit==1.67.0; extra == "app"', 'pydicom==3.0.2; extra == "medical"',
                'nibabel==5.4.2; extra == "medical"', 'torchvision==0.28.0; extra == "torchvision"',
                'pytest==9.2.0; extra == "dev"'):
        assert req in requires, (req, sorted(requires))
    assert not any(r.startswith(("streamlit", "plotly", "pydicom", "nibabel"))
                   and "extra ==" not in r for r in requires)


def test_pins_match_requirements() -> None:
    """pyproject's pins are the pins of requirements*.txt (one version of each package)."""
    pins = {}
    for f in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / f).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[name.lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    in_pyproject = {d.split("==")[0].lower(): d.split("==")[1] for d in declared}
    for name, version in pins.items():
        assert in_pyproject.get(name) == version, name


def test_engine_alone(engine_venv: Path, tmp_path: Path) -> None:
    code = """
import importlib.util, json
import torch
import lrp_engine as le
from lrp_engine.models import BUNDLED, load_bundled
assert le.__file__.startswith(__import__("sys").prefix), le.__file__
model = load_bundled("lenet")
side = BUNDLED["lenet"]["input_size"]
R = le.explain(model, torch.zeros(1, 1, side, side), target=3, composite="epsilon")
assert tuple(R.shape) == (1, 1, side, side), R.shape
assert bool(torch.isfinite(R).all())
assert callable(le.pixel_flipping)
print(json.dumps({m: importlib.util.find_spec(m) is not None
                  for m in ("streamlit", "plotly", "pydicom", "nibabel")}))
"""
    r = _run(engine_venv, code, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    found = r.stdout.strip().splitlines()[-1]
    assert found == ('{"streamlit": false, "plotly": false, "pydicom": false, '
                     '"nibabel": false}'), found


def test_lrp_explorer_command(engine_venv: Path, tmp_path: Path) -> None:
    command = engine_venv.parent / "lrp-explorer"
    assert command.is_file()
    r = subprocess.run([str(command), "--help"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for word in ("run", "explain", "experiment", "localisation"):
        assert word in r.stdout
    r = subprocess.run([str(command), "explain", "--help"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lrp-explorer explain" in r.stdout
    # and it explains, with torch, numpy and pillow only (the bundled photo, EfficientNet)
    assets = ROOT / "lrp_engine" / "assets"
    r = subprocess.run([str(command), "explain", "--model", "efficientnet_lite0", "--weights",
                        str(assets / "models" / "efficientnet_lite0_imagenet.pth"),
                        str(assets / "images" / "cat_chelsea.jpg"), "-o", "cat.png"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "cat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without the app extra, `run` says what to install instead of a traceback
    r = subprocess.run([str(command), "run"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 1
    assert "lrp-explorer[app]" in r.stderr


def test_run_passes_the_safe_defaults() -> None:
    """``lrp-explorer run`` passes .streamlit/config.toml's settings as flags (Streamlit reads
    that file only from the working directory); a flag on the command line wins."""
    from lrp_explorer import APP
    from lrp_explorer.cli import STREAMLIT_SETTINGS, streamlit_command

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": (str(v).lower() if isinstance(v, bool) else str(v))
            for section, values in config.items() for key, v in values.items()}
    assert STREAMLIT_SETTINGS == flat
    cmd = streamlit_command(["--server.address", "0.0.0.0", "--server.port=8600"])
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert cmd.count("--server.address") == 1 and "0.0.0.0" in cmd
    assert "--server.port" not in cmd and "--server.port=8600" in cmd
    i = cmd.index("--server.maxUploadSize")
    assert cmd[i + 1] == "600"
    i = cmd.index("--client.showErrorDetails")
    assert cmd[i + 1] == "none"
    i = cmd.index("--browser.gatherUsageStats")
    assert cmd[i + 1] == "false"


def test_python_m_lrp_explorer_help(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "lrp_explorer", "explain", "--help"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "lrp_engine", "--help"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "python -m lrp_engine" in r.stdout


@pytest.fixture(scope="module")
def app_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel (no dependencies) that borrows every package of this
    interpreter (the ``app`` and ``medical`` extras installed) through a .pth; the wheel's
    own packages come first. Returns its python."""
    venv = tmp_path_factory.mktemp("appvenv") / "venv"
    python = _venv_with_wheel(venv, wheel)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_app_renders(app_venv: Path, tmp_path: Path) -> None:
    """The installed app (not the checkout) renders its home page and a page, run from a
    directory outside the repository."""
    code = """
import sys
import lrp_engine, lrp_explorer
from streamlit.testing.v1 import AppTest
assert lrp_explorer.__file__.startswith(sys.prefix), lrp_explorer.__file__
assert lrp_engine.__file__.startswith(sys.prefix), lrp_engine.__file__
at = AppTest.from_file(str(lrp_explorer.APP), default_timeout=120)
at.run()
assert not at.exception, at.exception
assert at.title[0].value == "LRP Explorer"
assert any("Digits" in e.proto.label for e in at.get("page_link"))
page = AppTest.from_file(str(lrp_explorer.APP.parent / "app_pages" / "filters.py"),
                         default_timeout=120)
page.run()
assert not page.exception, page.exception
print("ok")
"""
    r = _run(app_venv, code, tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_lrp_explorer_run_serves(app_venv: Path, tmp_path: Path) -> None:
    """``lrp-explorer run`` from a directory without .streamlit/ starts a server on
    127.0.0.1 (the safe defaults travel as flags)."""
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(app_venv.parent / "lrp-explorer"), "run",
                                 "--server.port", str(port)], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                timeout=2) as r:
                        if r.read().decode().strip() == "ok":
                            break
                except (urllib.error.URLError, OSError):
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert f"127.0.0.1:{port}" in text, text
    assert "0.0.0.0" not in text, text
