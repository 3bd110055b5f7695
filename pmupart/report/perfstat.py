"""``perf stat`` output, byte for byte: the std, ``-x SEP`` (CSV) and ``-j`` (JSON) layouts.

Models the printers of ``tools/perf/util/stat-display.c`` (layout), the shadow metrics of
``tools/perf/util/stat-shadow.c`` (IPC, GHz, CPUs utilized, rates) and the scaling rule of
``tools/lib/perf/evsel.c:perf_counts_values__scale()``, as read in the perf tool of the
``tool_pmu`` era (Linux 6.13 and later).  Facts only; the code is ours.

Layout facts this module reproduces (golden files in ``tests/golden/report/``):

* std row: the value right-aligned in 18 columns (``COUNTS_LEN``) with thousands grouping
  (``--big-num`` is on by default), a space, the unit left-aligned in ``unit_width`` columns
  (4, or the longest unit of a supported counter) and a space, the event name left-aligned
  in 32 columns (``EVNAME_LEN``), a 38-column metric slot (``METRIC_LEN``: ``" # "``, the
  formatted value, a space, the unit), then ``"  (%.2f%%)"`` of ``100.0 * run / ena`` only
  when ``run != ena``.
* ``<not counted>`` when the counter never ran (``run == 0`` or ``ena == 0``),
  ``<not supported>`` when it could not be opened, in the value column.
* CSV: ``value,unit,event,run,pct,metric-value,metric-unit``, nothing quoted, the percentage
  computed in integer arithmetic (``100 * run / ena`` on u64) then printed with ``%.2f``.
* JSON: one object per line, keys ``counter-value`` (a string, ``%f``), ``unit``, ``event``,
  ``event-runtime``, ``pcnt-running`` (integer percentage, ``%.2f``), then ``metric-value``
  (a string, ``%f``) and ``metric-unit`` when there is a metric.
* On a host with more than one core PMU, perf opens a plain event on each of them and
  prints one row per PMU named ``<pmu>/<event>/``.

* ``-I`` interval mode: rows prefixed with ``%6lu.%09lu`` seconds since the start, the
  ``#           time             counts unit events`` header first and every 26 intervals.
* Shadow metrics (``stat-shadow.c``): ``insn per cycle`` next to ``instructions`` (cycles of
  the same PMU), ``GHz`` next to ``cycles`` and ``CPUs utilized`` next to ``task-clock``,
  ``K/M/G/sec`` rates for other events when ``task-clock`` was counted, branch/cache miss
  ratios.

Scaling: ``value * time_enabled / time_running`` (in double, truncated to u64) when
``0 < time_running < time_enabled``; ``time_running == 0`` gives ``<not counted>``. Several
per-CPU readings of one event fold into one row with :func:`aggregate` (scaled one by one,
then summed, as ``stat.c:process_counter_values()``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "COUNTS_LEN",
    "EVNAME_LEN",
    "METRIC_LEN",
    "NOT_COUNTED",
    "NOT_SUPPORTED",
    "PERF_LAYOUT",
    "CounterResult",
    "Metric",
    "Reading",
    "StatReport",
    "Target",
    "aggregate",
    "csv_running_pct",
    "format_csv",
    "format_interval",
    "format_json",
    "format_report",
    "format_std",
    "scale_count",
]

#: Which perf layout the printers reproduce (recorded so reports can say so).
PERF_LAYOUT = "perf stat, tools/perf/util/stat-display.c (Linux 6.13+ layout)"

COUNTS_LEN = 18
EVNAME_LEN = 32
METRIC_LEN = 38
#: ``unit_width`` starts at ``strlen("unit")`` in builtin-stat.c.
UNIT_WIDTH_MIN = 4
NOT_COUNTED = "<not counted>"
NOT_SUPPORTED = "<not supported>"

_U64 = 1 << 64

TargetKind = Literal["command", "system_wide", "cpus", "pid", "tid"]


@dataclass(frozen=True, slots=True)
class Target:
    """What ``perf stat`` measured, as named in its header line.

    Use the constructors: ``Target.system_wide()``, ``Target.cpus("0-7")``,
    ``Target.pid(1234)``, ``Target.tid(1235)``, ``Target.command("sleep 1")``.
    """

    kind: TargetKind
    value: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("command", "system_wide", "cpus", "pid", "tid"):
            raise ValueError(
                "Target.kind must be one of 'command', 'system_wide', 'cpus', 'pid', 'tid', "
                f"not {self.kind!r}"
            )
        if self.kind != "system_wide" and not self.value:
            raise ValueError(f"Target of kind {self.kind!r} needs a non-empty value")

    @classmethod
    def system_wide(cls) -> Target:
        return cls("system_wide")

    @classmethod
    def cpus(cls, cpu_list: str) -> Target:
        return cls("cpus", cpu_list)

    @classmethod
    def pid(cls, pid: int | str) -> Target:
        return cls("pid", str(pid))

    @classmethod
    def tid(cls, tid: int | str) -> Target:
        return cls("tid", str(tid))

    @classmethod
    def command(cls, argv: str | Sequence[str]) -> Target:
        return cls("command", argv if isinstance(argv, str) else " ".join(argv))

    def describe(self) -> str:
        """The words after ``Performance counter stats for``."""
        if self.kind == "system_wide":
            return "'system wide'"
        if self.kind == "cpus":
            return f"'CPU(s) {self.value}'"
        if self.kind == "pid":
            return f"process id '{self.value}'"
        if self.kind == "tid":
            return f"thread id '{self.value}'"
        return f"'{self.value}'"


@dataclass(frozen=True, slots=True)
class Metric:
    """A derived value printed next to a counter (perf's "shadow" metric).

    ``fmt`` is a printf format for the value, as perf passes it (``"%7.2f "`` for IPC,
    ``"%8.3f"`` for GHz). ``value=None`` is perf's "metric with no value" (its denominator
    was missing): blank in std and CSV, ``0.000000`` with the unit in JSON, as perf prints.
    """

    unit: str
    value: float | None
    fmt: str = "%8.2f"

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"Metric.value must be finite or None, not {self.value!r}")
        try:
            self.fmt % 1.0
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Metric.fmt must be a printf format for one float, not {self.fmt!r}"
            ) from exc


def scale_count(value: int, time_enabled: int, time_running: int) -> int | None:
    """Scale a multiplexed count as ``perf_counts_values__scale()`` does.

    Returns ``None`` when the counter never ran (perf prints ``<not counted>``), the raw value
    when it ran all the time it was enabled, else ``(u64)((double)value * ena / run)``.
    """
    if time_running == 0 or time_enabled == 0:
        return None
    if time_running < time_enabled:
        return int(float(value) * time_enabled / time_running) % _U64
    return value


def csv_running_pct(time_enabled: int, time_running: int) -> float:
    """The running percentage of the CSV and JSON layouts: integer ``100 * run / ena``."""
    if time_running == time_enabled:
        return 100.0
    # u64 arithmetic in perf: the product wraps, the division truncates.
    return float(((100 * time_running) % _U64) // time_enabled)


@dataclass(frozen=True, slots=True)
class CounterResult:
    """One counter as ``perf stat`` read it: raw count and the two times, in ns.

    ``event`` is the name the user asked for (``"cycles"``, ``"inst_retired"``,
    ``"cycles:u"``); ``pmu`` is the core PMU it was opened on (``"armv8_cortex_a55"``), or
    ``None`` for software events and single-PMU hosts. ``unit``/``scale`` are the sysfs
    ``.unit``/``.scale`` of the event (``"msec"``/``1e-6`` for task-clock). ``metric``
    overrides the metric perf would derive for this row. ``cpu`` makes it a per-CPU row
    (``perf stat -A``: ``CPU3`` in front); give it on every row or on none. ``prescaled``
    says ``value`` is already scaled (a sum of per-CPU scaled counts, see
    :func:`aggregate`), so the printers do not scale it again.
    """

    event: str
    pmu: str | None
    value: int
    time_enabled: int
    time_running: int
    supported: bool = True
    unit: str = ""
    scale: float = 1.0
    metric: Metric | None = None
    cpu: int | None = None
    prescaled: bool = False

    def __post_init__(self) -> None:
        if not self.event:
            raise ValueError("CounterResult.event must be a non-empty event name")
        for name in ("value", "time_enabled", "time_running"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _U64:
                raise ValueError(
                    f"CounterResult.{name} of {self.event!r} must be an int in [0, 2**64), "
                    f"not {v!r}"
                )
        if self.time_running > self.time_enabled:
            raise ValueError(
                f"CounterResult.time_running of {self.event!r} must be <= time_enabled, "
                f"not {self.time_running} > {self.time_enabled}"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(
                f"CounterResult.scale of {self.event!r} must be a positive finite number, "
                f"not {self.scale!r}"
            )
        if self.pmu == "":
            raise ValueError(f"CounterResult.pmu of {self.event!r} must be None or a name")
        if self.cpu is not None and (
            isinstance(self.cpu, bool) or not isinstance(self.cpu, int) or self.cpu < 0
        ):
            raise ValueError(
                f"CounterResult.cpu of {self.event!r} must be None or an int >= 0, "
                f"not {self.cpu!r}"
            )

    @property
    def counted(self) -> bool:
        """True when perf prints a number (supported, enabled and running)."""
        return self.supported and self.time_running > 0 and self.time_enabled > 0

    @property
    def scaled_value(self) -> int | None:
        """The count perf prints before ``scale``; ``None`` for ``<not counted>``."""
        if not self.supported:
            return None
        if self.prescaled:
            return self.value if self.counted else None
        return scale_count(self.value, self.time_enabled, self.time_running)

    @property
    def running_pct(self) -> float:
        """``100.0 * run / ena`` as the std layout computes it (100 when equal)."""
        if self.time_running == self.time_enabled:
            return 100.0
        return 100.0 * self.time_running / self.time_enabled

    def display_name(self, uniquify: bool) -> str:
        """The event column: the PMU-qualified name when perf uniquifies hybrid events.

        As ``evsel__uniquify_counter()``: a name already starting with the PMU stays;
        ``ev//mods`` becomes ``pmu/ev/mods``, ``ev/terms/`` becomes ``pmu/ev,terms/``,
        ``ev:mods`` becomes ``pmu/ev/mods`` and a plain ``ev`` becomes ``pmu/ev/``.
        """
        name, pmu = self.event, self.pmu
        if not uniquify or pmu is None or name.startswith(pmu):
            return name
        if "/" in name:
            i = name.index("/")
            if name[i + 1:i + 2] == "/":
                return f"{pmu}/{name[:i]}/{name[i + 2:]}"
            return f"{pmu}/{name[:i]},{name[i + 1:]}"
        if ":" in name:
            i = name.index(":")
            return f"{pmu}/{name[:i]}/{name[i + 1:]}"
        return f"{pmu}/{name}/"


@dataclass(frozen=True, slots=True)
class Reading:
    """One ``read()`` of one perf event fd: the raw count and its two times (ns). ``cpu`` is
    the CPU a per-CPU event was opened on, ``None`` for a per-task event (perf's cpu -1)."""

    value: int
    time_enabled: int
    time_running: int
    cpu: int | None = None

    def __post_init__(self) -> None:
        for name in ("value", "time_enabled", "time_running"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _U64:
                raise ValueError(f"Reading.{name} must be an int in [0, 2**64), not {v!r}")
        if self.time_running > self.time_enabled:
            raise ValueError(
                "Reading.time_running must be <= time_enabled, "
                f"not {self.time_running} > {self.time_enabled}"
            )


def aggregate(
    event: str,
    pmu: str | None,
    readings: Iterable[Reading],
    *,
    unit: str = "",
    scale: float = 1.0,
    supported: bool = True,
    cpu: int | None = None,
) -> CounterResult:
    """Fold the per-CPU (or per-thread) readings of one event into the row perf prints,
    as ``tools/perf/util/stat.c:process_counter_values()`` does: each reading is scaled on
    its own, then values, enabled and running times are summed. A per-CPU reading that was
    never enabled or never ran marks the whole row ``<not counted>`` (perf zeroes it, "to
    give consistent output in interval mode"); a per-task one (``cpu=None``) does not."""
    total_v = total_e = total_r = 0
    failed = False
    n = 0
    for rd in readings:
        if not isinstance(rd, Reading):
            raise ValueError(f"aggregate readings of {event!r} must be Reading, not {rd!r}")
        n += 1
        if rd.cpu is not None and (rd.time_enabled == 0 or rd.time_running == 0):
            failed = True
        if failed:
            continue
        scaled = scale_count(rd.value, rd.time_enabled, rd.time_running)
        total_v += 0 if scaled is None else scaled
        total_e += rd.time_enabled
        total_r += rd.time_running
    if failed or n == 0:
        total_v = total_e = total_r = 0
    return CounterResult(event, pmu, total_v % _U64, total_e % _U64, total_r % _U64,
                         supported=supported, unit=unit, scale=scale, cpu=cpu, prescaled=True)


@dataclass(frozen=True, slots=True)
class StatReport:
    """Everything one ``perf stat`` invocation prints.

    ``results`` are in the order perf prints them (the event list order; on a
    heterogeneous host, each event's per-PMU rows next to each other). ``uniquify=None``
    names rows ``pmu/event/`` exactly when the results span more than one PMU, as perf does
    on a hybrid host. ``user_ns``/``sys_ns`` (rusage of the measured command) add the
    ``seconds user``/``seconds sys`` lines. ``nmi_watchdog`` prints perf's hint when a
    supported counter was not counted.
    """

    target: Target
    results: tuple[CounterResult, ...]
    elapsed_ns: int
    user_ns: int | None = None
    sys_ns: int | None = None
    big_num: bool = True
    uniquify: bool | None = None
    derive_metrics: bool = True
    nmi_watchdog: bool = False
    _metrics: tuple[Metric | None, ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        target: Target | str,
        results: Iterable[CounterResult],
        elapsed_ns: int,
        user_ns: int | None = None,
        sys_ns: int | None = None,
        *,
        big_num: bool = True,
        uniquify: bool | None = None,
        derive_metrics: bool = True,
        nmi_watchdog: bool = False,
    ) -> None:
        tgt = Target.command(target) if isinstance(target, str) else target
        if not isinstance(tgt, Target):
            raise ValueError(f"StatReport.target must be a Target or a command, not {target!r}")
        res = tuple(results)
        for r in res:
            if not isinstance(r, CounterResult):
                raise ValueError(f"StatReport.results must hold CounterResult, not {r!r}")
        for name, v in (("elapsed_ns", elapsed_ns), ("user_ns", user_ns), ("sys_ns", sys_ns)):
            if v is None and name != "elapsed_ns":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"StatReport.{name} must be an int >= 0, not {v!r}")
        if len({r.cpu is None for r in res}) > 1:
            raise ValueError(
                "StatReport.results must all have a cpu (perf stat -A) or none of them"
            )
        if (user_ns is None) != (sys_ns is None):
            raise ValueError("StatReport.user_ns and sys_ns must be given together or not at all")
        object.__setattr__(self, "target", tgt)
        object.__setattr__(self, "results", res)
        object.__setattr__(self, "elapsed_ns", elapsed_ns)
        object.__setattr__(self, "user_ns", user_ns)
        object.__setattr__(self, "sys_ns", sys_ns)
        object.__setattr__(self, "big_num", big_num)
        object.__setattr__(self, "uniquify", uniquify)
        object.__setattr__(self, "derive_metrics", derive_metrics)
        object.__setattr__(self, "nmi_watchdog", nmi_watchdog)
        object.__setattr__(self, "_metrics", tuple(_metrics_for(self)))

    @property
    def hybrid(self) -> bool:
        """More than one core PMU among the results."""
        return len({r.pmu for r in self.results if r.pmu is not None}) > 1

    @property
    def uniquified(self) -> bool:
        return self.hybrid if self.uniquify is None else self.uniquify

    @property
    def unit_width(self) -> int:
        widths = [len(r.unit) for r in self.results if r.supported]
        return max([UNIT_WIDTH_MIN, *widths])

    def metric(self, index: int) -> Metric | None:
        """The metric printed on row ``index`` (explicit, derived, or ``None``)."""
        return self._metrics[index]


# --- shadow metrics (stat-shadow.c) ----------------------------------------------------------

_NSECS, _CYCLES, _INSNS, _BRANCHES, _BRANCH_MISS, _CACHE_REFS, _CACHE_MISS = range(7)
_STAT_TYPES = {
    "task-clock": _NSECS,
    "cpu-clock": _NSECS,
    "cycles": _CYCLES,
    "cpu-cycles": _CYCLES,
    "instructions": _INSNS,
    "branches": _BRANCHES,
    "branch-instructions": _BRANCHES,
    "branch-misses": _BRANCH_MISS,
    "cache-references": _CACHE_REFS,
    "cache-misses": _CACHE_MISS,
}


def _stat_type(event: str) -> tuple[int | None, str]:
    """(perf's stat type of a generic event, its modifier string)."""
    if "/" in event:
        return None, ""
    base, _, mods = event.partition(":")
    return _STAT_TYPES.get(base), mods


def _uval(r: CounterResult) -> float:
    scaled = r.scaled_value
    return 0.0 if scaled is None else float(scaled) * r.scale


def _find_stat(report: StatReport, me: int, stat: int) -> float:
    """``find_stat()``: the first other row of that type, same modifiers and PMU."""
    r0 = report.results[me]
    _, mods0 = _stat_type(r0.event)
    for i, r in enumerate(report.results):
        if i == me:
            continue
        t, mods = _stat_type(r.event)
        if t != stat or mods != mods0:
            continue
        if stat != _NSECS and r.pmu != r0.pmu:
            continue
        if r.cpu != r0.cpu:  # per-CPU rows pair with the same CPU's rows
            continue
        if stat == _NSECS:
            scaled = r.scaled_value
            return 0.0 if scaled is None else float(scaled)
        return _uval(r)
    return 0.0


def _convert_unit(value: float) -> tuple[float, str]:
    unit = ""
    for prefix in "KMG":
        if value > 1000.0:
            value /= 1000.0
            unit = prefix
    return value, unit


def _derive(report: StatReport, i: int) -> Metric | None:
    r = report.results[i]
    stat, _ = _stat_type(r.event)
    avg = _uval(r)
    if stat == _NSECS:
        wall = float(report.elapsed_ns)
        if wall:
            return Metric("CPUs utilized", avg / (wall * r.scale), "%8.3f")
        return Metric("CPUs utilized", None, "%8.3f")
    if stat == _CYCLES:
        nsecs = _find_stat(report, i, _NSECS)
        if avg and nsecs:
            return Metric("GHz", avg / nsecs, "%8.3f")
        return Metric("GHz", None, "%8.3f")
    if stat == _INSNS:
        cycles = _find_stat(report, i, _CYCLES)
        if cycles:
            return Metric("insn per cycle", avg / cycles, "%7.2f ")
        return Metric("insn per cycle", None, "%7.2f ")
    if stat in (_BRANCH_MISS, _CACHE_MISS):
        denom_type, unit = (
            (_BRANCHES, "of all branches") if stat == _BRANCH_MISS
            else (_CACHE_REFS, "of all cache refs")
        )
        denom = _find_stat(report, i, denom_type)
        if avg and denom:
            return Metric(unit, avg / denom * 100.0, "%7.2f%%")
        return None
    nsecs = _find_stat(report, i, _NSECS)
    if nsecs:
        ratio, prefix = _convert_unit(1e9 * avg / nsecs)
        return Metric(f"{prefix}/sec", ratio, "%8.3f")
    return None


def _metrics_for(report: StatReport) -> list[Metric | None]:
    out: list[Metric | None] = []
    for i, r in enumerate(report.results):
        if r.metric is not None:
            out.append(r.metric)
        elif report.derive_metrics and r.counted:
            out.append(_derive(report, i))
        else:
            out.append(None)
    return out


# --- printers --------------------------------------------------------------------------------


def _value_text(r: CounterResult, big_num: bool, csv: bool) -> str:
    if not r.counted:
        return NOT_SUPPORTED if not r.supported else NOT_COUNTED
    avg = _uval(r)
    decimals = 0 if math.floor(r.scale) == r.scale else 2
    if csv or not big_num:
        return f"{avg:.{decimals}f}"
    return f"{avg:,.{decimals}f}"


def _std_metric(m: Metric | None) -> str:
    if m is None or m.value is None:
        return " " * METRIC_LEN
    head = " # " + (m.fmt % m.value)
    # printf("%-*s") with a negative width left-justifies to its absolute value.
    return head + " " + m.unit.ljust(abs(METRIC_LEN - len(head) - 1))


def _std_rows(report: StatReport, prefix: str = "") -> list[str]:
    uw = report.unit_width
    rows = []
    for i, r in enumerate(report.results):
        line = prefix + ("" if r.cpu is None else f"CPU{r.cpu:<3d} ")
        line += _value_text(r, report.big_num, csv=False).rjust(COUNTS_LEN) + " "
        line += r.unit.ljust(uw) + " "
        line += r.display_name(report.uniquified).ljust(EVNAME_LEN)
        line += _std_metric(report.metric(i) if r.counted else None)
        if r.time_running != r.time_enabled:
            line += f"  ({100.0 * r.time_running / r.time_enabled:.2f}%)"
        rows.append(line + "\n")
    return rows


def format_std(report: StatReport) -> str:
    """The default ``perf stat`` layout, header to footer, as one string."""
    out = ["\n", f" Performance counter stats for {report.target.describe()}:\n", "\n"]
    out += _std_rows(report)
    hint = any(r.supported and not r.counted for r in report.results) and not report.hybrid
    out.append("\n")
    out.append(f" {report.elapsed_ns / 1e9:17.9f} seconds time elapsed")
    if report.user_ns is not None and report.sys_ns is not None:
        out.append("\n\n")
        out.append(f" {report.user_ns / 1e9:17.9f} seconds user\n")
        out.append(f" {report.sys_ns / 1e9:17.9f} seconds sys\n")
    out.append("\n\n")
    if hint and report.nmi_watchdog:
        out.append(
            "Some events weren't counted. Try disabling the NMI watchdog:\n"
            "\techo 0 > /proc/sys/kernel/nmi_watchdog\n"
            "\tperf stat ...\n"
            "\techo 1 > /proc/sys/kernel/nmi_watchdog\n"
        )
    return "".join(out)


def _csv_metric_value(m: Metric) -> str:
    assert m.value is not None
    text = (m.fmt % m.value).lstrip(" \t\n\r\f\v")
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] == "."):
        end += 1
    return text[:end]


