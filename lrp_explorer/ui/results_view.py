"""The Results page's building blocks: open a results folder written by ``lrp_engine batch``
(locally or on Ray: one format) and draw its config, summary, sorted items and one item.

The folder is read by :class:`lrp_engine.batch.results.ResultsFolder`. What the page shows of
it (everything but the per-item maps) is a :class:`Run` of plain tables, cached with
``st.cache_data`` keyed by the folder's path and the modification times of its config and
tables: a rerun that changes nothing reads nothing, and a resumed or re-finalised run is
seen at once. One item's ``.npz`` is read only when that item is selected (cached by path,
key and the file's mtime).

Every problem with a folder (missing, not a results folder, another format version, not
finished, a damaged file) ends in one :class:`FolderProblem` with a message in plain words.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lrp_engine import viz
from lrp_engine.batch import results as rf
from lrp_engine.batch.config import CERTAINTY, PERTURBATIONS, method_label

from .scan_input import plain

#: where ``lrp_engine batch`` writes by default, relative to the server's working directory
RESULTS_ROOT = Path("results")
#: items per page of the sorted list
PAGE_SIZE = 12
#: the item list's orders; the first is the default
ORDERS = ("worst first", "best first")
#: widget keys
FOLDER_KEY, BROWSE_KEY, PAGE_KEY, ITEM_KEY = "rs_folder", "rs_browse", "rs_page", "rs_item"
SORT_KEY, METHOD_KEY, ORDER_KEY = "rs_sort", "rs_method", "rs_order"
#: the files whose change means "read the folder again"
_STAMPED = ("config.json", "metrics.csv", "summary.csv", "curves.csv", "certainty.csv",
            "skipped.csv")
#: what reading a damaged folder can raise besides :class:`rf.ResultsError`
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, IndexError,
                zipfile.BadZipFile)
PLOT = {"displayModeBar": False}


class FolderProblem(Exception):
    """A results folder cannot be shown: ``str(e)`` says why in plain words; ``level`` is
    ``"error"`` or ``"warning"`` (a run not finished yet)."""

    def __init__(self, message: str, level: str = "error") -> None:
        super().__init__(message)
        self.level = level

    def show(self) -> None:
        (st.warning if self.level == "warning" else st.error)(str(self))


@dataclass(frozen=True)
class Run:
    """What the page shows of one results folder (everything but the per-item arrays)."""

    path: str
    info: dict[str, Any]  # config.json: format, config, methods, metrics, backend, model, …
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    table: pd.DataFrame  # metrics.csv: key, name, label, …, "<method>.<metric>"
    summary: tuple[dict[str, Any], ...]  # summary.csv, one dict per method
    curves: dict[str, dict[str, np.ndarray]]  # {perturbation: {"fraction", method: mean}}
    certainty: dict[str, Any] | None  # certainty.csv (B-LRP only)
    skipped: tuple[dict[str, str], ...]  # skipped.csv

    @property
    def config(self) -> dict[str, Any]:
        return self.info.get("config", {})

    def class_name(self, index: Any) -> str:
        """A class index as its name (config.json's ``classes``), ``?`` when unknown."""
        try:
            i = int(index)
        except (TypeError, ValueError):
            return "?"
        names = self.info.get("classes") or []
        if i < 0:
            return "?"
        return str(names[i]) if i < len(names) else str(i)


# -- metrics and methods: labels and which way is worse ---------------------------------------

#: what each metric is called on the page (its direction: ``rf.HIGHER_IS_BETTER``)
METRIC_NAMES = {
    "pf_auc": "Pixel-flipping AUC", "pf_aopc": "Pixel-flipping AOPC",
    "rp_auc": "Region-perturbation AUC", "rp_aopc": "Region-perturbation AOPC",
    "rma": "Relevance mass accuracy", "pointing": "Pointing game", CERTAINTY: "B-LRP certainty",
}
METRIC_HELP = {
    "pf_auc": "area under the score curve while the most relevant pixels are flipped first: "
              "a faithful map makes the score fall soon",
    "pf_aopc": "average drop of the score below the unperturbed one",
    "rp_auc": "as pixel flipping, with the most relevant regions perturbed first",
    "rp_aopc": "average score drop under region perturbation",
    "rma": "share of the positive relevance inside the mask",
    "pointing": "1 when the most relevant pixel lies in the mask",
    CERTAINTY: "how much B-LRP's posterior samples agree on each pixel's sign (0 … 1), "
               "weighted by the mean map's |relevance|",
}
#: shown as percentages (shares and hit rates)
PERCENT = ("rma", "pointing")


def higher_is_better(name: str) -> bool:
    return rf.HIGHER_IS_BETTER.get(name, True)


def short_label(name: str) -> str:
    """A metric's column header in the summary table, as in summary.md (``PF AUC ↓``)."""
    return rf.METRIC_LABELS.get(name) or metric_label(name)


def metric_label(name: str) -> str:
    """E.g. ``Pixel-flipping AUC (↓ better)``."""
    arrow = "↑" if higher_is_better(name) else "↓"
    return f"{METRIC_NAMES.get(name, name)} ({arrow} better)"


def order_help(name: str) -> str:
    worse = "lowest" if higher_is_better(name) else "highest"
    return (f"Worst first: the {worse} {METRIC_NAMES.get(name, name)} first "
            f"({METRIC_HELP.get(name, name)}).")


def is_item_level(name: str) -> bool:
    """Whether a metric has one value per item (B-LRP certainty), not one per method."""
    return name == CERTAINTY


def sort_choices(run: Run) -> list[str]:
    """The metrics the items can be sorted by: the per-method ones, then B-LRP certainty."""
    return [*run.metrics, *([CERTAINTY] if CERTAINTY in run.table else [])]


def value_text(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{f:.4g}" if math.isfinite(f) else "–"


def _pm(mean: float, sem: float, percent: bool) -> str:
    """``mean ± sem`` as text (percentages for shares), ``–`` for no value."""
    if not math.isfinite(mean):
        return "–"
    k, digits, unit = (100.0, 1, " %") if percent else (1.0, 4, "")
    spread = f" ± {k * sem:.{digits}f}" if math.isfinite(sem) else ""
    return f"{k * mean:.{digits}f}{unit}{spread}"


# -- finding and opening a folder -------------------------------------------------------------

def recent_folders(root: Path = RESULTS_ROOT, limit: int = 50) -> list[str]:
    """Folders directly under ``root`` that hold a ``config.json``, newest first."""
    found = []
    try:
        for p in root.iterdir():
            try:
                found.append(((p / "config.json").stat().st_mtime_ns, str(p)))
            except OSError:  # no config.json (or unreadable): not a results folder
                continue
    except OSError:
        return []
    return [p for _, p in sorted(found, reverse=True)[:limit]]


def _stamp(path: Path) -> tuple[int, ...]:
    out = []
    for name in _STAMPED:
        try:
            out.append((path / name).stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def _format_problem(path: Path) -> str | None:
    """Why ``config.json`` is not ours, when it is JSON of another format version."""
    try:
        info = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and "format" in info and info["format"] != rf.FORMAT:
        return (f"{plain(path)} holds results of format {plain(info['format'])}; this app "
                f"reads format {rf.FORMAT}. Open it with the LRP Explorer version that wrote "
                f"it (engine {plain(info.get('engine', '?'))}), or run the batch again.")
    return None


def open_run(text: str) -> Run:
    """The run in the folder ``text`` (a path on the server). Raises :class:`FolderProblem`."""
    if not text.strip():
        raise FolderProblem("Type the path of a results folder: the --out folder of "
                            "`python -m lrp_engine batch`.", "warning")
    path = Path(text.strip()).expanduser()
    if not path.exists():
        raise FolderProblem(f"There is no folder {plain(path)} on the server.")
    if not path.is_dir():
        raise FolderProblem(f"{plain(path)} is a file, not a results folder.")
    if not (path / rf.CONFIG_FILE).is_file():
        raise FolderProblem(f"{plain(path)} is not a results folder: it has no config.json "
                            "(every folder written by `python -m lrp_engine batch` has one).")
    if not (path / "metrics.csv").is_file():
        problem = _format_problem(path)
        raise FolderProblem(problem) if problem else FolderProblem(
            f"The run in {plain(path)} has not finished: no item table yet. Run the same "
            "batch command again: it skips the finished items and writes the tables.",
            "warning")
    try:
        return _read(str(path.resolve()), _stamp(path))
    except rf.ResultsError as e:
        raise FolderProblem(_format_problem(path)
                            or f"{plain(path)} cannot be opened: {plain(e)}") from None
    except _READ_ERRORS as e:
        raise FolderProblem(f"{plain(path)} cannot be read: a file in it is damaged or "
                            f"incomplete ({type(e).__name__}: {plain(e)}). Running the batch "
                            "command again rewrites its tables.") from None


@st.cache_data(max_entries=8, show_spinner="Reading the results folder…")
def _read(path: str, stamp: tuple[int, ...]) -> Run:
    """The folder as a :class:`Run` (``stamp``, its files' mtimes, is part of the key)."""
    folder = rf.ResultsFolder(path)
    table = pd.DataFrame(folder.metrics_columns())
    columns = set(table.columns)
    methods = tuple(m for m in folder.methods
                    if any(f"{m}.{k}" in columns for k in folder.metrics))
    return Run(path=path, info=folder.info, methods=methods or tuple(folder.methods),
               metrics=tuple(folder.metrics), table=table,
               summary=tuple(folder.summary_rows()), curves=folder.curves(),
               certainty=folder.certainty(), skipped=tuple(folder.skipped()))


@st.cache_data(max_entries=32, show_spinner=False)
def _item(path: str, key: str, mtime: int) -> rf.ItemResult:
    return rf.ResultsFolder(path).item(key)


def load_item(run: Run, key: str) -> rf.ItemResult:
    """One item's arrays. Raises :class:`FolderProblem` when its file is gone or damaged."""
    file = Path(run.path) / "items" / f"{key}.npz"
    try:
        return _item(run.path, key, file.stat().st_mtime_ns)
    except (rf.ResultsError, *_READ_ERRORS) as e:
        raise FolderProblem(f"The maps of this item cannot be read ({type(e).__name__}: "
                            f"{plain(e)}): its file items/{key}.npz is missing or "
                            "damaged.") from None


# -- widgets ----------------------------------------------------------------------------------

def _browse() -> None:
    if st.session_state.get(BROWSE_KEY):
        st.session_state[FOLDER_KEY] = st.session_state[BROWSE_KEY]


def folder_picker() -> str:
    """The folder path typed (default: the newest results folder under ``results/``), and
    the folders found there to pick from."""
    recent = recent_folders()
    st.session_state.setdefault(FOLDER_KEY, recent[0] if recent else "")
    left, right = st.columns([3, 2])
    text = left.text_input("Results folder", key=FOLDER_KEY, placeholder="results/batch",
                           help="A path on the server: the --out folder of a batch run.")
    if recent:
        if st.session_state.get(BROWSE_KEY) != text:  # a path typed: the list shows none
            st.session_state[BROWSE_KEY] = text if text in recent else None
        right.selectbox("Browse results/", recent, key=BROWSE_KEY, on_change=_browse,
                        index=None, placeholder="choose a folder")
    return str(text)


def page_picker(n_items: int) -> int:
    """Which page of the sorted list (1-based); back to 1 when it is out of range."""
    pages = n_pages(n_items)
    if not 1 <= st.session_state.get(PAGE_KEY, 1) <= pages:
        st.session_state[PAGE_KEY] = 1
    return int(st.number_input(f"Page (of {pages}; {PAGE_SIZE} items each)", 1, pages,
                               key=PAGE_KEY))


def _keep(key: str, options: Sequence[Any]) -> None:
    """Reset the widget ``key`` to its first option when its value is not among
    ``options`` (another folder was opened): set through the session state, so that the
    browser shows the new value too."""
    if options and st.session_state.get(key) not in options:
        st.session_state[key] = options[0]


def sort_controls(run: Run) -> tuple[str, str, bool]:
    """The metric and method the items are sorted by, and whether the worst come first."""
    choices = sort_choices(run)
    _keep(SORT_KEY, choices)
    _keep(METHOD_KEY, run.methods)
    c1, c2, c3 = st.columns([2, 2, 1])
    name = c1.selectbox("Sort by", choices, format_func=metric_label, key=SORT_KEY)
    method = c2.selectbox("Method", run.methods, format_func=method_label, key=METHOD_KEY,
                          disabled=is_item_level(name))
    order = c3.radio("Order", ORDERS, key=ORDER_KEY, help=order_help(name))
    return str(name), str(method), order == ORDERS[0]


def item_picker(shown: pd.DataFrame) -> str:
    """The key of the item chosen among those on the page (the first by default)."""
    keys = shown["key"].tolist()
    _keep(ITEM_KEY, keys)
    text = {r.key: f"#{r.rank}  {r.name}  ({value_text(r.value)})" for r in shown.itertuples()}
    return str(st.selectbox("Item", keys, format_func=text.get, key=ITEM_KEY))


# -- the config --------------------------------------------------------------------------------

def show_config(run: Run) -> None:
    """Model, input, backend, items and skipped in a row; methods, metrics and the settings
    in a line; the whole config.json in an expander."""
    cfg, info = run.config, run.info
    c = st.columns(5)
    c[0].metric("Items", len(run.table))
    c[1].metric("Skipped", len(run.skipped))
    c[2].metric("Model", str(info.get("model") or cfg.get("model") or "?"))
    c[3].metric("Input", str(cfg.get("input", "?")))
    c[4].metric("Backend", _backend(run))
    settings = [f"{cfg.get('steps')} steps"]
    if "pf" in cfg.get("metrics", ()):
        settings.append(f"{cfg.get('pixels_per_step')} pixels per step")
    if "rp" in cfg.get("metrics", ()):
        settings.append(f"{cfg.get('patch')}×{cfg.get('patch')} regions")
    settings += [f"fill {cfg.get('fill')}", f"score {cfg.get('score')}",
                 f"{cfg.get('target')} class explained", f"seed {cfg.get('seed')}"]
    if any(m.startswith("blrp_") for m in run.methods):
        settings.append(f"B-LRP: {cfg.get('blrp_samples')} samples")
    st.caption(plain(
        f"Input: {cfg.get('input', '?')} · Methods: "
        + ", ".join(method_label(m) for m in run.methods)
        + " · Metrics: " + ", ".join(METRIC_NAMES.get(m, m) for m in run.metrics)
        + " · " + ", ".join(settings)
        + f" · written {info.get('created', '?')} by engine {info.get('engine', '?')}"))
    for note in info.get("notes") or []:
        st.caption(plain(note))
    if run.skipped:
        with st.expander(f"Skipped items ({len(run.skipped)})"):
            st.dataframe(pd.DataFrame(list(run.skipped)), hide_index=True)
    with st.expander("config.json"):
        st.json(info, expanded=False)


def _backend(run: Run) -> str:
    backend = str(run.info.get("backend") or run.config.get("backend") or "local")
    if backend == "ray":
        workers = run.config.get("workers")
        return f"Ray ({workers} workers)" if workers else "Ray"
    return backend


# -- the summary -------------------------------------------------------------------------------

def curves_figures(run: Run) -> list[go.Figure]:
    """One figure per perturbation: the mean score curve of each method."""
    score = "logit" if run.config.get("score") == "logit" else "probability"
    figs = []
    for pert, data in run.curves.items():
        curves = {m: data[m] for m in run.methods if m in data}
        if not curves or "fraction" not in data:
            continue
        fig = viz.curves_figure(100 * data["fraction"], curves,
                                labels={m: method_label(m) for m in curves},
                                title=f"{PERTURBATIONS.get(pert, pert).capitalize()}: mean "
                                      f"over {len(run.table)} items",
                                y_title=f"mean score of the target ({score})", height=360)
        fig.update_xaxes(title_text="pixels flipped" if pert == "pf" else "regions perturbed")
        figs.append(fig)
    return figs


def show_summary_curves(run: Run) -> None:
    figs = curves_figures(run)
    if not figs:
        st.caption("This run scored no perturbation curves.")
        return
    for col, fig in zip(st.columns(len(figs)), figs, strict=True):
        col.plotly_chart(fig, config=PLOT)


def summary_frame(run: Run) -> pd.DataFrame:
    """summary.csv as shown: one row per method, mean ± s.e.m. per metric."""
    rows = []
    for rec in run.summary:
        row = {"method": method_label(str(rec["method"])), "items": rec.get("n", 0)}
        for m in run.metrics:
            row[short_label(m)] = _pm(rec.get(f"{m}_mean", math.nan),
                                       rec.get(f"{m}_sem", math.nan), m in PERCENT)
        rows.append(row)
    return pd.DataFrame(rows)


def show_summary_table(run: Run) -> None:
    st.dataframe(summary_frame(run), hide_index=True)
    st.caption("Mean ± standard error of the mean over the items (↓: lower is better, ↑: "
               "higher is better). "
               + "; ".join(f"{METRIC_NAMES.get(m, m)}: {METRIC_HELP.get(m, '')}"
                           for m in run.metrics) + ".")


def show_certainty(run: Run) -> None:
    """B-LRP's certainty for correct against wrong predictions, when B-LRP ran."""
    c = run.certainty
    if not c:
        return
    st.markdown("**B-LRP certainty against correctness**")
    cols = st.columns(3)
    cols[0].metric(f"Correct predictions (n = {c.get('n_correct', 0)})",
                   value_text(c.get("mean_correct")))
    cols[1].metric(f"Wrong predictions (n = {c.get('n_wrong', 0)})",
                   value_text(c.get("mean_wrong")))
    cols[2].metric("AUROC (certainty → correct)", value_text(c.get("auroc")))
    note = f" ({c['note']})" if c.get("note") else ""
    st.caption("Mean certainty of each group; the AUROC is the chance that a correct "
               f"prediction's map is more certain than a wrong one's{plain(note)}.")


# -- the items -------------------------------------------------------------------------------

def sorted_items(run: Run, method: str, name: str, worst_first: bool = True) -> pd.DataFrame:
    """The items with ``method``'s ``name`` metric (B-LRP certainty: the item's own) as
    ``value``, worst first (or best first); items without a value last, ties by name."""
    col = name if is_item_level(name) else f"{method}.{name}"
    t = run.table
    out = pd.DataFrame({
        "key": t["key"].astype(str), "name": t["name"].astype(str),
        "label": [run.class_name(v) for v in t["label"]],
        "pred": [run.class_name(v) for v in t["pred"]],
        "value": pd.to_numeric(t[col], errors="coerce") if col in t else np.nan})
    ascending = higher_is_better(name) == worst_first
    return out.sort_values(["value", "name"], ascending=[ascending, True],
                           na_position="last", kind="stable").reset_index(drop=True)


def table_height(n_rows: int) -> int:
    """Pixels that show a dataframe's header and ``n_rows`` rows without a scroll bar."""
    return 35 * (n_rows + 1) + 3


def n_pages(n_items: int, size: int = PAGE_SIZE) -> int:
    return max(1, -(-n_items // size))


def page_of(items: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> pd.DataFrame:
    """Rows of page ``page`` (1-based) with their rank (1 = first in the order)."""
    start = (page - 1) * size
    part = items.iloc[start:start + size].copy()
    part.insert(0, "rank", range(start + 1, start + 1 + len(part)))
    return part


def items_frame(shown: pd.DataFrame, name: str, method: str) -> pd.DataFrame:
    """The page of items as shown: rank, name, label, prediction, the metric's value."""
    what = METRIC_NAMES.get(name, name)
    if not is_item_level(name):
        what += f", {method_label(method)}"
    return pd.DataFrame({"rank": shown["rank"], "name": shown["name"],
                         "label": shown["label"], "pred": shown["pred"],
                         what: shown["value"]})


# -- one item: input, maps, mask outline, curves ------------------------------------------------

def outline(mask: np.ndarray) -> tuple[list, list]:
    """The mask's outline along pixel edges as one plotly polyline (segments separated by
    None), in heatmap pixel coordinates (pixel (i, j) spans j ± 0.5, i ± 0.5)."""
    p = np.pad(np.asarray(mask, dtype=bool), 1)
    i, j = np.nonzero(p[1:-1, :-1] != p[1:-1, 1:])  # a vertical edge left of column j
    v = np.stack([j - 0.5, j - 0.5, i - 0.5, i + 0.5], axis=1)
    i, j = np.nonzero(p[:-1, 1:-1] != p[1:, 1:-1])  # a horizontal edge above row i
    h = np.stack([j - 0.5, j + 0.5, i - 0.5, i - 0.5], axis=1)
    xs: list = []
    ys: list = []
    for x0, x1, y0, y1 in np.concatenate([v, h]).tolist():
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    return xs, ys


def grey(image: np.ndarray) -> np.ndarray:
    """A display image [H, W] or [H, W, 3] as grey [H, W]."""
    a = np.asarray(image, dtype=np.float32)
    return a.mean(-1) if a.ndim == 3 else a


def maps_figure(item: rf.ItemResult, methods: Sequence[str]) -> go.Figure:
    """The input (grey) and one heatmap per method, each over its own ±max|R|, with the
    mask's outline on every panel when the item has a mask."""
    keys = [m for m in methods if m in item.maps]
    fig = viz.panels_figure([item.maps[m] for m in keys], [method_label(m) for m in keys],
                            image=grey(item.input), height=max(200, 880 // (len(keys) + 1)))
    if item.mask is not None and np.asarray(item.mask).any():
        xs, ys = outline(item.mask)
        for k in range(len(keys) + 1):
            sfx = "" if k == 0 else str(k + 1)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="mask",
                                     line={"color": "#00c853", "width": 1.5},
                                     hoverinfo="skip", showlegend=False,
                                     xaxis=f"x{sfx}", yaxis=f"y{sfx}"))
    return fig


def item_curve_figures(run: Run, item: rf.ItemResult) -> list[go.Figure]:
    """The item's own curves, one figure per perturbation (x: the run's fractions)."""
    figs = []
    for pert in dict.fromkeys(p for _, p in item.curves):
        curves = {m: item.curves[(m, pert)] for m in run.methods if (m, pert) in item.curves}
        steps = len(next(iter(curves.values())))
        frac = run.curves.get(pert, {}).get("fraction")
        x = 100 * frac if frac is not None and len(frac) == steps else np.arange(steps)
        fig = viz.curves_figure(x, curves, labels={m: method_label(m) for m in curves},
                                title=f"{PERTURBATIONS.get(pert, pert).capitalize()}: this "
                                      "item",
                                y_title="score of the target", height=300)
        fig.update_xaxes(title_text="pixels flipped" if pert == "pf" else "regions perturbed")
        figs.append(fig)
    return figs


def item_metrics_frame(run: Run, item: rf.ItemResult) -> pd.DataFrame:
    """The item's metrics: one row per method, one column per metric."""
    return pd.DataFrame([{"method": method_label(m),
                          **{METRIC_NAMES.get(k, k): item.row.get(f"{m}.{k}", math.nan)
                             for k in run.metrics}} for m in run.methods])


def show_item(run: Run, key: str) -> None:
    """The selected item: what it is, its input and maps (with its mask's outline), its
    metrics and its curves."""
    try:
        item = load_item(run, key)
    except FolderProblem as e:
        e.show()
        return
    row = item.row
    correct = row.get("correct")
    verdict = "" if not isinstance(correct, float) or math.isnan(correct) else (
        " · correct" if correct == 1.0 else " · wrong")
    certainty = row.get(CERTAINTY)
    sure = "" if certainty is None or not math.isfinite(float(certainty)) else (
        f" · B-LRP certainty {float(certainty):.3f}")
    st.markdown(f"**{plain(row.get('name', key))}**: label "
                f"{plain(run.class_name(row.get('label')))}, predicted "
                f"{plain(run.class_name(row.get('pred')))}{verdict}, explained class "
                f"{plain(run.class_name(row.get('target')))}{plain(sure)}")
    if item.input.ndim == 3:
        st.image(item.input, caption="input (colour)", width=160, clamp=True)
    st.plotly_chart(maps_figure(item, run.methods), config=PLOT, key="rs_maps")
    has_mask = item.mask is not None and bool(np.asarray(item.mask).any())
    mask = "; the green line is the mask's outline" if has_mask else ""
    st.caption("Red: relevance for the explained class, blue: against; each map over its "
               f"own ±max|R|{mask}.")
    st.dataframe(item_metrics_frame(run, item), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in METRIC_NAMES.values()})
    figs = item_curve_figures(run, item)
    for col, fig in zip(st.columns(len(figs)) if figs else [], figs, strict=True):
        col.plotly_chart(fig, config=PLOT)


__all__ = ["ORDERS", "PAGE_SIZE", "FolderProblem", "Run", "folder_picker", "item_picker",
           "items_frame", "load_item", "maps_figure", "method_label", "metric_label",
           "open_run", "order_help", "outline", "page_of", "page_picker", "recent_folders",
           "show_certainty", "show_config", "show_item", "show_summary_curves",
           "show_summary_table", "sort_choices", "sort_controls", "sorted_items", "summary_frame"]
