"""pmupart.report: what a run prints and draws.

* :mod:`pmupart.report.perfstat`: ``perf stat`` output exactly as perf prints it (std, ``-x``
  CSV, ``-j`` JSON), from plain :class:`CounterResult` rows.
* :mod:`pmupart.report.tables`: the overhead tables (traps, EL2 time, host-kernel share,
  perf events, host events squeezed out).
* :mod:`pmupart.report.perfetto`: a Chrome/Perfetto trace-event JSON writer.
* :mod:`pmupart.report.plots`: counter-ownership timelines and counted-vs-true plots
  (matplotlib, imported only when a plot is drawn).

This package is a leaf: it takes plain data classes and imports nothing from the
simulation layers (``pmupart.host``, ``pmupart.kvm``, ``pmupart.sim``).
"""

from pmupart.report.perfstat import (
    CounterResult,
    Metric,
    StatReport,
    Target,
    format_csv,
    format_json,
    format_std,
)

__all__ = [
    "CounterResult",
    "Metric",
    "StatReport",
    "Target",
    "format_csv",
    "format_json",
    "format_std",
]
