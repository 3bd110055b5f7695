"""One sweep run: load the point's scenario, run it under the checker, take its metrics.

The run's report is the JSON document of ``pmupart run --json`` (:func:`pmupart.sim.
summary.to_json`) with two additions for metrics to address:

- every ``perf_stat`` row (a guest's or the host's) gets ``retired``: what an ideal,
  unshared PMU would have counted for it, from the checker's ledger
  (:meth:`pmupart.check.ledger.Ledger.ideal_guest` / ``ideal_host``); a metric with
  ``relative_to`` divides a count by it;
- ``violations``: the checker's violation count per invariant (``share``, ``host-counts``,
  ...), and ``ok``.

Metric paths (``docs/sweep.md``) are dotted keys with selectors: ``[2]`` an element by
index, ``[*]`` every element, ``[name]`` the elements whose ``name``/``event``/``session``/
``party``/``register``/``reason`` is ``name`` (a host row ``armv8_cortex_a76/cpu_cycles/``
answers to ``cpu_cycles`` too).  Values are numbers (perf's number strings are read as
numbers; ``<not counted>`` is no value); several values are combined by the metric's
``reduce``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pmupart.sweep.spec import Axis, Metric, Point, Sweep, toml_literal

__all__ = ["Job", "extract", "parse_metric_path", "run_batch", "run_point", "run_report"]

_ID_FIELDS = ("name", "event", "session", "party", "register", "reason", "rule")
_SEG = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class Job:
    """What a worker needs to run any point of a sweep (not the points themselves)."""

    base: dict[str, Any]
    base_source: str
    base_dir: str
    axes: tuple[Axis, ...]
    metrics: tuple[Metric, ...]

    @classmethod
    def of(cls, sweep: Sweep) -> Job:
        return cls(dict(sweep.base), sweep.base_source, sweep.base_dir, sweep.axes,
                   sweep.metrics)


# ---------------------------------------------------------------------- metric paths
Selector = tuple[str, str | int]  # ("key", name) | ("index", n) | ("all", "") | ("match", s)


def parse_metric_path(path: str) -> list[Selector]:
    """``vms[vm0].perf_stat[cpu_cycles].counter-value`` -> selectors; ``ValueError`` if the
    path is malformed."""
    text = path.strip()
    out: list[Selector] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and out:
            pos += 1
        m = _SEG.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"expected a path of keys and [selectors] "
                             f"(vms[vm0].perf_stat[cpu_cycles].counter-value), found {path!r}")
        if m.group(1) is not None:
            sel = m.group(1).strip()
            if not sel:
                raise ValueError(f"empty selector [] in {path!r}")
            if sel == "*":
                out.append(("all", ""))
            elif re.fullmatch(r"-?\d+", sel):
                out.append(("index", int(sel)))
            else:
                out.append(("match", sel.strip("\"'")))
        else:
            out.append(("key", m.group(2).strip()))
        pos = m.end()
    if not out:
        raise ValueError("expected a path, found an empty string")
    return out


def _matches(item: Any, name: str) -> bool:
    if not isinstance(item, dict):
        return False
    low = name.lower()
    for f in _ID_FIELDS:
        v = item.get(f)
        if isinstance(v, str) and (v.lower() == low or
                                   (v.count("/") == 2 and v.split("/")[1].lower() == low)):
            return True
    return False


def _select(nodes: list[Any], sel: Selector) -> list[Any]:
    kind, arg = sel
    out: list[Any] = []
    for n in nodes:
        if kind == "key":
            if isinstance(n, dict) and arg in n:
                out.append(n[arg])
        elif kind == "index":
            if isinstance(n, list) and isinstance(arg, int) and -len(n) <= arg < len(n):
                out.append(n[arg])
        elif kind == "all":
            if isinstance(n, list):
                out.extend(n)
            elif isinstance(n, dict):
                out.extend(n[k] for k in sorted(n))
        elif isinstance(n, list):
            out.extend(x for x in n if _matches(x, str(arg)))
        elif isinstance(n, dict) and arg in n:
            out.append(n[arg])
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def values_at(report: dict[str, Any], path: str) -> list[float]:
    """Every number at ``path`` in ``report``."""
    nodes: list[Any] = [report]
    for sel in parse_metric_path(path):
        nodes = _select(nodes, sel)
    return [x for x in (_number(n) for n in nodes) if x is not None and not math.isnan(x)]


def _reduce(vals: Sequence[float], how: str) -> float | None:
    if how == "count":
        return float(len(vals))
    if not vals:
        return None
    if how == "sum":
        return float(math.fsum(vals))
    if how == "mean":
        return float(math.fsum(vals) / len(vals))
    return float(min(vals) if how == "min" else max(vals))


def extract(report: dict[str, Any], metrics: Sequence[Metric]
            ) -> tuple[dict[str, float | None], list[str]]:
    """Each metric's value in ``report``, and the names of the metrics that matched nothing
    (and have no default)."""
    out: dict[str, float | None] = {}
    unmatched: list[str] = []
    for m in metrics:
        vals = values_at(report, m.path)
        v = _reduce(vals, m.reduce) if vals or m.reduce == "count" else None
        if v is not None and m.relative_to is not None:
            rel = _reduce(values_at(report, m.relative_to), m.reduce)
            v = v / rel if rel else None
        if v is None:
            if m.default is not None:
                v = m.default
            else:
                unmatched.append(m.name)
        out[m.name] = v
    return out, unmatched


# ---------------------------------------------------------------------- one run
def run_report(spec: Any) -> dict[str, Any]:
    """Run ``spec`` (a ScenarioSpec) under the checker; its JSON report with ``retired`` on
    every perf row and the violations per invariant."""
    from pmupart.arch.events import event_name
    from pmupart.check import Checker
    from pmupart.sim.session import run_scenario
    from pmupart.sim.summary import to_json

    checker = Checker(max_reports=1)
    result = run_scenario(spec, listeners=[checker.listener])
    checker.finish(result)
    report = to_json(result, checker.verdict())
    ledger = checker.ledger

    guest: dict[str, dict[str, int]] = {}
    for ctx in result.contexts:
        drv = ctx.driver
        if drv is None or ctx.vcpu is None:
            continue
        per = guest.setdefault(ctx.vcpu.vm.name, {})
        for ev in drv.events:
            key = event_name(ev).lower()
            per[key] = per.get(key, 0) + ledger.ideal_guest(
                ctx.name, ev, exclude_user=drv.exclude_user, exclude_kernel=drv.exclude_kernel)
    for vm in report["vms"]:
        truth = guest.get(vm["name"], {})
        for row in vm["perf_stat"]:
            row["retired"] = truth.get(str(row.get("event", "")).lower())

    host = result.machine.host
    for entry, (sess, _rows) in zip(report["host"], result.host, strict=True):
        owner = "host:perf" if sess.scope == "system" else f"host:perf:{sess.scope[5:]}"
        truth_h: dict[tuple[str, str], int] = {}
        for e in host.events:
            a = e.attr
            if e.owner != owner or a.config not in sess.events or \
                    (a.exclude_user, a.exclude_kernel, a.exclude_guest, a.exclude_host) != \
                    (sess.exclude_user, sess.exclude_kernel, sess.exclude_guest,
                     sess.exclude_host):
                continue
            hkey = (e.pmu.name, event_name(a.config).lower())
            truth_h[hkey] = truth_h.get(hkey, 0) + ledger.ideal_host(e)
        for row in entry["perf_stat"]:
            label = str(row.get("event", ""))
            if label.count("/") == 2:
                pmu_name, evname, _ = label.split("/")
                row["retired"] = truth_h.get((pmu_name, evname.lower()))
            else:
                hits = [n for (_p, evname), n in truth_h.items() if evname == label.lower()]
                row["retired"] = sum(hits) if hits else None
    report["violations"] = dict(sorted(checker.counts.items()))
    report["ok"] = checker.ok
    return report


def run_point(job: Job, point: Point) -> dict[str, Any]:
    """One row of the results table: the point, its metrics, verdict and wall time.  A run
    that raises gives a row with its error (``verdict = "error"``), never an exception."""
    from pmupart.scenario.loader import load_scenario_mapping

    row: dict[str, Any] = {"point": point.index}
    for a, v in zip(job.axes, point.values, strict=True):
        row[a.name] = v if isinstance(v, bool | int | float | str) else toml_literal(v)
    row["seed"] = point.seed
    for m in job.metrics:
        row[m.name] = None
    t0 = time.perf_counter()
    try:
        overrides = [a.override(v) for a, v in zip(job.axes, point.values, strict=True)]
        overrides.append(f"scenario.seed={point.seed}")
        spec = load_scenario_mapping(job.base, job.base_source, overrides=overrides,
                                     base_dir=job.base_dir)
        report = run_report(spec)
        values, unmatched = extract(report, job.metrics)
        row.update(values)
        n = sum(report["violations"].values())
        row.update(verdict="ok" if n == 0 else "violations", violations=n, error=None)
        row["_unmatched"] = unmatched
    except Exception as e:
        row.update(verdict="error", violations=0, error=f"{type(e).__name__}: {e}",
                   _unmatched=[])
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_batch(job: Job, points: Sequence[Point]) -> list[dict[str, Any]]:
    """The rows of ``points``, in order (one Dask task)."""
    return [run_point(job, p) for p in points]
