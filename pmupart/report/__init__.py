"""pmupart.report: what a run prints and draws.

* :mod:`pmupart.report.perfstat`: ``perf stat`` output exactly as perf prints it (std, ``-x``
  CSV, ``-j`` JSON), from plain :class:`CounterResult` rows.
* :mod:`pmupart.report.tables`: the overhead tables (traps, EL2 time, host-kernel share,
  perf events, host events squeezed out).
* :mod:`pmupart.report.perfetto`: a Chrome/Perfetto trace-event JSON writer.
* :mod:`pmupart.report.plots`: counter-ownership timelines and counted-vs-true plots
  (matplotlib, imported only when a plot is drawn).

This package is a leaf: it takes plain data classes and imports nothing from the
simulation layers (``pmupart.host``, ``pmupart.kvm``, ``pmupart.sim``); importing it does
not import matplotlib or rich.
"""

from pmupart.report.perfetto import FlowEnd, TraceBuilder
from pmupart.report.perfstat import (
    CounterResult,
    Metric,
    Reading,
    StatReport,
    Target,
    aggregate,
    format_csv,
    format_interval,
    format_json,
    format_report,
    format_std,
)
from pmupart.report.plots import (
    CountSeries,
    OwnershipSpan,
    plot_counted_vs_true,
    plot_ownership,
    plot_run,
)
from pmupart.report.tables import (
    OverheadReport,
    PartyTime,
    PerfEventCount,
    SqueezedEvent,
    TrapRow,
    format_overhead,
    render_overhead,
)

__all__ = [
    "CountSeries",
    "CounterResult",
    "FlowEnd",
    "Metric",
    "OverheadReport",
    "OwnershipSpan",
    "PartyTime",
    "PerfEventCount",
    "Reading",
    "SqueezedEvent",
    "StatReport",
    "Target",
    "TraceBuilder",
    "TrapRow",
    "aggregate",
    "format_csv",
    "format_interval",
    "format_json",
    "format_overhead",
    "format_report",
    "format_std",
    "plot_counted_vs_true",
    "plot_ownership",
    "plot_run",
    "render_overhead",
]
