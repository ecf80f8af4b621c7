"""lrp_engine: Layer-wise Relevance Propagation for PyTorch image classifiers.

    import lrp_engine as le
    R = le.explain(model, x, target=None, composite="epsilon")  # relevance, shape of x

No Streamlit here: the dashboard in ``app_pages/`` only calls into this package.
"""

from .bayes import DEFAULT_ALPHAS, BLRPResult, blrp, percentiles
from .composites import (
    PRESET_DOCS,
    PRESETS,
    ByBlock,
    ByDepth,
    ByIndex,
    ByName,
    ByType,
    Composite,
    First,
    Last,
    Selector,
    get_composite,
)
from .conservation import ConservationReport, ConservationRow, conservation
from .core import (
    Explanation,
    LayerRelevance,
    RelevancePass,
    analyze,
    explain,
    gradient_x_input,
    resolve_target,
)
from .graph_ops import Sum
from .layers import LayerInfo, LayerTable, UnsupportedLayerError, layer_table, model_macs
from .rule_spec import (
    RULE_LABELS,
    LayerRule,
    composite_from_rows,
    follow_globals,
    rows_from_composite,
    rule_from_row,
)
from .rules import (
    RULES,
    AlphaBeta,
    Epsilon,
    EpsilonStd,
    Flat,
    Gamma,
    GammaPlain,
    Pass,
    Rule,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
    make_rule,
)

__all__ = [
    "BLRPResult", "DEFAULT_ALPHAS", "blrp", "percentiles",
    "PRESETS", "PRESET_DOCS", "RULES", "AlphaBeta", "ByBlock", "ByDepth", "ByIndex", "ByName",
    "ByType", "Composite", "ConservationReport", "ConservationRow", "Epsilon", "EpsilonStd",
    "Explanation", "First", "Flat", "Gamma", "GammaPlain", "Last", "LayerInfo", "LayerRelevance",
    "LayerTable", "Pass", "RelevancePass", "Rule", "Selector", "UnsupportedLayerError",
    "Sum", "WSquare", "ZBox", "ZPlus", "Zero", "analyze", "conservation", "explain",
    "get_composite", "gradient_x_input", "layer_table", "make_rule", "model_macs", "resolve_target",
    "RULE_LABELS", "LayerRule", "composite_from_rows", "follow_globals", "rows_from_composite",
    "rule_from_row",
]