def _check_sep(sep: str) -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"CSV sep must be a non-empty string, not {sep!r}")


def _csv_rows(report: StatReport, sep: str, prefix: str = "") -> list[str]:
    rows = []
    for i, r in enumerate(report.results):
        fields = [
            _value_text(r, report.big_num, csv=True),
            r.unit,
            r.display_name(report.uniquified),
            str(r.time_running),
            f"{csv_running_pct(r.time_enabled, r.time_running):.2f}",
        ]
        m = report.metric(i) if r.counted else None
        if m is None or m.value is None:
            fields += ["", ""]
        else:
            fields += [_csv_metric_value(m), m.unit.lstrip(" \t\n\r\f\v")]
        if r.cpu is not None:
            fields.insert(0, f"CPU{r.cpu}")
        rows.append(prefix + sep.join(fields) + "\n")
    return rows


def format_csv(report: StatReport, sep: str = ",") -> str:
    """The ``perf stat -x SEP`` layout: one not-quoted line per counter, no header/footer."""
    _check_sep(sep)
    return "".join(_csv_rows(report, sep))


def _json_rows(report: StatReport, interval: str | None = None) -> list[str]:
    rows = []
    for i, r in enumerate(report.results):
        value = f"{_uval(r):f}" if r.counted else _value_text(r, False, csv=True)
        parts = [] if interval is None else [f'"interval" : {interval}']
        if r.cpu is not None:
            parts.append(f'"cpu" : "{r.cpu}"')
        parts += [
            f'"counter-value" : {json.dumps(value)}',
            f'"unit" : {json.dumps(r.unit)}',
            f'"event" : {json.dumps(r.display_name(report.uniquified))}',
            f'"event-runtime" : {r.time_running}',
            f'"pcnt-running" : {csv_running_pct(r.time_enabled, r.time_running):.2f}',
        ]
        m = report.metric(i) if r.counted else None
        if m is not None:
            mv = 0.0 if m.value is None else m.value
            parts.append(f'"metric-value" : "{mv:f}"')
            parts.append(f'"metric-unit" : {json.dumps(m.unit)}')
        rows.append("{" + ", ".join(parts) + "}\n")
    return rows


