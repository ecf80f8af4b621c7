"""The rule table's edits → a rule choice: a row switched to a rule without a parameter
drops its number, one switched between rules with parameters keeps it (every rule the
registry holds, including plain γ and z⁺)."""

from __future__ import annotations

import torch

import lrp_engine as le
from lrp_engine.models import load_bundled
from lrp_engine.rule_spec import RULE_LABELS
from lrp_explorer.ui.rule_table import _table, choice_from_table


def test_switching_rows_to_zplus_and_plain_gamma() -> None:
    model = load_bundled("lenet")
    rows = le.rows_from_composite("epsilon", le.layer_table(model, torch.zeros(1, 1, 32, 32)))
    frame = _table(rows, None, None)
    frame.loc[1, "rule"] = RULE_LABELS["zplus"][0]
    frame.loc[2, "rule"], frame.loc[2, "parameter"] = RULE_LABELS["gamma-plain"][0], 0.5
    choice = choice_from_table(frame, rows, "epsilon", "avg", 0.25, 0.25)
    assert choice is not None and choice.preset == "epsilon (edited)"
    assert (choice.rows[1].rule, choice.rows[1].param) == ("zplus", None)
    assert (choice.rows[2].rule, choice.rows[2].param) == ("gamma-plain", 0.5)
    r = le.explain(model, torch.rand(2, 1, 32, 32), None, choice.composite(0.0, 1.0))
    assert torch.isfinite(r).all()
