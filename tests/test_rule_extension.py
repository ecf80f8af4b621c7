"""A rule defined outside the engine works everywhere rules are named, with no other file
edited: :func:`lrp_engine.make_rule`, the rule table's rows (``rows_from_composite``,
``rule_from_row``, ``composite_from_rows``), ``RULE_LABELS``, the conservation report's
loss reason and :func:`lrp_engine.explain`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

import lrp_engine as le
from lrp_engine.rule_spec import DEFAULT_PARAMS, INPUT_RULES
from lrp_engine.rules import BasicRule

NAME = "kappa-test"
REASON = "κ-test boosts positive weights and its bias takes a share"


@pytest.fixture
def kappa() -> Iterator[type[le.Rule]]:
    """A brand-new rule, ρ(w) = w + κ w⁺ (plain γ under another name), registered by being
    defined and removed from the registry afterwards."""

    class Kappa(BasicRule):
        name = NAME
        label = "LRP-κ (test)"
        param, param_label, default_param = "kappa", "κ", 0.5
        identity_params = False
        loss_reason = REASON

        def __init__(self, kappa: float = 0.5, stabilizer: float = 1e-9) -> None:
            super().__init__(stabilizer)
            self.kappa = float(kappa)

        def weight(self, w: Tensor) -> Tensor:
            return w + self.kappa * w.clamp(min=0)

        def bias(self, b: Tensor | None) -> Tensor | None:
            return None if b is None else b + self.kappa * b.clamp(min=0)

        def describe(self) -> str:
            return f"κ={self.kappa:g}"

    try:
        yield Kappa
    finally:
        le.RULES.pop(NAME, None)
    assert NAME not in le.RULES and NAME not in le.RULE_LABELS


def _model() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double().eval()
    return model, torch.rand(2, 1, 8, 8, dtype=torch.double)


def test_a_new_rule_is_known_by_name(kappa: type[le.Rule]) -> None:
    assert le.RULES[NAME] is kappa
    assert list(le.RULES)[-1] == NAME  # after the engine's own, in definition order
    assert le.make_rule(NAME, kappa=0.3) == kappa(0.3)
    assert le.RULE_LABELS[NAME] == ("LRP-κ (test)", "κ")
    assert DEFAULT_PARAMS[NAME] == 0.5
    assert NAME not in INPUT_RULES


def test_a_new_rule_in_the_rule_table(kappa: type[le.Rule]) -> None:
    model, x = _model()
    table = le.layer_table(model, x)
    assert le.rule_from_row(NAME) == kappa(0.5)
    assert le.rule_from_row(NAME, math.nan) == kappa(0.5)
    assert le.rule_from_row(NAME, 0.3) == kappa(0.3)
    with pytest.raises(ValueError, match="κ of LRP-κ \\(test\\) must be a finite number ≥ 0"):
        le.rule_from_row(NAME, -1.0)

    rows = le.rows_from_composite("epsilon", table)
    edited = tuple(le.LayerRule(r.index, r.name, r.kind, r.out_shape, NAME, 0.3)
                   if r.name != "5" else r for r in rows)
    comp = le.composite_from_rows(edited)
    assert le.rows_from_composite(comp, table) == edited  # rule ↔ row, both ways


def test_a_new_rule_explains_and_reports_its_loss(kappa: type[le.Rule]) -> None:
    """Explained like the engine's own plain γ (the same formula); the conservation report
    gives the rule's own loss reason."""
    model, x = _model()
    table = le.layer_table(model, x)
    rows = le.rows_from_composite("epsilon", table)

    def with_rule(rule: str) -> le.Composite:
        return le.composite_from_rows(
            le.LayerRule(r.index, r.name, r.kind, r.out_shape, rule, 0.3)
            if r.name != "5" else r for r in rows)

    torch.testing.assert_close(le.explain(model, x, 0, with_rule(NAME)),
                               le.explain(model, x, 0, with_rule("gamma-plain")))

    report = le.conservation(model, x, 0, with_rule(NAME))
    by_name = {row.name: row for row in report.rows}
    assert by_name["0"].rule == "κ=0.3" and by_name["0"].loss_reason == REASON
    assert by_name["5"].loss_reason == le.Epsilon.loss_reason
    lines = report.reasons(tolerance=0.0)
    assert any(line.startswith("0 (") and line.endswith(REASON) for line in lines), lines


def test_a_rule_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="'epsilon' is taken by Epsilon"):
        class Impostor(le.Rule):
            name = "epsilon"

    assert le.RULES["epsilon"] is le.Epsilon
