"""BatchConfig (JSON round trip, the hash, method keys, checks), the summary statistics, and
B-LRP's certainty on the bundled digits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lrp_engine.batch import BatchConfig, ConfigError, ResultsFolder, config_hash, run_local
from lrp_engine.batch.config import alpha_key, item_columns, method_keys, metric_columns, validate
from lrp_engine.batch.results import auroc, certainty_summary, mean_sem
from lrp_engine.batch.worker import blrp_certainty


def test_json_round_trip_and_hash() -> None:
    cfg = BatchConfig(input="mri-demo:40", methods=("epsilon", "blrp"), blrp_alphas=(2.5, 50),
                      limit=7, out="x")
    again = BatchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert cfg.blrp_alphas == (2.5, 50) and BatchConfig(blrp_alphas=(5.0,)).blrp_alphas == (5,)
    for same in (dict(out="y"), dict(device="auto"), dict(batch_size=3), dict(quiet=True),
                 dict(backend="ray", workers=4, ray_address="auto"), dict(overwrite=True)):
        assert config_hash(cfg.replace(**same)) == config_hash(cfg), same
    for other in (dict(steps=10), dict(seed=1), dict(limit=8), dict(blrp_samples=5),
                  dict(methods=("epsilon",)), dict(fill="zero"), dict(target="predicted")):
        assert config_hash(cfg.replace(**other)) != config_hash(cfg), other
    with pytest.raises(ConfigError, match="unknown batch setting"):
        BatchConfig.from_dict({"inputs": "mnist"})


def test_method_keys_and_columns() -> None:
    cfg = BatchConfig(input="mri-demo", methods=("epsilon", "blrp", "random"),
                      blrp_alphas=(5, 2.5), metrics=("pixel-flipping", "rma"))
    assert method_keys(cfg) == ["epsilon", "blrp_a5", "blrp_a2p5", "random"]
    assert alpha_key(95) == "blrp_a95" and cfg.metrics == ("pf", "rma")
    assert item_columns(cfg)[-1] == "blrp_certainty"
    assert metric_columns(cfg)[:3] == ["epsilon.pf_auc", "epsilon.pf_aopc", "epsilon.rma"]
    assert all(c.count(".") == 1 for c in metric_columns(cfg))
    # no masks on the digits: rma and pointing drop out
    assert "epsilon.rma" not in metric_columns(cfg.replace(input="mnist"))


@pytest.mark.parametrize("changes, words", [
    (dict(methods=()), "no methods"), (dict(methods=("epsilon", "epsilon")), "twice"),
    (dict(methods=("blrp",), blrp_alphas=(101,)), "percentiles"),
    (dict(fill="noise"), "unknown fill"), (dict(steps=1), "--steps"),
    (dict(batch_size=0), "--batch-size"), (dict(input="mri-demo:x"), "mri-demo:N"),
    (dict(device="tpu"), "unknown device")])
def test_validate(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        validate(BatchConfig(**changes))


def test_statistics() -> None:
    assert mean_sem([1.0, 3.0, float("nan")]) == (2.0, 1.0, 2)
    assert math.isnan(mean_sem([4.0])[1]) and mean_sem([])[2] == 0
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0 and auroc([0.1], [0.9]) == 0.0
    assert auroc([0.5, 0.7], [0.5]) == 0.75  # a tie counts a half
    assert math.isnan(auroc([0.5], []))
    rows = [{"correct": 1.0, "blrp_certainty": 0.9}, {"correct": 0.0, "blrp_certainty": 0.4},
            {"correct": float("nan"), "blrp_certainty": 0.1}]
    c = certainty_summary(rows)
    assert (c["mean_correct"], c["mean_wrong"], c["auroc"], c["note"]) == (0.9, 0.4, 1.0, "")
    c = certainty_summary(rows[:1])
    assert math.isnan(c["auroc"]) and "no wrong predictions" in c["note"]


def test_blrp_certainty() -> None:
    agree = torch.tensor([[1.0, 0.0, 0.5], [0.5, 0.5, 0.5]])
    mean = torch.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    c = blrp_certainty(agree, mean)
    assert c[0] == pytest.approx(0.75) and math.isnan(c[1])


def test_blrp_job_writes_certainty(tmp_path: Path) -> None:
    cfg = BatchConfig(input="mnist", limit=6, methods=("blrp",), blrp_samples=4,
                      blrp_alphas=(5, 95), metrics=("pf",), steps=4, pixels_per_step=8,
                      batch_size=6, out=str(tmp_path / "o"), quiet=True)
    run_local(cfg, plots=False)
    folder = ResultsFolder(tmp_path / "o")
    assert folder.methods == ["blrp_a5", "blrp_a95"]
    rows = folder.metrics_rows()
    assert all(0 <= r["blrp_certainty"] <= 1 for r in rows)
    c = folder.certainty()
    assert c is not None and c["n_correct"] + c["n_wrong"] == 6
    assert "B-LRP certainty" in folder.summary_markdown()