def format_json(report: StatReport) -> str:
    """The ``perf stat -j`` layout: one JSON object per line, no header/footer."""
    return "".join(_json_rows(report))


OutputFormat = Literal["std", "csv", "json"]


def format_report(report: StatReport, output: OutputFormat = "std", sep: str = ",") -> str:
    """Dispatch on the output format, as ``perf stat`` / ``-x SEP`` / ``-j`` choose it."""
    if output == "std":
        return format_std(report)
    if output == "csv":
        return format_csv(report, sep)
    if output == "json":
        return format_json(report)
    raise ValueError(f"perf stat output must be 'std', 'csv' or 'json', not {output!r}")


#: ``perf stat -I`` repeats its column header every this many intervals.
INTERVAL_HEADER_EVERY = 26


def _interval_header(per_cpu: bool, unit_width: int) -> str:
    head = "#" + "time".rjust(15)
    if per_cpu:
        head += " " + "cpu".ljust(6)
    return head + " " + "counts".rjust(COUNTS_LEN) + " " + "unit".rjust(unit_width) + " events\n"


def format_interval(
    samples: Sequence[tuple[int, StatReport]], output: OutputFormat = "std", sep: str = ","
) -> str:
    """The ``perf stat -I <ms>`` layout: each sample's rows prefixed with its time since the
    start (``%6lu.%09lu``), the std column header first and again every 26 intervals, no
    ``Performance counter stats`` header and no footer. ``samples`` are ``(ns since start,
    the counts of that interval)``; give each interval's length as its ``elapsed_ns`` (perf
    uses it for ``CPUs utilized``)."""
    if output not in ("std", "csv", "json"):
        raise ValueError(f"perf stat output must be 'std', 'csv' or 'json', not {output!r}")
    if output == "csv":
        _check_sep(sep)
    out: list[str] = []
    last = -1
    for n, (ts_ns, report) in enumerate(samples):
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or ts_ns < 0:
            raise ValueError(f"interval sample {n} time must be an int >= 0 ns, not {ts_ns!r}")
        if ts_ns < last:
            raise ValueError(f"interval sample {n} time must not go backwards: {ts_ns} < {last}")
        last = ts_ns
        sec, nsec = divmod(ts_ns, 1_000_000_000)
        if output == "std":
            if n % INTERVAL_HEADER_EVERY == 0:
                per_cpu = any(r.cpu is not None for r in report.results)
                out.append(_interval_header(per_cpu, report.unit_width))
            out += _std_rows(report, prefix=f"{sec:6d}.{nsec:09d} ")
        elif output == "csv":
            out += _csv_rows(report, sep, prefix=f"{sec}.{nsec:09d}{sep}")
        else:
            out += _json_rows(report, interval=f"{sec}.{nsec:09d}")
    return "".join(out)
