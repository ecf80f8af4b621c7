"""The rule controls shared by every explaining page: a preset, global γ/ε, the MaxPool
treatment and a per-layer table whose rows can be edited one by one.

:func:`rule_controls` draws them and returns a :class:`RuleChoice`: hashable rows (the cache
key of every explanation) that :meth:`RuleChoice.composite` turns into an engine composite.
Changing the preset resets the table to that preset's rows; the global sliders start at the
preset's values, and rows that carry that value follow them (tick "follow" off to pin a row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch
from torch import Tensor, nn

import lrp_engine as le
from lrp_engine.rule_spec import DEFAULT_PARAMS, RULE_LABELS


#: label shown in the table → rule short name
def _rule_by_label(label: str) -> str | None:
    """The rule name behind a label of the table's rule column (the live registry)."""
    return next((name for name, (lab, _) in RULE_LABELS.items() if lab == label), None)
#: the ε values offered by the global slider (log-spaced; the preset's own value is added)
EPSILONS = (0.0, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MAXPOOL_LABELS: dict[le.MaxPoolMode, str] = {"avg": "as average pooling",
                                             "winner": "winner takes all"}


@dataclass(frozen=True)
class RuleChoice:
    """What the user chose: one :class:`lrp_engine.LayerRule` per rule layer."""

    preset: str
    rows: tuple[le.LayerRule, ...]
    maxpool: le.MaxPoolMode

    def composite(self, low: float | Tensor | None = None,
                  high: float | Tensor | None = None) -> le.Composite:
        """The engine composite; ``low``/``high``: zB pixel bounds in model-input units."""
        return le.composite_from_rows(self.rows, self.maxpool, low, high, name=self.preset)

    def describe(self) -> str:
        """One line per layer, e.g. ``conv1 (Conv2d): LRP-γ γ=0.25``."""
        out = []
        for r in self.rows:
            label, pname = RULE_LABELS[r.rule]
            p = f" {pname}={r.param:g}" if pname and r.param is not None else ""
            out.append(f"{r.name} ({r.kind}): {label}{p}")
        return "\n".join(out)


def _first_param(rows: Sequence[le.LayerRule], rule: str) -> float | None:
    return next((r.param for r in rows if r.rule == rule and r.param is not None), None)


def _table(rows: Sequence[le.LayerRule], gamma0: float | None, eps0: float | None
           ) -> pd.DataFrame:
    def follows(r: le.LayerRule) -> bool:
        return (r.rule == "gamma" and r.param == gamma0) or (r.rule == "epsilon"
                                                             and r.param == eps0)
    return pd.DataFrame({
        "#": [r.index for r in rows],
        "layer": [r.name for r in rows],
        "type": [r.kind for r in rows],
        "output shape": ["×".join(str(s) for s in r.out_shape[1:]) for r in rows],
        "rule": [RULE_LABELS[r.rule][0] for r in rows],
        "parameter": [r.param for r in rows],
        "follow global": [follows(r) for r in rows],
    })


def rule_controls(model: nn.Module, x: Tensor, model_key: str, ns: str = "rules",
                  presets: Sequence[str] | None = None, default_preset: str = "epsilon"
                  ) -> RuleChoice | None:
    """Draw the rule controls for ``model`` (example input ``x`` [1, C, H, W]) and return
    the choice, or None after showing why the edited table is not usable.

    ``ns`` namespaces the widget keys (two controls on one page need two namespaces);
    ``model_key`` resets the table when the model changes.
    """
    names = list(presets or le.PRESETS)
    key = f"{ns}_preset"
    if st.session_state.get(key) not in names:  # the widget's value lives in session state
        st.session_state[key] = default_preset if default_preset in names else names[0]
    preset = st.selectbox("Preset", names, key=key,
                          help="A named rule assignment; edit single layers in the table below.")
    st.caption(le.PRESET_DOCS.get(preset, ""))
    table = le.layer_table(model, x)
    rows = le.rows_from_composite(preset, table)
    gamma0, eps0 = _first_param(rows, "gamma"), _first_param(rows, "epsilon")

    c1, c2, c3 = st.columns(3)
    gamma = c1.slider("Global γ", 0.0, 2.0, float(round(gamma0 if gamma0 is not None else 0.25,
                                                         3)),
                      step=0.005, format="%.3f", key=f"{ns}_gamma_{preset}",
                      help="LRP-γ rows marked 'follow global' use this γ (more γ favours "
                           "positive contributions).")
    eps_options = sorted({*EPSILONS, eps0 if eps0 is not None else 0.25})
    epsilon = c2.select_slider("Global ε", eps_options,
                               value=eps0 if eps0 is not None else 0.25,
                               format_func=lambda v: f"{v:g}", key=f"{ns}_eps_{preset}",
                               help="LRP-ε rows marked 'follow global' use this ε (more ε "
                                    "absorbs weak, contradictory relevance).")
    maxpool = c3.radio("MaxPool treatment", list(MAXPOOL_LABELS), key=f"{ns}_maxpool",
                       format_func=MAXPOOL_LABELS.__getitem__,
                       help="'As average pooling': the pool is explained as the average pool "
                            "over the same windows, under the layer's rule; 'winner takes all' "
                            "passes relevance to the maximum.")

    edited = st.data_editor(
        _table(rows, gamma0, eps0), key=f"{ns}_table_{model_key}_{preset}", hide_index=True,
        width="stretch", num_rows="fixed",
        disabled=["#", "layer", "type", "output shape"],
        column_config={
            "rule": st.column_config.SelectboxColumn(
                "rule", options=[label for label, _ in RULE_LABELS.values()], required=True,
                help="zB, flat and w² are input-layer rules (first row only)."),
            "parameter": st.column_config.NumberColumn(
                "parameter", min_value=0.0, format="%.4g",
                help="ε for LRP-ε, the factor for ε·rms(z), γ for LRP-γ, α for LRP-αβ."),
            "follow global": st.column_config.CheckboxColumn(
                "follow global", help="Take the global γ / ε slider's value."),
        })
    return choice_from_table(edited, rows, preset, maxpool, gamma, epsilon)


def choice_from_table(edited: pd.DataFrame, rows: Sequence[le.LayerRule], preset: str,
                      maxpool: le.MaxPoolMode, gamma: float, epsilon: float
                      ) -> RuleChoice | None:
    """The edited table (same row order as ``rows``) → a validated choice (or None with an
    ``st.error``)."""
    new_rows = []
    for r, (_, e) in zip(rows, edited.iterrows(), strict=True):
        rule = _rule_by_label(str(e["rule"])) or r.rule
        p = e["parameter"]
        param = None if p is None or pd.isna(p) else float(p)
        if rule != r.rule and rule not in DEFAULT_PARAMS:  # a rule without a parameter
            param = None
        new_rows.append(le.LayerRule(r.index, r.name, r.kind, r.out_shape, rule, param))
    follow = [bool(f) for f in edited["follow global"]]
    rows2 = le.follow_globals(new_rows, follow, gamma, epsilon)
    choice = RuleChoice(preset if tuple(rows2) == tuple(rows) else f"{preset} (edited)",
                        rows2, maxpool)
    try:
        choice.composite()
    except ValueError as e:
        st.error(f"These rules cannot be used: {e}")
        return None
    return choice


def bounds_tensor(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-channel zB bounds as a [C] tensor on ``like``'s device and dtype."""
    return torch.tensor(list(values), dtype=like.dtype, device=like.device)
