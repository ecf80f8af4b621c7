"""The layer table: which layers a model runs, in which order, and what LRP does with each.

One probe forward (batch 1) records every leaf module as it executes: its name, type,
input/output shapes and role. Convolutions or linear layers whose output feeds a BatchNorm
directly are marked for folding (canonisation); the probe's autograd graph tells which
layers' outputs are read by nothing but an activation (a pass-activation or a ReLU). The
table drives position-based composites ("first conv", index ranges), the UI's per-layer
rule table and the hooks of one relevance pass. It is cached per model and input shape.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import Tensor, nn

from .graph_ops import SUM_KIND, ProbeMode, Sum
from .ops import AVGPOOL_TYPES, BATCHNORM_TYPES, LINEAR_TYPES, MAXPOOL_TYPES


class UnsupportedLayerError(TypeError):
    """A layer the engine does not know how to propagate relevance through."""


class Role(str, Enum):
    """What the relevance pass does with a layer (the ``role`` of a :class:`LayerInfo`).

    A ``str`` enum: ``Role.LINEAR == "linear"``, it hashes like its value and prints as it
    (``f"{Role.LINEAR}"`` is ``"linear"``), so code and tables that use the plain strings
    keep working.
    """

    LINEAR = "linear"  # Conv1d/2d/3d, Linear: gets a rule
    POOL = "pool"  # average pooling (adaptive too): gets a rule
    MAXPOOL = "maxpool"  # max pooling: a rule under maxpool="avg", else winner takes all
    BATCHNORM = "batchnorm"  # a BatchNorm not folded into its layer: gets a rule
    SUM = "sum"  # a residual sum a + b (no module; see graph_ops.Sum): gets a rule
    NORM = "norm"  # LayerNorm/GroupNorm: σ held constant
    ACTIVATION = "activation"  # ReLU, LeakyReLU: the plain gradient passes relevance
    PASS_ACTIVATION = "pass-activation"  # other elementwise activations: passed through
    GATE = "gate"  # a sigmoid whose output only multiplies: a constant for relevance
    DROPOUT = "dropout"  # identity in eval mode; B-LRP samples masks here
    RESHAPE = "reshape"  # Flatten, Identity, permutations: relevance reshaped
    UNKNOWN = "?"  # not handled (the probe raises UnsupportedLayerError first)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


#: activations whose plain gradient already passes relevance unchanged (R_in = R_out)
NATIVE_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
#: activations that need an explicit pass-through (their gradient would lose relevance)
PASS_ACTIVATIONS = (nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.GELU, nn.ELU, nn.Tanh, nn.Softplus,
                    nn.Hardswish, nn.Mish, nn.Sigmoid, nn.Hardsigmoid)
#: activations that, when their output only multiplies another tensor (squeeze-excitation's
#: ``x * σ(…)``), are gates: constants for relevance (Arras et al. 2017), so relevance flows
#: through the signal only
GATE_TYPES = (nn.Sigmoid, nn.Hardsigmoid)
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
RESHAPE_TYPES = (nn.Flatten, nn.Unflatten, nn.Identity)
#: normalisations whose standard deviation is a constant for relevance (see lrp_engine.norms)
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm)
#: leaf modules of other libraries by qualified class name → role, with the reason
KNOWN_LEAVES: dict[str, Role] = {
    "torchvision.ops.misc.Permute": Role.RESHAPE,  # a permutation of dimensions
    "torchvision.ops.stochastic_depth.StochasticDepth": Role.RESHAPE,  # identity in eval mode
    "torchvision.models.convnext.LayerNorm2d": Role.NORM,  # LayerNorm over channels
}
#: containers whose own parameters are used only as constants for relevance: a factor
#: (layer scale), an added embedding (absorbed like a bias), a concatenated token, or
#: attention projections around a softmax (see :mod:`lrp_engine.graph_ops`)
PARAMETER_CONTAINERS = {
    "torch.nn.modules.activation.MultiheadAttention": "attention projections",
    "torchvision.models.convnext.CNBlock": "layer scale: a constant factor",
    "torchvision.models.vision_transformer.Encoder": "position embedding: added, like a bias",
    "torchvision.models.vision_transformer.VisionTransformer": "class token: concatenated",
    "torchvision.models.swin_transformer.ShiftedWindowAttention": "attention projections",
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": "attention projections",
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention":
        "attention projections",
}

#: roles whose layers get a rule
RULE_ROLES = (Role.LINEAR, Role.POOL, Role.MAXPOOL, Role.BATCHNORM, Role.SUM)


def qualified_name(t: type) -> str:
    """``module.QualName`` of a class, e.g. ``torchvision.ops.misc.Permute``."""
    return f"{t.__module__}.{t.__qualname__}"


def role_of(module: nn.Module) -> Role | None:
    """What the relevance pass does with a leaf module, or None if unsupported."""
    known = KNOWN_LEAVES.get(qualified_name(type(module)))
    if known is not None:
        return known
    if isinstance(module, NORM_TYPES):
        plain = type(module).forward in (nn.LayerNorm.forward, nn.GroupNorm.forward)
        return Role.NORM if plain else None
    if isinstance(module, LINEAR_TYPES):
        return Role.LINEAR
    if isinstance(module, AVGPOOL_TYPES):
        return Role.POOL
    if isinstance(module, MAXPOOL_TYPES):
        return Role.MAXPOOL
    if isinstance(module, BATCHNORM_TYPES):
        return Role.BATCHNORM
    if isinstance(module, NATIVE_ACTIVATIONS):
        return Role.ACTIVATION
    if isinstance(module, PASS_ACTIVATIONS):
        return Role.PASS_ACTIVATION
    if isinstance(module, DROPOUT_TYPES):
        return Role.DROPOUT
    if isinstance(module, RESHAPE_TYPES):
        return Role.RESHAPE
    return None


@dataclass(frozen=True)
class LayerInfo:
    """One executed leaf layer. ``index`` counts all leaf layers in execution order (the
    layer number ``l`` of LRP's notation); ``fold`` names the BatchNorm folded into this
    layer, ``folded_into`` the layer a BatchNorm is folded into. ``feeds``: the
    pass-activation or ``nn.ReLU`` that is the only (differentiable) reader of the output of
    this layer, run once (a gradient scaling at that output may then be taken over by the
    activation).
    ``kind`` is the class name of the layer's module, ``module_type`` the class itself
    (:class:`~lrp_engine.graph_ops.Sum` for a residual sum; what ``ByType`` matches)."""

    index: int
    name: str
    kind: str
    role: Role
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    fold: str | None = None
    folded_into: str | None = None
    feeds: str | None = None
    module_type: type | None = field(default=None, repr=False)

    @property
    def takes_rule(self) -> bool:
        """Whether a composite assigns this layer a rule (folded BatchNorms share their
        layer's rule)."""
        return self.role in RULE_ROLES and self.folded_into is None

    @property
    def label(self) -> str:
        return f"{self.kind}+{self.fold_kind}" if self.fold else self.kind

    @property
    def fold_kind(self) -> str:
        return "BatchNorm"


@dataclass(frozen=True)
class LayerTable:
    """The executed layers of a model for one input shape."""

    layers: tuple[LayerInfo, ...]
    input_shape: tuple[int, ...]
    #: whether forward() runs residual sums or attention (the pass then watches torch calls)
    graph_ops: bool = False

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def by_name(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def rule_layers(self) -> tuple[LayerInfo, ...]:
        return tuple(info for info in self.layers if info.takes_rule)


def _shape(t: object) -> tuple[int, ...]:
    return tuple(t.shape) if isinstance(t, Tensor) else ()


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((name, type(m).__name__, id(m)) for name, m in model.named_modules())


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def model_macs(model: nn.Module, table: LayerTable, stop_at_dropout: bool = False) -> float:
    """Multiply-accumulates per image of the executed conv and linear layers (with
    ``stop_at_dropout``: of those before the first dropout layer, the trunk B-LRP shares).
    A size to choose how to compute (shared trunk, threads), not a timing."""
    total = 0.0
    for info in table:
        if info.role == Role.DROPOUT and stop_at_dropout:
            break
        layer = model.get_submodule(info.name)
        if info.role == Role.LINEAR and isinstance(layer, LINEAR_TYPES):
            w = layer.weight
            out = 1
            for d in info.out_shape:
                out *= d
            total += out * w[0].numel()
    return total


def layer_table(model: nn.Module, x: Tensor) -> LayerTable:
    """Probe ``model`` with ``x[:1]`` and describe its executed layers (cached).

    Raises :class:`UnsupportedLayerError` naming the first executed layer the engine cannot
    handle (a leaf of unknown type, or a container that uses its own parameters).
    """
    key = (_fingerprint(model), tuple(x.shape[1:]), x.dtype, x.device.type)
    with _CACHE_LOCK:
        cached = _CACHE.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
    table = _probe(model, x[:1])
    with _CACHE_LOCK:
        _CACHE[model] = (key, table)
    return table


#: a probe's record of one executed layer: (name, module or None for a residual sum, input
#: shape, output or None)
_Record = tuple[str, nn.Module | None, tuple, object]
#: (name, module, output) of each executed layer
_Modules = list[tuple[str, nn.Module, object]]

_SUPPORTED = (
    ". Supported: Conv1d/2d/3d, Linear, BatchNorm, LayerNorm, GroupNorm, "
    "ReLU, LeakyReLU, ReLU6 and other elementwise activations, sigmoid gates, "
    "MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d, Dropout, Flatten, "
    "Identity, residual sums, multi-head attention")


class _Recorder:
    """The forward hooks of one probe: each executed layer's record (first call), its
    input, its output's autograd node, its call count; the activations' autograd nodes;
    the residual sums (from :class:`ProbeMode`) in execution order. Only the probing
    thread's calls are recorded (another thread may run the same shared model)."""

    def __init__(self, model: nn.Module) -> None:
        self.records: list[_Record] = []
        self.first_input: dict[str, object] = {}  # module name → its input (BatchNorm folding)
        self.grad_edges: dict[str, tuple[object, int]] = {}  # name → its output's autograd node
        self.calls: dict[str, int] = {}
        self.activation_nodes: list[tuple[object, str]] = []  # (autograd node, activation)
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._names = {m: n for n, m in model.named_modules()}
        self._prober = threading.get_ident()
        self._stack: list[str] = []  # names of the modules running now, outermost first
        self.mode = ProbeMode(lambda: self._stack[-1] if self._stack else "")
        self._n_sums = 0

    def flush_sums(self) -> None:
        """Give the residual sums run since the last record their rows, in order."""
        for context, shape in self.mode.sums[self._n_sums:]:
            base = f"{context}.add" if context else "add"
            name, k = base, 1
            while name in self._seen:
                name, k = f"{base}_{k}", k + 1
            self._seen.add(name)
            self.records.append((name, None, shape, None))
        self._n_sums = len(self.mode.sums)

    def pre_hook(self, module: nn.Module, inputs: tuple) -> None:
        if threading.get_ident() == self._prober:
            self.flush_sums()
            self._stack.append(self._names.get(module, "?"))

    def hook(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if threading.get_ident() != self._prober:  # another thread's forward through the
            return  # same (shared) model while we probe: not ours to record
        self.flush_sums()
        if self._stack:
            self._stack.pop()
        name = self._names.get(module, "?")
        role = role_of(module)
        if role is None and next(module.children(), None) is not None:
            self._check_container(name, module)
            return
        self.calls[name] = self.calls.get(name, 0) + 1
        if (role == Role.PASS_ACTIVATION or type(module) is nn.ReLU) \
                and isinstance(output, Tensor) and output.grad_fn is not None:
            self.activation_nodes.append((output.grad_fn, name))  # every call: may be reused
        if name not in self._seen:
            self._record(name, module, role, inputs, output)

    def _check_container(self, name: str, module: nn.Module) -> None:
        """A container may run its children only, or be one whose own parameters we know."""
        own = any(True for _ in module.parameters(recurse=False))
        if own and qualified_name(type(module)) not in PARAMETER_CONTAINERS:
            self.errors.append(
                f"layer {name!r} ({type(module).__name__}) uses its own parameters in "
                f"forward(); only standard layers can be explained")

    def _record(self, name: str, module: nn.Module, role: Role | None, inputs: tuple,
                output: object) -> None:
        self._seen.add(name)
        if isinstance(output, Tensor) and output.grad_fn is not None:
            self.grad_edges[name] = (output.grad_fn, output.output_nr)  # before any in-place op
        if role is None:
            self.errors.append(f"unsupported layer {name!r} of type {type(module).__name__}")
        inp = inputs[0] if inputs else None
        self.first_input[name] = inp
        self.records.append((name, module, _shape(inp)[1:], output))

    def run(self, model: nn.Module, x: Tensor) -> object:
        """One forward of ``model`` on a copy of ``x`` with the hooks on; removes them."""
        handles = [m.register_forward_pre_hook(self.pre_hook) for m in model.modules()]
        handles += [m.register_forward_hook(self.hook) for m in model.modules()]
        try:
            with torch.enable_grad(), self.mode:
                out = model(x.detach().clone().requires_grad_(True))
            self.flush_sums()
        finally:
            for h in handles:
                h.remove()
        return out


def _probe(model: nn.Module, x: Tensor) -> LayerTable:
    rec = _Recorder(model)
    out = rec.run(model, x)
    if rec.errors:
        raise UnsupportedLayerError(rec.errors[0] + _SUPPORTED)
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise ValueError(
            f"the model must return logits of shape [N, classes]; got {_shape(out)}")
    modules = [(n, m, o) for n, m, _, o in rec.records if m is not None]
    fold, folded_into = _batchnorm_folds(modules, rec.first_input)
    readers = _graph_readers(out)
    gates = _gates(modules, rec.grad_edges, readers)
    feeds = _activation_feeds(rec, readers, gates)

    def row(i: int, name: str, m: nn.Module | None, in_shape: tuple, o: object) -> LayerInfo:
        if m is None:
            return LayerInfo(index=i, name=name, kind=SUM_KIND, role=Role.SUM,
                             in_shape=in_shape, out_shape=in_shape, module_type=Sum)
        role = Role.GATE if name in gates else role_of(m) or Role.UNKNOWN
        return LayerInfo(index=i, name=name, kind=type(m).__name__, role=role,
                         in_shape=in_shape, out_shape=_shape(o)[1:], fold=fold.get(name),
                         folded_into=folded_into.get(name), feeds=feeds.get(name),
                         module_type=type(m))

    layers = tuple(row(i, *r) for i, r in enumerate(rec.records))
    return LayerTable(layers=layers, input_shape=tuple(x.shape[1:]),
                      graph_ops=bool(rec.mode.sums) or rec.mode.attention)


def _batchnorm_folds(modules: _Modules, first_input: dict[str, object]
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """BatchNorm folding: a BatchNorm whose input is exactly a linear layer's output.
    Returns (linear layer → its BatchNorm, BatchNorm → its linear layer)."""
    producer = {id(o): name for name, m, o in modules if role_of(m) == Role.LINEAR}
    fold: dict[str, str] = {}
    folded_into: dict[str, str] = {}
    for name, m, _ in modules:
        inp_t = first_input[name]
        if role_of(m) == Role.BATCHNORM and id(inp_t) in producer:
            fold[producer[id(inp_t)]] = name
            folded_into[name] = producer[id(inp_t)]
    return fold, folded_into


def _gates(modules: _Modules, grad_edges: dict[str, tuple[object, int]],
           readers: dict[tuple[int, int], list]) -> set[str]:
    """Gates: the sigmoids whose output only multiplies (squeeze-excitation)."""
    gates = set()
    for name, m, _ in modules:
        if isinstance(m, GATE_TYPES) and name in grad_edges:
            node, nr = grad_edges[name]
            nodes = readers.get((id(node), nr), [])
            if nodes and all(type(n).__name__ == "MulBackward0" for n in nodes):
                gates.add(name)
    return gates


def _activation_feeds(rec: _Recorder, readers: dict[tuple[int, int], list], gates: set[str]
                      ) -> dict[str, str]:
    """A layer run once whose output is read by one autograd node only, an activation's:
    layer → that activation."""
    activation_of = {id(node): name for node, name in rec.activation_nodes
                     if name not in gates}
    feeds: dict[str, str] = {}
    for name, (node, nr) in rec.grad_edges.items():
        nodes = readers.get((id(node), nr), [])
        if rec.calls[name] == 1 and len(nodes) == 1 and id(nodes[0]) in activation_of:
            feeds[name] = activation_of[id(nodes[0])]
    return feeds


def _graph_readers(out: Tensor) -> dict[tuple[int, int], list]:
    """The autograd nodes reading each (node id, output index) of ``out``'s graph: the
    differentiable operations that read that tensor."""
    readers: dict[tuple[int, int], list] = {}
    seen: set[int] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for nxt, nr in node.next_functions:
            if nxt is not None:
                readers.setdefault((id(nxt), nr), []).append(node)
                stack.append(nxt)
    return readers
