"""``python -m lrp_engine batch`` / ``lrp-explorer batch``: a small job, and every bad input as
one line on stderr with exit status 2 (never a traceback); Ctrl-C exits 130; --ray without
Ray says how to install it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from lrp_engine.batch import BatchConfig, config_hash
from lrp_engine.batch import worker as worker_module
from lrp_engine.batch.command import RAY_MISSING
from lrp_engine.cli import main
from tests.batch_data import digit_folder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "4", "--pixels-per-step", "8", "--metrics", "pf", "--quiet"]


def _batch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["batch", *args])
    cap = capsys.readouterr()
    return status, cap.out, cap.err


def _one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, err)


def test_a_small_job_prints_the_summary(tmp_path: Path, capsys) -> None:
    status, out, err = _batch(capsys, "--input", "mnist", "--limit", "6", "--out",
                              str(tmp_path / "o"), "--methods", "epsilon", "random", *FAST)
    assert status == 0, err
    assert "| epsilon |" in out and "6 items: 6 computed now" in out
    assert (tmp_path / "o" / "summary.md").read_text() in out
    status, out, _ = _batch(capsys, "--input", "mnist", "--limit", "6", "--out",
                            str(tmp_path / "o"), "--methods", "epsilon", "random", *FAST)
    assert status == 0 and "0 computed now, 6 from an earlier run" in out


@pytest.mark.parametrize("case", ["missing", "empty", "file", "no-model", "method", "metric",
                                  "steps", "masks", "card-alone"])
def test_bad_arguments_are_one_line(case: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "f.png").write_bytes(b"x")
    digit_folder(tmp_path / "digits", 2)
    args = {
        "missing": (["--input", str(tmp_path / "nope"), "--model", "lenet"], "not found"),
        "empty": (["--input", str(tmp_path / "empty"), "--model", "lenet"], "no images"),
        "file": (["--input", str(tmp_path / "f.png"), "--model", "lenet"], "not a folder"),
        "no-model": (["--input", str(tmp_path / "digits")], "--model"),
        "method": (["--input", "mnist", "--methods", "lime"], "unknown method"),
        "metric": (["--input", "mnist", "--metrics", "iou"], "unknown metric"),
        "steps": (["--input", "mnist", "--steps", "300", "--pixels-per-step", "8"],
                  "flips more than"),
        "masks": (["--input", str(tmp_path / "digits"), "--model", "lenet", "--masks",
                   str(tmp_path / "nomasks")], "mask folder not found"),
        "card-alone": (["--input", "mnist", "--card", "c.json"], "--checkpoint"),
    }[case]
    status, _, err = _batch(capsys, *args[0], "--out", str(tmp_path / "out"), "--quiet")
    assert status == 2
    _one_line_error(err, args[1])


def test_checkpoints_and_cards(tmp_path: Path, capsys) -> None:
    from tests.hostile_files import lenet_checkpoint

    digit_folder(tmp_path / "digits", 3)
    (tmp_path / "lenet.pt").write_bytes(lenet_checkpoint())
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint" * 10)
    (tmp_path / "card.json").write_text(
        '{"architecture": "lenet", "num_classes": 7, "preprocessing": {"size": [32, 32], '
        '"resize": "stretch", "channels": 1, "mean": [0.1307], "std": [0.3081]}}')
    common = ["--input", str(tmp_path / "digits"), "--out", str(tmp_path / "o"), *FAST]
    status, _, err = _batch(capsys, *common, "--model", "lenet", "--checkpoint",
                              str(tmp_path / "lenet.pt"))
    assert status == 0, err
    for args, words in [
            (["--model", "mlp", "--checkpoint", str(tmp_path / "lenet.pt")], ()),
            (["--model", "lenet", "--checkpoint", str(tmp_path / "junk.pt")], ()),
            (["--model", "lenet", "--checkpoint", str(tmp_path / "missing.pt")],
             ("not found",)),
            (["--model", "lenet", "--checkpoint", str(tmp_path / "lenet.pt"), "--card",
              str(tmp_path / "card.json")], ("7 classes",))]:
        status, _, err = _batch(capsys, *common, "--overwrite", *args)
        assert status == 2, (args, err)
        _one_line_error(err, *words)


def test_another_config_into_the_same_folder(tmp_path: Path, capsys) -> None:
    common = ["--input", "mnist", "--limit", "3", "--out", str(tmp_path / "o"),
              "--methods", "epsilon", *FAST]
    assert _batch(capsys, *common)[0] == 0
    status, _, err = _batch(capsys, *common, "--seed", "1")
    assert status == 2
    _one_line_error(err, "another configuration", "--overwrite")
    assert _batch(capsys, *common, "--seed", "1", "--overwrite")[0] == 0


def test_ctrl_c_exits_130_after_finalising(tmp_path: Path, capsys, monkeypatch) -> None:
    real = worker_module.BatchWorker.__call__
    seen = []

    def call(self, batch):  # type: ignore[no-untyped-def]
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(worker_module.BatchWorker, "__call__", call)
    status, _, err = _batch(capsys, "--input", "mnist", "--limit", "6", "--batch-size", "3",
                            "--out", str(tmp_path / "o"), "--methods", "epsilon", *FAST)
    assert status == 130 and "interrupted: 3 of 6 items" in err and "resume" in err
    assert len(list((tmp_path / "o" / "items").glob("*.npz"))) == 3
    assert (tmp_path / "o" / "metrics.csv").read_text().count("\n") == 1 + 3


def test_ray_without_ray_says_how_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    status, _, err = _batch(capsys, "--input", "mnist", "--ray", "--out",
                            str(tmp_path / "o"), *FAST)
    assert status == 2 and err.strip() == RAY_MISSING
    cfg_local = BatchConfig(input="mnist", out="a")
    assert config_hash(cfg_local) == config_hash(cfg_local.replace(backend="ray", workers=2,
                                                                   ray_address="auto"))


def test_both_commands_reach_batch() -> None:
    for cmd in ([sys.executable, "-m", "lrp_engine", "batch", "--help"],
                [sys.executable, "-m", "lrp_explorer.cli", "batch", "--help"]):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "--blrp-alphas" in proc.stdout and "--ray" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "lrp_engine", "batch", "--input",
                           "/nonexistent/x", "--model", "lenet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: input folder not found")
    assert "Traceback" not in proc.stderr
