"""Figures of a run, drawn with matplotlib's Agg backend (no display needed).

* :func:`plot_ownership`: for each physical CPU, one horizontal band per hardware counter,
  coloured by who owns it over time (the host, a VM, or nobody);
* :func:`plot_counted_vs_true`: a guest's counted against true event counts over time, and
  the counted share;
* :func:`plot_run`: both on one page (what ``pmupart run --plot out.png`` draws).

matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CYCLE_COUNTER",
    "FREE",
    "CountSeries",
    "OwnershipSpan",
    "counter_label",
    "owner_colours",
    "ownership_shares",
    "plot_counted_vs_true",
    "plot_ownership",
    "plot_run",
]

#: The kernel's index of the cycle counter (``ARMV8_PMU_CYCLE_IDX``), labelled ``PMCCNTR``.
CYCLE_COUNTER = 31
#: The owner name for a counter nobody holds.
FREE = "free"
HOST = "host"

_DPI = 100
_WIDTH_IN = 12.0


@dataclass(frozen=True, slots=True)
class OwnershipSpan:
    """Counter ``counter`` of physical CPU ``cpu`` belonged to ``owner`` (``"host"``, a VM
    name, or ``"free"``) from ``start_ns`` to ``end_ns`` of simulated time. ``counter`` is
    the hardware index (0..30 for PMEVCNTR<n>, 31 for the cycle counter) or a label."""

    cpu: int
    counter: int | str
    start_ns: int
    end_ns: int
    owner: str

    def __post_init__(self) -> None:
        if isinstance(self.cpu, bool) or not isinstance(self.cpu, int) or self.cpu < 0:
            raise ValueError(f"OwnershipSpan.cpu must be an int >= 0, not {self.cpu!r}")
        if isinstance(self.counter, bool) or not isinstance(self.counter, int | str) or (
            isinstance(self.counter, int) and self.counter < 0
        ) or self.counter == "":
            raise ValueError(
                "OwnershipSpan.counter must be an int >= 0 or a non-empty label, "
                f"not {self.counter!r}"
            )
        for f in ("start_ns", "end_ns"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"OwnershipSpan.{f} must be an int >= 0, not {v!r}")
        if self.end_ns < self.start_ns:
            raise ValueError(
                f"OwnershipSpan of cpu{self.cpu} counter {self.counter!r} must end at or after "
                f"its start, not {self.end_ns} < {self.start_ns}"
            )
        if not isinstance(self.owner, str) or not self.owner:
            raise ValueError(f"OwnershipSpan.owner must be a non-empty string, not {self.owner!r}")


@dataclass(frozen=True, slots=True)
class CountSeries:
    """One event of one guest: at each of ``times_ns``, the count the guest read
    (``counted``) and what an ideal, unshared PMU would have counted (``true``)."""

    name: str
    times_ns: tuple[int, ...]
    counted: tuple[float, ...]
    true: tuple[float, ...]

    def __init__(
        self,
        name: str,
        times_ns: Iterable[int],
        counted: Iterable[float],
        true: Iterable[float],
    ) -> None:
        t, c, g = tuple(times_ns), tuple(counted), tuple(true)
        if not isinstance(name, str) or not name:
            raise ValueError(f"CountSeries.name must be a non-empty string, not {name!r}")
        if not (len(t) == len(c) == len(g)):
            raise ValueError(
                f"CountSeries {name!r} times_ns, counted and true must have the same length, "
                f"not {len(t)}, {len(c)}, {len(g)}"
            )
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in t):
            raise ValueError(f"CountSeries {name!r} times_ns must be ints >= 0")
        if any(b < a for a, b in pairwise(t)):
            raise ValueError(f"CountSeries {name!r} times_ns must be non-decreasing")
        for what, vals in (("counted", c), ("true", g)):
            if any(not isinstance(v, int | float) or not math.isfinite(v) for v in vals):
                raise ValueError(f"CountSeries {name!r} {what} must be finite numbers")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "times_ns", t)
        object.__setattr__(self, "counted", c)
        object.__setattr__(self, "true", g)


def counter_label(counter: int | str) -> str:
    """``"PMCCNTR"`` for the cycle counter, ``"cnt<n>"`` for an event counter."""
    if isinstance(counter, str):
        return counter
    return "PMCCNTR" if counter == CYCLE_COUNTER else f"cnt{counter}"


def _counter_key(counter: int | str) -> tuple[int, int, str]:
    if isinstance(counter, int):
        return (0, counter, "")
    return (1, 0, counter)


def owner_colours(owners: Iterable[str]) -> dict[str, str]:
    """A stable colour per owner: host blue, free light grey, VMs from a fixed palette in
    name order."""
    palette = ["#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#bcbd22", "#17becf", "#7f7f7f"]
    out: dict[str, str] = {}
    others = sorted(o for o in set(owners) if o not in (HOST, FREE))
    for i, o in enumerate(others):
        out[o] = palette[i % len(palette)]
    out[HOST] = "#1f77b4"
    out[FREE] = "#e8e8e8"
    return out


def _time_axis(max_ns: int) -> tuple[float, str]:
    """(divisor, unit label) that keeps the time axis readable."""
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if max_ns >= 10 * div:
            return div, unit
    return 1.0, "ns"


def _figure(height_in: float) -> Figure:
    # A bare Figure on an Agg canvas: no pyplot, no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH_IN, height_in), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: Time columns of the ownership bands: about one per pixel of the 12-inch figure at 100 dpi.
_COLUMNS = 1100
#: Cells of each counter's row, stacked by share; one blank cell above and below.
_CELLS = 10


def ownership_shares(spans: Sequence[OwnershipSpan], t_max: int, columns: int
                     ) -> dict[tuple[int | str, str], list[float]]:
    """Per (counter, owner), the share of each of ``columns`` equal stretches of ``[0,
    t_max)`` the owner held the counter (0..1): what a pixel column shows, so a stretch
    shorter than a pixel is still counted instead of vanishing."""
    import numpy as np

    edges = np.linspace(0.0, float(t_max), columns + 1)
    width = float(t_max) / columns
    by: dict[tuple[int | str, str], list[OwnershipSpan]] = {}
    for sp in spans:
        by.setdefault((sp.counter, sp.owner), []).append(sp)
    out: dict[tuple[int | str, str], list[float]] = {}
    for key, mine in by.items():
        mine.sort(key=lambda sp: sp.start_ns)
        # owned(t) is piecewise linear: flat between spans, slope 1 inside one
        xs, ys, acc = [0.0], [0.0], 0.0
        for sp in mine:
            xs.append(float(sp.start_ns))
            ys.append(acc)
            acc += sp.end_ns - sp.start_ns
            xs.append(float(sp.end_ns))
            ys.append(acc)
        owned = np.interp(edges, np.array(xs), np.array(ys))
        out[key] = [min(1.0, max(0.0, float(v) / width)) for v in np.diff(owned)]
    return out


def _stack(shares: list[tuple[str, float]]) -> list[str]:
    """``_CELLS`` cells for one column: each owner with a share gets at least one cell
    (largest remainder for the rest), in the given order."""
    present = [(o, sh) for o, sh in shares if sh > 0]
    if not present:
        return []
    total = sum(sh for _, sh in present)
    want = [sh / total * _CELLS for _, sh in present]
    cells = [max(1, int(w)) for w in want]
    while sum(cells) > _CELLS:
        i = max(range(len(cells)), key=lambda k: (cells[k] - want[k], cells[k]))
        cells[i] -= 1
    order = sorted(range(len(cells)), key=lambda k: -(want[k] - int(want[k])))
    for k in order:
        if sum(cells) >= _CELLS:
            break
        cells[k] += 1
    out: list[str] = []
    for (o, _), n in zip(present, cells, strict=True):
        out += [o] * n
    return out


def _draw_ownership(fig: Figure, axes: Sequence[Axes], spans: Sequence[OwnershipSpan],
                    cpus: Sequence[int]) -> None:
    """Each counter's row, column by column (about one per pixel): the share of the
    column's time each owner held it, stacked (host, then VMs, then free); an owner that
    held it at all gets at least a tenth of the row, so short stretches stay visible."""
    import numpy as np
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    colours = owner_colours(s.owner for s in spans)
    rgb = {o: to_rgb(c) for o, c in colours.items()}
    t_max = max(s.end_ns for s in spans)
    div, unit = _time_axis(t_max)
    order = sorted(colours, key=lambda o: (o == FREE, o != HOST, o))
    cols = _COLUMNS
    for ax, cpu in zip(axes, cpus, strict=True):
        mine = [s for s in spans if s.cpu == cpu]
        counters = sorted({s.counter for s in mine}, key=_counter_key)
        shares = ownership_shares(mine, t_max, cols)
        h = _CELLS + 2
        img = np.ones((len(counters) * h, cols, 3))
        for r, c in enumerate(counters):
            per = [(o, shares.get((c, o))) for o in order]
            have = [(o, sh) for o, sh in per if sh is not None]
            for x in range(cols):
                for k, o in enumerate(_stack([(o, sh[x]) for o, sh in have])):
                    img[r * h + 1 + k, x] = rgb[o]
        ax.imshow(img, aspect="auto", interpolation="nearest",
                  extent=(0.0, t_max / div, len(counters) - 0.5, -0.5))
        ax.set_yticks(range(len(counters)), [counter_label(c) for c in counters])
        ax.set_ylim(len(counters) - 0.5, -0.5)
        ax.set_xlim(0, t_max / div)
        ax.set_ylabel(f"cpu{cpu}", rotation=0, ha="right", va="center", fontweight="bold")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"simulated time ({unit}); each column stacks the share of its time "
                        "each owner held the counter")
    used = {s.owner for s in spans}
    handles = [Patch(facecolor=colours[o], label=o) for o in order if o in used]
    axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.02),
                   ncol=min(len(handles), 8), frameon=False, fontsize=9)


def _draw_counts(axes: tuple[Axes, Axes], series: Sequence[CountSeries]) -> None:
    ax_c, ax_r = axes
    t_max = max((max(s.times_ns) for s in series if s.times_ns), default=0)
    div, unit = _time_axis(t_max)
    colours = [f"C{i % 10}" for i in range(len(series))]
    for s, col in zip(series, colours, strict=True):
        xs = [t / div for t in s.times_ns]
        ax_c.plot(xs, s.true, color=col, linestyle="--", linewidth=1.2, alpha=0.8,
                  label=f"{s.name} (true)")
        ax_c.plot(xs, s.counted, color=col, linewidth=1.8, label=f"{s.name} (counted)")
        share = [100.0 * c / g if g else math.nan for c, g in zip(s.counted, s.true, strict=True)]
        ax_r.plot(xs, share, color=col, linewidth=1.5, label=s.name)
    ax_c.set_ylabel("events")
    ax_c.legend(fontsize=8, ncol=2, loc="upper left", frameon=False)
    ax_c.grid(alpha=0.3)
    ax_c.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax_r.set_ylabel("counted / true (%)")
    ax_r.axhline(100.0, color="black", linewidth=0.8, alpha=0.5)
    ax_r.grid(alpha=0.3)
    ax_r.set_xlabel(f"simulated time ({unit})")
    ax_r.set_xlim(0, max(t_max / div, 1e-9))


def _need_spans(spans: Sequence[OwnershipSpan]) -> list[int]:
    if not spans:
        raise ValueError("plot_ownership needs at least one OwnershipSpan")
    for i, s in enumerate(spans):
        if not isinstance(s, OwnershipSpan):
            raise ValueError(f"ownership timeline[{i}] must be an OwnershipSpan, not {s!r}")
    return sorted({s.cpu for s in spans})


def _need_series(series: Sequence[CountSeries]) -> None:
    if not series:
        raise ValueError("plot_counted_vs_true needs at least one CountSeries")
    for i, s in enumerate(series):
        if not isinstance(s, CountSeries):
            raise ValueError(f"series[{i}] must be a CountSeries, not {s!r}")


def _save(fig: Figure, path: str | Path) -> Path:
    p = Path(path)
    # Fixed metadata so the same input gives the same bytes.
    fig.savefig(p, format="png", dpi=_DPI, metadata={"Software": None})
    return p


def plot_ownership(timeline: Sequence[OwnershipSpan], path: str | Path,
                   title: str | None = None) -> Path:
    """Draw who owns each hardware counter of each CPU over time; write a PNG to ``path``.

    The image is 1200 px wide; each CPU gets a band of rows, one row per counter seen.
    """
    spans = list(timeline)
    cpus = _need_spans(spans)
    rows = [len({s.counter for s in spans if s.cpu == c}) for c in cpus]
    height = 1.2 + sum(0.25 * r + 0.35 for r in rows)
    fig = _figure(height)
    axes = fig.subplots(len(cpus), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": rows})[:, 0]
    _draw_ownership(fig, list(axes), spans, cpus)
    fig.suptitle(title or "Counter ownership per CPU", fontweight="bold")
    return _save(fig, path)


def plot_counted_vs_true(series: Sequence[CountSeries], path: str | Path,
                         title: str | None = None) -> Path:
    """Draw each guest event's counted (solid) and true (dashed) counts over time, and the
    counted share; write a 1200 x 700 px PNG to ``path``."""
    ser = list(series)
    _need_series(ser)
    fig = _figure(7.0)
    ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    _draw_counts((ax[0], ax[1]), ser)
    fig.suptitle(title or "Guest events: counted vs true", fontweight="bold")
    return _save(fig, path)


def plot_run(timeline: Sequence[OwnershipSpan], series: Sequence[CountSeries],
             path: str | Path, title: str | None = None) -> Path:
    """Both figures on one page: ownership timelines above, counted vs true below."""
    spans, ser = list(timeline), list(series)
    cpus = _need_spans(spans)
    _need_series(ser)
    rows = [len({s.counter for s in spans if s.cpu == c}) for c in cpus]
    own_h = sum(0.25 * r + 0.35 for r in rows)
    fig = _figure(1.5 + own_h + 5.0)
    subs = cast(Any, fig.subfigures(2, 1, height_ratios=[own_h + 0.8, 5.0]))
    top, bottom = subs[0], subs[1]
    axes = top.subplots(len(cpus), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": rows})[:, 0]
    _draw_ownership(fig, list(axes), spans, cpus)
    top.suptitle("Counter ownership per CPU", fontsize=11)
    ax = bottom.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    _draw_counts((ax[0], ax[1]), ser)
    bottom.suptitle("Guest events: counted vs true", fontsize=11)
    if title:
        fig.suptitle(title, fontweight="bold")
    return _save(fig, path)

