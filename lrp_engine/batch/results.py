"""The results folder: :func:`finalise` builds its tables, :class:`ResultsFolder` reads it.

``finalise(out)`` rebuilds every table from ``items/*.npz`` alone (so a local run, a Ray
run and a resumed run all end the same way), each file written atomically:

* ``metrics.csv`` (and ``metrics.parquet`` when pyarrow imports): one row per item, ordered
  by ``index``; empty cells are NaN (no mask, unknown label);
* ``summary.csv``: one row per method: ``n`` items, then ``<metric>_mean``, ``_sem``
  (standard error of the mean) and ``_n`` (items with a value) per metric;
* ``curves.csv``: the mean curve per perturbation and method, with the fraction of units
  (pixels, regions) perturbed at each step;
* ``certainty.csv`` (with B-LRP): mean certainty of correct and wrong predictions and the
  AUROC of certainty for telling them apart (NaN, with a note, when one group is empty);
* ``skipped.csv``: the items not read, and why;
* ``summary.md``: the Markdown table the command prints;
* ``plots/curves.html`` (plotly, when installed) and ``plots/curves.png`` when kaleido can
  render it; otherwise a note says why not.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import (
    CERTAINTY,
    PERTURBATIONS,
    BatchConfig,
    item_columns,
    method_keys,
    metric_columns,
    metric_names,
    perturbations,
)
from .worker import ITEMS, SKIPPED, _write_atomic, read_item_row

FORMAT = 1
CONFIG_FILE = "config.json"
#: the files and folders a results folder holds (``--overwrite`` removes these only; the
#: last three: what ``experiment pixel-flipping`` wrote before it ran through batch)
OWNED = ("config.json", "items", "skipped", "plots", "metrics.csv", "metrics.parquet",
         "summary.csv", "curves.csv", "certainty.csv", "skipped.csv", "summary.md",
         "curves.npz", "curves.html", "curves.png")
#: metrics where a higher value means a more faithful / better-placed map
HIGHER_IS_BETTER = {"pf_auc": False, "rp_auc": False, "pf_aopc": True, "rp_aopc": True,
                    "rma": True, "pointing": True, CERTAINTY: True}
METRIC_LABELS = {"pf_auc": "PF AUC ↓", "pf_aopc": "PF AOPC ↑", "rp_auc": "RP AUC ↓",
                 "rp_aopc": "RP AOPC ↑", "rma": "RMA ↑", "pointing": "pointing ↑"}
_KEY = re.compile(r"^[0-9a-f]{24}$")
_INT_COLUMNS = ("label", "index", "target", "pred")


class ResultsError(ValueError):
    """A folder that is not (or not yet) a results folder, said in one line."""


@dataclass
class Finalised:
    """What :func:`finalise` wrote (``paths``), how many items, and ``notes`` on what was
    left out (no pyarrow, no kaleido, …)."""

    paths: list[Path]
    n_items: int
    n_skipped: int
    notes: list[str] = field(default_factory=list)


# -- reading the items ---------------------------------------------------------------------

def read_config(out_dir: str | Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict; :class:`ResultsError` when absent or foreign."""
    path = Path(out_dir) / CONFIG_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{out_dir} is not a results folder (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path} cannot be read: {e}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "config" not in info:
        raise ResultsError(f"{path} is not the config of a batch results folder")
    return info


def _item_files(out: Path) -> list[Path]:
    folder = out / ITEMS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.npz") if _KEY.match(p.stem))


@dataclass
class _Collected:
    rows: list[dict[str, Any]]
    sums: dict[tuple[str, str], np.ndarray]
    counts: dict[tuple[str, str], int]
    shape: tuple[int, int] | None


def _collect(out: Path) -> _Collected:
    """Every item's row, and the sum of its curves per (method, perturbation)."""
    rows: list[dict[str, Any]] = []
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[tuple[str, str], int] = {}
    shape = None
    for path in _item_files(out):
        with np.load(path, allow_pickle=False) as z:
            row = json.loads(str(z["row"]))
            for name in z.files:
                if name.startswith("curve/"):
                    _, method, pert = name.split("/", 2)
                    c = z[name].astype(np.float64)
                    k = (method, pert)
                    sums[k] = sums[k] + c if k in sums else c
                    counts[k] = counts.get(k, 0) + 1
                elif shape is None and name.startswith("map/"):
                    shape = tuple(z[name].shape[-2:])
        rows.append({k: (math.nan if v is None else v) for k, v in row.items()})
    rows.sort(key=lambda r: (int(r.get("index", 0)), str(r.get("name", ""))))
    return _Collected(rows, sums, counts, shape)


