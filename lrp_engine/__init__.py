"""lrp_engine: Layer-wise Relevance Propagation for PyTorch image classifiers.

    import lrp_engine as le
    R = le.explain(model, x, target=None, composite="epsilon")  # relevance, shape of x

Also from the top level: faithfulness curves and their summaries (``pixel_flipping``,
``region_perturbation``, ``auc``, ``aopc``), localisation metrics
(``relevance_mass_accuracy``, ``pointing_game``, ``localisation_table``) and volume
explanations (``explain_slices``, ``explain_volume``).

No Streamlit here: the dashboard in ``lrp_explorer/app_pages/`` only calls into this
package. The import stays light (torch and numpy): plotting (:mod:`lrp_engine.viz`,
plotly), scan readers (:mod:`lrp_engine.scans`) and model zoos (:mod:`lrp_engine.models`,
torchvision) are imported only when their modules are.
"""

from .bayes import DEFAULT_ALPHAS, BLRPResult, ShareTrunk, blrp, has_dropout, percentiles
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
    LayerType,
    MaxPoolMode,
    Selector,
    get_composite,
)
from .conservation import ConservationReport, ConservationRow, conservation
from .core import (
    Explanation,
    LayerRelevance,
    RelevancePass,
    Target,
    analyze,
    explain,
    gradient_x_input,
    resolve_target,
)
from .evaluation import (
    FILLS,
    ORDERS,
    SCORES,
    Fill,
    Order,
    Score,
    aopc,
    auc,
    fill_values,
    fraction_flipped,
    pixel_flipping,
    pixel_ranks,
    region_perturbation,
)
from .graph_ops import Sum
from .layers import LayerInfo, LayerTable, Role, UnsupportedLayerError, layer_table, model_macs
from .localisation import (
    Baseline,
    LocalisationRow,
    localisation_table,
    pointing_game,
    random_relevance,
    relevance_mass_accuracy,
)
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
from .volume_explain import (
    Predicted,
    SliceExplanation,
    SliceTarget,
    VolumeExplanation,
    explain_slices,
    explain_volume,
)

__all__ = [
    "AlphaBeta", "BLRPResult", "Baseline", "ByBlock", "ByDepth", "ByIndex", "ByName", "ByType",
    "Composite", "ConservationReport", "ConservationRow", "DEFAULT_ALPHAS", "Epsilon",
    "EpsilonStd", "Explanation", "FILLS", "Fill", "First", "Flat", "Gamma", "GammaPlain", "Last",
    "LayerInfo", "LayerRelevance", "LayerRule", "LayerTable", "LayerType", "LocalisationRow",
    "MaxPoolMode", "ORDERS", "Order", "PRESETS", "PRESET_DOCS", "Pass", "Predicted", "RULES",
    "RULE_LABELS", "RelevancePass", "Role", "Rule", "SCORES", "Score", "Selector", "ShareTrunk",
    "SliceExplanation", "SliceTarget", "Sum", "Target", "UnsupportedLayerError",
    "VolumeExplanation", "WSquare", "ZBox", "ZPlus", "Zero", "analyze", "aopc", "auc", "blrp",
    "composite_from_rows", "conservation", "explain", "explain_slices", "explain_volume",
    "fill_values", "follow_globals", "fraction_flipped", "get_composite", "gradient_x_input",
    "has_dropout", "layer_table", "localisation_table", "make_rule", "model_macs", "percentiles",
    "pixel_flipping", "pixel_ranks", "pointing_game", "random_relevance", "region_perturbation",
    "relevance_mass_accuracy", "resolve_target", "rows_from_composite", "rule_from_row",
]
