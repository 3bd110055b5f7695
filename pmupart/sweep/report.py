"""``pmupart sweep report``: a summary table of a results file, and plots.

The table groups the runs by axes (the ``[report]`` table's ``group_by``; by default its
``facet``, ``y`` and ``x`` axes, or every axis with more than one value) and gives per
group: the runs, how many held every invariant (``ok``), broke one (``viol``) or raised
(``err``), and the mean of each metric.  The plots: per metric, a heatmap of its mean over
the ``x`` and ``y`` axes (averaged over the other axes), one panel per ``facet`` value
when ``[report]`` names one; and the same for the share of runs that broke an invariant or
raised.  All of it is a function of the results file (no wall times, no dates), so it is
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_results", "summarize", "summary_table"]

Row = dict[str, Any]


def _key(v: Any) -> tuple[int, Any]:
    """Sort axis values: numbers by value, then everything else by text."""
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, int | float):
        return (0, v)
    return (1, "" if v is None else str(v))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def _axes(meta: Mapping[str, Any]) -> list[str]:
    return [a["name"] for a in meta.get("axes", [])]


def _metrics(meta: Mapping[str, Any]) -> list[str]:
    rep = meta.get("report") or {}
    chosen = rep.get("metrics")
    return list(chosen) if chosen else [m["name"] for m in meta.get("metrics", [])]


def group_axes(rows: Sequence[Row], meta: Mapping[str, Any]) -> list[str]:
    """The axes the summary groups by."""
    rep = meta.get("report") or {}
    if rep.get("group_by"):
        return list(rep["group_by"])
    chosen = [rep[k] for k in ("facet", "y", "x") if rep.get(k)]
    if chosen:
        return list(dict.fromkeys(chosen))
    varying = [a for a in _axes(meta) if len({_key(r.get(a)) for r in rows}) > 1]
    return varying or _axes(meta)[:1]


def summarize(rows: Sequence[Row], meta: Mapping[str, Any],
              by: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One dict per group: the axis values, ``runs``, ``ok``, ``viol``, ``err`` and each
    metric's mean (None where no run of the group has a value)."""
    by = list(by) if by is not None else group_axes(rows, meta)
    metrics = _metrics(meta)
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(a) for a in by), []).append(r)
    out: list[dict[str, Any]] = []
    for k in sorted(groups, key=lambda t: tuple(_key(v) for v in t)):
        rs = groups[k]
        d: dict[str, Any] = dict(zip(by, k, strict=True))
        d["runs"] = len(rs)
        d["ok"] = sum(1 for r in rs if r.get("verdict") == "ok")
        d["viol"] = sum(1 for r in rs if r.get("verdict") == "violations")
        d["err"] = sum(1 for r in rs if r.get("verdict") == "error")
        for m in metrics:
            vals = [float(r[m]) for r in rs if r.get(m) is not None and
                    not math.isnan(float(r[m]))]
            d[m] = math.fsum(vals) / len(vals) if vals else None
        out.append(d)
    return out


def summary_table(rows: Sequence[Row], meta: Mapping[str, Any],
                  by: Sequence[str] | None = None) -> str:
    """The summary as a plain text table (then the errors, one line per distinct error)."""
    data = summarize(rows, meta, by)
    cols = list(data[0]) if data else []
    cells = [cols] + [[_fmt(d[c]) for c in cols] for d in data]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = [f"pmupart sweep: {meta.get('name', '?')}: {len(rows)} runs"
             + (f" ({meta['description']})" if meta.get("description") else "")]
    for j, cells_j in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w)
                               for c, w in zip(cells_j, widths, strict=True)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    errors: dict[str, list[int]] = {}
    for row in rows:
        if row.get("error"):
            errors.setdefault(str(row["error"]), []).append(int(row["point"]))
    for e, pts in sorted(errors.items(), key=lambda kv: kv[1][0]):
        shown = ", ".join(str(p) for p in pts[:8]) + (", ..." if len(pts) > 8 else "")
        lines.append(f"error in {len(pts)} run{'s' if len(pts) > 1 else ''} (point {shown}): "
                     f"{e}")
    bad = sum(1 for r in rows if r.get("verdict") == "violations")
    lines.append(f"{bad} of {len(rows)} runs broke an invariant, "
                 f"{len(errors) and sum(len(p) for p in errors.values())} raised")
    return "\n".join(lines) + "\n"


def _numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return s == "-"
    return True


# ---------------------------------------------------------------------- plots
def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _plot_axes(rows: Sequence[Row], meta: Mapping[str, Any]
               ) -> tuple[str | None, str | None, str | None]:
    rep = meta.get("report") or {}
    axes = _axes(meta)
    varying = [a for a in axes if len({_key(r.get(a)) for r in rows}) > 1]
    x = rep.get("x") or (varying[0] if varying else (axes[0] if axes else None))
    y = rep.get("y") or next((a for a in varying if a != x), None)
    return x, y, rep.get("facet")


def plot_results(rows: Sequence[Row], meta: Mapping[str, Any], outdir: str | Path
                 ) -> list[Path]:
    """Write the plots (PNG) to ``outdir``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, facet = _plot_axes(rows, meta)
    if x is None:
        return []
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    by = [a for a in (facet, y, x) if a]
    groups = summarize(rows, meta, by)
    for g in groups:
        g["broke"] = (g["viol"] + g["err"]) / g["runs"]
    targets: list[tuple[str, str]] = [(m, m) for m in _metrics(meta)]
    targets.append(("broke", "runs that broke an invariant or raised (share)"))
    fvals = sorted({g[facet] for g in groups}, key=_key) if facet else [None]
    xvals = sorted({g[x] for g in groups}, key=_key)
    yvals = sorted({g[y] for g in groups}, key=_key) if y else [None]
    paths: list[Path] = []
    for col, title in targets:
        fig, axs = plt.subplots(1, len(fvals), figsize=(max(4.5, 1 + 0.6 * len(xvals)) *
                                                        len(fvals), 1.8 + 0.45 * len(yvals)),
                                squeeze=False)
        # one colour scale for every panel, so panels compare
        finite = [v for v in (_num(g[col]) for g in groups) if not math.isnan(v)]
        vmin = min(finite) if finite else 0.0
        vmax = max(finite) if finite else 1.0
        vmax = vmax if vmax > vmin else vmin + 1.0
        for ax, fv in zip(axs[0], fvals, strict=True):
            cell = {(g[x], g[y] if y else None): g[col] for g in groups
                    if not facet or g[facet] == fv}
            grid: list[list[float]] = [[_num(cell.get((xv, yv))) for xv in xvals]
                                       for yv in yvals]
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
            ax.set_xticks(range(len(xvals)), [_fmt(v) for v in xvals])
            ax.set_yticks(range(len(yvals)), [_fmt(v) for v in yvals] if y else [""])
            ax.set_xlabel(x)
            if y:
                ax.set_ylabel(y)
            for i, rowv in enumerate(grid):
                for j, v in enumerate(rowv):
                    mid = (vmin + vmax) / 2
                    ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=7,
                            color="black" if not math.isnan(v) and v > mid else "white")
            ax.set_title(f"{facet} = {_fmt(fv)}" if facet else title, fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
        if facet:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        p = out / f"{col}.png"
        fig.savefig(p, dpi=100, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)
    return paths