def _skipped_records(out: Path) -> list[dict[str, str]]:
    folder = out / SKIPPED
    recs = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            recs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    recs.sort(key=lambda r: str(r.get("name", "")))
    return recs


# -- statistics ----------------------------------------------------------------------------

def _finite(values: Iterable[Any]) -> np.ndarray:
    a = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return a[np.isfinite(a)]


def mean_sem(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean, standard error of the mean (ddof = 1; NaN for fewer than 2) and count of the
    finite values."""
    a = _finite(values)
    if not len(a):
        return math.nan, math.nan, 0
    sem = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan
    return float(a.mean()), sem, len(a)


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a positive's score > a negative's) + ½·P(equal): the Mann–Whitney AUROC; NaN when a
    group is empty."""
    p, n = _finite(positive), _finite(negative)
    if not len(p) or not len(n):
        return math.nan
    both = np.concatenate([p, n])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(len(both))
    srt = both[order]
    i = 0
    while i < len(srt):  # average ranks over ties
        j = i
        while j + 1 < len(srt) and srt[j + 1] == srt[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n)))


def summary_rows(cfg: BatchConfig, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: ``method``, ``n`` and per metric ``_mean``, ``_sem``, ``_n``."""
    out = []
    for m in method_keys(cfg):
        rec: dict[str, Any] = {"method": m, "n": len(rows)}
        for metric in metric_names(cfg):
            mean, sem, n = mean_sem(r.get(f"{m}.{metric}") for r in rows)
            rec.update({f"{metric}_mean": mean, f"{metric}_sem": sem, f"{metric}_n": n})
        out.append(rec)
    return out


def certainty_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """B-LRP's certainty against correctness: ``mean_correct``, ``n_correct``,
    ``mean_wrong``, ``n_wrong``, ``auroc`` (certainty predicting a correct prediction) and
    ``note`` (why a figure is NaN)."""
    right = [r[CERTAINTY] for r in rows if r.get("correct") == 1.0]
    wrong = [r[CERTAINTY] for r in rows if r.get("correct") == 0.0]
    mc, _, nc = mean_sem(right)
    mw, _, nw = mean_sem(wrong)
    note = ""
    if not nc or not nw:
        empty = "correct" if not nc else "wrong"
        note = f"no {empty} predictions with a certainty: the AUROC is undefined"
    return {"mean_correct": mc, "n_correct": nc, "mean_wrong": mw, "n_wrong": nw,
            "auroc": auroc(right, wrong), "note": note}


def fractions(cfg: BatchConfig, pert: str, steps: int, shape: tuple[int, int]) -> np.ndarray:
    """The x-axis of a curve: the fraction of units (pixels or regions) perturbed, [steps]."""
    h, w = shape
    if pert == "pf":
        return np.arange(steps) * cfg.pixels_per_step / (h * w)
    return np.arange(steps) / (-(-h // cfg.patch) * -(-w // cfg.patch))


# -- writing the tables --------------------------------------------------------------------

def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _csv_text(header: Sequence[str], records: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for rec in records:
        w.writerow([_cell(v) for v in rec])
    return buf.getvalue().encode()


def _write(path: Path, data: bytes, paths: list[Path]) -> None:
    _write_atomic(path, lambda f: f.write(data))
    paths.append(path)


def _write_parquet(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]],
                   paths: list[Path], notes: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        notes.append("metrics.parquet skipped: pyarrow is not installed (metrics.csv has the "
                     "same table)")
        return
    data = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        if c in ("key", "name"):
            data[c] = pa.array([str(v) for v in values], pa.string())
        elif c in _INT_COLUMNS:
            data[c] = pa.array([int(v if v is not None else -1) for v in values], pa.int64())
        else:
            data[c] = pa.array([math.nan if v is None else float(v) for v in values],
                               pa.float64())
    table = pa.table(data)
    _write_atomic(path, lambda f: pq.write_table(table, f))
    paths.append(path)


def _curve_table(cfg: BatchConfig, col: _Collected) -> tuple[list[str], list[list[Any]]]:
    keys = method_keys(cfg)
    header = ["perturbation", "step", "fraction", *keys]
    records: list[list[Any]] = []
    for pert in perturbations(cfg):
        means = {m: col.sums[(m, pert)] / col.counts[(m, pert)] for m in keys
                 if (m, pert) in col.sums}
        if not means or col.shape is None:
            continue
        steps = len(next(iter(means.values())))
        frac = fractions(cfg, pert, steps, col.shape)
        for s in range(steps):
            records.append([pert, s, float(frac[s]),
                            *(float(means[m][s]) if m in means else None for m in keys)])
    return header, records


def _fmt(mean: float, sem: float, percent: bool) -> str:
    if not math.isfinite(mean):
        return "–"
    k = 100.0 if percent else 1.0
    unit = " %" if percent else ""
    spread = f" ± {k * sem:.{1 if percent else 4}f}" if math.isfinite(sem) else ""
    return f"{k * mean:.{1 if percent else 4}f}{unit}{spread}"


def summary_markdown(cfg: BatchConfig, info: dict[str, Any], rows: Sequence[dict[str, Any]],
                     summary: Sequence[dict[str, Any]], n_skipped: int) -> str:
    """The summary as Markdown: one line on the job, the table, B-LRP's certainty."""
    metrics = metric_names(cfg)
    acc = mean_sem(r.get("correct") for r in rows)
    lines = [f"# Batch results: {cfg.input} · {info.get('model', cfg.model or '')}", "",
             f"{len(rows)} items ({n_skipped} skipped); accuracy "
             + (f"{acc[0]:.3f} on {acc[2]} labelled items" if acc[2] else "unknown (no labels)")
             + f"; explaining the {cfg.target} class; score {cfg.score}, fill {cfg.fill}", ""]
    lines.append("| method | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |")
    lines.append("| --- |" + " ---: |" * len(metrics))
    for rec in summary:
        cells = [_fmt(rec[f"{m}_mean"], rec[f"{m}_sem"], m in ("rma", "pointing"))
                 for m in metrics]
        lines.append(f"| {rec['method']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± standard error over items; PF: pixel flipping, RP: region "
                 "perturbation (AUC lower = more faithful, AOPC higher = more faithful); RMA: "
                 "relevance mass accuracy; pointing: pointing-game hit rate")
    if CERTAINTY in item_columns(cfg):
        c = certainty_summary(rows)
        lines += ["", f"B-LRP certainty: correct predictions {c['mean_correct']:.3f} "
                  f"(n = {c['n_correct']}), wrong {c['mean_wrong']:.3f} (n = {c['n_wrong']}); "
                  f"AUROC of certainty for a correct prediction {c['auroc']:.3f}"
                  + (f" ({c['note']})" if c["note"] else "")]
    return "\n".join(lines) + "\n"


def _plots(cfg: BatchConfig, header: Sequence[str], records: Sequence[Sequence[Any]],
           out: Path, paths: list[Path], notes: list[str]) -> None:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        notes.append("plots skipped: plotly is not installed (curves.csv has the curves)")
        return
    perts = [p for p in perturbations(cfg) if any(r[0] == p for r in records)]
    if not perts:
        return
    fig = make_subplots(rows=1, cols=len(perts),
                        subplot_titles=[PERTURBATIONS[p].capitalize() for p in perts])
    keys = list(header[3:])
    for j, pert in enumerate(perts, start=1):
        sel = [r for r in records if r[0] == pert]
        x = [100 * float(r[2]) for r in sel]
        for i, m in enumerate(keys):
            fig.add_trace(go.Scatter(x=x, y=[r[3 + i] for r in sel], name=m,
                                     legendgroup=m, showlegend=j == 1,
                                     mode="lines+markers", marker={"size": 4}), row=1, col=j)
        fig.update_xaxes(title_text="% perturbed", ticksuffix="%", row=1, col=j)
    fig.update_yaxes(title_text=f"mean target score ({cfg.score})", row=1, col=1)
    fig.update_layout(template="plotly_white", title=f"Faithfulness curves: {cfg.input}",
                      legend_title_text="method")
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    html = fig.to_html(include_plotlyjs=True).encode()
    _write(folder / "curves.html", html, paths)
    try:
        png = fig.to_image(format="png", width=450 * len(perts) + 250, height=500, scale=2)
    except Exception as e:  # noqa: BLE001 - kaleido fails in many ways; PNG is optional
        notes.append(f"plots/curves.png skipped: plotly's static export is unavailable "
                     f"({type(e).__name__}; install kaleido and a Chromium for PNG)")
        return
    _write(folder / "curves.png", png, paths)


def finalise(out_dir: str | Path, *, plots: bool = True) -> Finalised:
    """Rebuild every table of the results folder ``out_dir`` from its ``items/``.

    ``plots``: also write ``plots/curves.html`` (and the PNG). Returns what was written.
    """
    out = Path(out_dir)
    info = read_config(out)
    cfg = BatchConfig.from_dict(info["config"])
    col = _collect(out)
    skipped = _skipped_records(out)
    paths: list[Path] = []
    notes: list[str] = []
    columns = item_columns(cfg) + metric_columns(cfg)
    _write(out / "metrics.csv",
           _csv_text(columns, ([r.get(c) for c in columns] for r in col.rows)), paths)
    _write_parquet(out / "metrics.parquet", columns, col.rows, paths, notes)
    summary = summary_rows(cfg, col.rows)
    head = list(summary[0]) if summary else ["method", "n"]
    _write(out / "summary.csv", _csv_text(head, ([r[h] for h in head] for r in summary)),
           paths)
    header, records = _curve_table(cfg, col)
    _write(out / "curves.csv", _csv_text(header, records), paths)
    if CERTAINTY in columns:
        c = certainty_summary(col.rows)
        _write(out / "certainty.csv", _csv_text(list(c), [list(c.values())]), paths)
    _write(out / "skipped.csv", _csv_text(["name", "key", "reason"], (
        [s.get("name"), s.get("key"), s.get("reason")] for s in skipped)), paths)
    md = summary_markdown(cfg, info, col.rows, summary, len(skipped))
    _write(out / "summary.md", md.encode(), paths)
    if plots:
        _plots(cfg, header, records, out, paths, notes)
    return Finalised(paths, len(col.rows), len(skipped), notes)


# -- the reader ----------------------------------------------------------------------------

def _parse(column: str, text: str) -> Any:
    if column in ("key", "name"):
        return text
    if column in _INT_COLUMNS:
        return int(text) if text else -1
    return float(text) if text else math.nan


@dataclass
class ItemResult:
    """One finished item: its metrics ``row``, display ``input`` [H, W] or [H, W, 3] in
    [0, 1], ``maps`` {method: [H, W]}, ``mask`` bool [H, W] or None, and ``curves``
    {(method, perturbation): [steps]}."""

    key: str
    row: dict[str, Any]
    input: np.ndarray
    maps: dict[str, np.ndarray]
    mask: np.ndarray | None
    curves: dict[tuple[str, str], np.ndarray]


class ResultsFolder:
    """A results folder, read-only: ``config`` (:class:`BatchConfig`), ``info`` (the whole
    ``config.json``), ``methods``, ``metrics``; the tables and single items on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.info = read_config(self.path)
        self.config = BatchConfig.from_dict(self.info["config"])
        self.config_hash: str = self.info.get("config_hash", "")
        self.methods: list[str] = list(self.info.get("methods", method_keys(self.config)))
        self.metrics: list[str] = list(self.info.get("metrics", metric_names(self.config)))
        self.backend: str = self.info.get("backend", "local")

    @property
    def finalised(self) -> bool:
        """Whether the tables exist (a run ended, or was interrupted and finalised)."""
        return (self.path / "metrics.csv").is_file()

    def _csv(self, name: str) -> list[dict[str, str]]:
        path = self.path / name
        if not path.is_file():
            raise ResultsError(f"{path} is missing: the run has not been finalised")
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    # -- tables --------------------------------------------------------------------------------

    def metrics_rows(self) -> list[dict[str, Any]]:
        """The per-item metrics, one dict per item in table order (floats; NaN = empty)."""
        return [{k: _parse(k, v) for k, v in r.items()} for r in self._csv("metrics.csv")]

    def metrics_columns(self) -> dict[str, np.ndarray]:
        """The metrics table as numpy columns (key/name: object, ints: int64, else float64)."""
        rows = self.metrics_rows()
        cols = item_columns(self.config) + metric_columns(self.config)
        out: dict[str, np.ndarray] = {}
        for c in cols:
            values = [r.get(c) for r in rows]
            dtype: Any = object if c in ("key", "name") else (
                np.int64 if c in _INT_COLUMNS else np.float64)
            out[c] = np.array(values, dtype=dtype)
        return out

    def metric(self, column: str) -> np.ndarray:
        """One column (e.g. ``"epsilon.pf_auc"``) as float64 [items]."""
        return np.array([r.get(column, math.nan) for r in self.metrics_rows()],
                        dtype=np.float64)

    def summary_rows(self) -> list[dict[str, Any]]:
        """``summary.csv``: one dict per method (``method`` str, ``n`` and ``*_n`` int,
        means and s.e.m. float)."""
        out = []
        for r in self._csv("summary.csv"):
            rec: dict[str, Any] = {}
            for k, v in r.items():
                if k == "method":
                    rec[k] = v
                elif k == "n" or k.endswith("_n"):
                    rec[k] = int(v) if v else 0
                else:
                    rec[k] = float(v) if v else math.nan
            out.append(rec)
        return out

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """``curves.csv``: {perturbation: {"fraction": [steps], method: mean [steps]}}."""
        out: dict[str, dict[str, list[float]]] = {}
        for r in self._csv("curves.csv"):
            d = out.setdefault(r["perturbation"], {})
            for k, v in r.items():
                if k not in ("perturbation", "step"):
                    d.setdefault(k, []).append(float(v) if v else math.nan)
        return {p: {k: np.array(v) for k, v in d.items()} for p, d in out.items()}

    def certainty(self) -> dict[str, Any] | None:
        """``certainty.csv`` as a dict (None without B-LRP)."""
        if not (self.path / "certainty.csv").is_file():
            return None
        (r,) = self._csv("certainty.csv")
        return {k: (v if k == "note" else (int(v) if k.startswith("n_") else
                                           (float(v) if v else math.nan))) for k, v in r.items()}

    def skipped(self) -> list[dict[str, str]]:
        """``skipped.csv``: name, key, reason per item not read."""
        return self._csv("skipped.csv") if (self.path / "skipped.csv").is_file() else []

    def summary_markdown(self) -> str:
        """``summary.md``."""
        path = self.path / "summary.md"
        return path.read_text() if path.is_file() else ""

    # -- items ---------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Item keys in table order."""
        return [str(r["key"]) for r in self.metrics_rows()]

    def ranked(self, column: str) -> list[str]:
        """Item keys, the worst first by ``column`` (``"<method>.<metric>"``: a high AUC or
        a low AOPC/RMA is worse); items without a value last."""
        metric = column.split(".", 1)[-1]
        higher = HIGHER_IS_BETTER.get(metric, True)
        rows = self.metrics_rows()
        have = [r for r in rows if math.isfinite(r.get(column, math.nan))]
        rest = [r for r in rows if not math.isfinite(r.get(column, math.nan))]
        have.sort(key=lambda r: r[column], reverse=not higher)
        return [str(r["key"]) for r in have + rest]

    def item(self, key: str) -> ItemResult:
        """One item's arrays; KeyError for an unknown key."""
        if not _KEY.match(key or ""):
            raise KeyError(key)
        path = self.path / ITEMS / f"{key}.npz"
        if not path.is_file():
            raise KeyError(key)
        with np.load(path, allow_pickle=False) as z:
            maps = {n[4:]: z[n] for n in z.files if n.startswith("map/")}
            curves = {tuple(n.split("/", 2)[1:]): z[n] for n in z.files
                      if n.startswith("curve/")}
            return ItemResult(key=key, row=read_item_row(path), input=z["input"],
                              maps=maps, mask=z["mask"] if "mask" in z.files else None,
                              curves=curves)

    def item_curves(self, method: str, perturbation: str = "pf",
                    keys: Sequence[str] | None = None) -> np.ndarray:
        """Per-item curves of one method, float32 [items, steps], in table order (or in the
        order of ``keys``)."""
        name = f"curve/{method}/{perturbation}"
        parts = []
        for key in self.keys() if keys is None else keys:
            with np.load(self.path / ITEMS / f"{key}.npz", allow_pickle=False) as z:
                parts.append(z[name])
        return np.stack(parts) if parts else np.zeros((0, 0), np.float32)


__all__ = ["CONFIG_FILE", "FORMAT", "HIGHER_IS_BETTER", "OWNED", "Finalised", "ItemResult",
           "ResultsError", "ResultsFolder", "auroc", "certainty_summary", "finalise",
           "mean_sem", "read_config", "summary_markdown", "summary_rows"]
