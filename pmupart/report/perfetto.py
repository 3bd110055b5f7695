"""A Chrome / Perfetto trace-event JSON writer (opens directly in ui.perfetto.dev).

The format is the Trace Event Format Chrome's tracing and Perfetto's JSON importer read:
``{"traceEvents": [...], "displayTimeUnit": "ns"}``, with ``ts`` and ``dur`` in
microseconds (floats allowed, so simulated nanoseconds survive as fractions).  Phases used:

* ``M`` metadata: ``process_name``, ``thread_name``, ``process_sort_index``,
  ``thread_sort_index`` (``args: {"name": ...}`` / ``{"sort_index": n}``);
* ``X`` complete slices on a (pid, tid) track, with ``dur``;
* ``i`` instants with a scope ``s`` of ``"g"`` (global), ``"p"`` (process) or ``"t"``;
* ``C`` counters: each key of ``args`` becomes a counter track ``"<name> <key>"`` on the
  process;
* ``s``/``f`` flow events sharing ``cat``, ``name`` and ``id``: the arrow starts at the slice
  enclosing the ``s`` and ends at the slice enclosing the ``f`` (``bp: "e"``).

Output is deterministic: metadata first (by pid, tid), then events by timestamp with a fixed
tie-break (slices before counters, instants and flows; longer slices first; then the order
they were added), and flow ids are allocated in call order.

Suggested mapping for pmupart runs (as Perfetto's own CPU tracks do): one process per
physical CPU named ``cpu4 (armv8_cortex_a76)``, threads ``host`` / ``vm0:vcpu1``, slices for
who runs, counter tracks for each PMU counter, ``MDCR_EL2.HPMN`` and ownership, instants for
traps, overflows, interrupts and migrations, flows linking a vCPU across migrations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["FlowEnd", "TraceBuilder", "ns_to_us"]

Scope = Literal["g", "p", "t"]
JsonValue = Any

# Tie-break at equal timestamps: a slice must exist before what it encloses.
_PHASE_RANK = {"X": 0, "C": 1, "i": 2, "s": 3, "f": 3}


def ns_to_us(ns: int) -> int | float:
    """Simulated nanoseconds to trace microseconds; an int when exact."""
    return ns // 1000 if ns % 1000 == 0 else ns / 1000


def _check_ns(what: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be an int number of nanoseconds >= 0, not {v!r}")
    return v


def _check_id(what: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be an int >= 0, not {v!r}")
    return v


def _check_name(what: str, v: object) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{what} must be a non-empty string, not {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class FlowEnd:
    """One end of a flow arrow: the slice on (pid, tid) that encloses ``ts_ns``."""

    pid: int
    tid: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class _Event:
    ts_ns: int
    rank: int
    dur_ns: int
    seq: int
    data: dict[str, JsonValue]


class TraceBuilder:
    """Collects trace events and writes them as Chrome/Perfetto JSON.

    >>> tb = TraceBuilder()
    >>> tb.process(4, "cpu4 (armv8_cortex_a76)")
    >>> tb.thread(4, 1, "vm0:vcpu0")
    >>> tb.slice(4, 1, "vm0:vcpu0", start_ns=1_000, dur_ns=2_500)
    >>> tb.counter(4, "HPMN", 1_000, {"value": 4})
    >>> len(tb.events())
    4
    """

    def __init__(self) -> None:
        self._meta: dict[tuple[int, int, str], dict[str, JsonValue]] = {}
        self._events: list[_Event] = []
        self._next_flow_id = 1

    # --- metadata ----------------------------------------------------------------------

    def process(self, pid: int, name: str, sort_index: int | None = None) -> None:
        """Name process ``pid`` (``process_name``), optionally ordering it in the UI."""
        _check_id("process pid", pid)
        _check_name("process name", name)
        self._meta[(pid, -1, "process_name")] = {
            "ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": name},
        }
        if sort_index is not None:
            self._meta[(pid, -1, "process_sort_index")] = {
                "ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
                "args": {"sort_index": int(sort_index)},
            }

    def thread(self, pid: int, tid: int, name: str, sort_index: int | None = None) -> None:
        """Name thread ``tid`` of process ``pid`` (``thread_name``)."""
        _check_id("thread pid", pid)
        _check_id("thread tid", tid)
        _check_name("thread name", name)
        self._meta[(pid, tid, "thread_name")] = {
            "ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name},
        }
        if sort_index is not None:
            self._meta[(pid, tid, "thread_sort_index")] = {
                "ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                "args": {"sort_index": int(sort_index)},
            }

    # --- events ------------------------------------------------------------------------

    def _add(self, ts_ns: int, phase: str, data: dict[str, JsonValue], dur_ns: int = 0) -> None:
        self._events.append(_Event(ts_ns, _PHASE_RANK[phase], dur_ns, len(self._events), data))

    def slice(
        self,
        pid: int,
        tid: int,
        name: str,
        start_ns: int,
        dur_ns: int,
        cat: str = "",
        args: Mapping[str, JsonValue] | None = None,
    ) -> None:
        """A complete slice (``X``) from ``start_ns`` lasting ``dur_ns`` on (pid, tid)."""
        _check_id("slice pid", pid)
        _check_id("slice tid", tid)
        _check_name("slice name", name)
        _check_ns("slice start_ns", start_ns)
        _check_ns("slice dur_ns", dur_ns)
        ev: dict[str, JsonValue] = {
            "ph": "X", "pid": pid, "tid": tid, "name": name,
            "ts": ns_to_us(start_ns), "dur": ns_to_us(dur_ns),
        }
        if cat:
            ev["cat"] = cat
        if args:
            ev["args"] = dict(args)
        self._add(start_ns, "X", ev, dur_ns)

    def instant(
        self,
        pid: int,
        tid: int,
        name: str,
        ts_ns: int,
        scope: Scope = "t",
        cat: str = "",
        args: Mapping[str, JsonValue] | None = None,
    ) -> None:
        """An instant (``i``) at ``ts_ns``; ``scope`` is ``"t"``hread, ``"p"``rocess or
        ``"g"``lobal."""
        _check_id("instant pid", pid)
        _check_id("instant tid", tid)
        _check_name("instant name", name)
        _check_ns("instant ts_ns", ts_ns)
        if scope not in ("g", "p", "t"):
            raise ValueError(f"instant scope must be 'g', 'p' or 't', not {scope!r}")
        ev: dict[str, JsonValue] = {
            "ph": "i", "pid": pid, "tid": tid, "name": name, "ts": ns_to_us(ts_ns), "s": scope,
        }
        if cat:
            ev["cat"] = cat
        if args:
            ev["args"] = dict(args)
        self._add(ts_ns, "i", ev)

    def counter(
        self,
        pid: int,
        name: str,
        ts_ns: int,
        values: Mapping[str, int | float],
        id: int | None = None,
    ) -> None:
        """A counter sample (``C``): each key of ``values`` is a track ``"<name> <key>"``."""
        _check_id("counter pid", pid)
        _check_name("counter name", name)
        _check_ns("counter ts_ns", ts_ns)
        if not values:
            raise ValueError(f"counter {name!r} values must hold at least one series")
        args: dict[str, JsonValue] = {}
        for k, v in values.items():
            _check_name(f"counter {name!r} series name", k)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(
                    f"counter {name!r} value {k!r} must be a finite number, not {v!r}"
                )
            args[k] = v
        ev: dict[str, JsonValue] = {
            "ph": "C", "pid": pid, "tid": 0, "name": name, "ts": ns_to_us(ts_ns), "args": args,
        }
        if id is not None:
            ev["id"] = _check_id("counter id", id)
        self._add(ts_ns, "C", ev)

    def flow(self, name: str, start: FlowEnd, end: FlowEnd, cat: str = "flow") -> int:
        """A flow arrow from the slice enclosing ``start`` to the slice enclosing ``end``
        (a vCPU leaving one pCPU and resuming on another). Returns the flow id."""
        _check_name("flow name", name)
        _check_name("flow cat", cat)
        for what, e in (("start", start), ("end", end)):
            _check_id(f"flow {what} pid", e.pid)
            _check_id(f"flow {what} tid", e.tid)
            _check_ns(f"flow {what} ts_ns", e.ts_ns)
        if end.ts_ns < start.ts_ns:
            raise ValueError(
                f"flow {name!r} must end at or after its start, not {end.ts_ns} < {start.ts_ns}"
            )
        fid = self._next_flow_id
        self._next_flow_id += 1
        self._add(start.ts_ns, "s", {
            "ph": "s", "pid": start.pid, "tid": start.tid, "name": name, "cat": cat,
            "id": fid, "ts": ns_to_us(start.ts_ns),
        })
        self._add(end.ts_ns, "f", {
            "ph": "f", "pid": end.pid, "tid": end.tid, "name": name, "cat": cat,
            "id": fid, "ts": ns_to_us(end.ts_ns), "bp": "e",
        })
        return fid

    # --- output ------------------------------------------------------------------------

    def events(self) -> list[dict[str, JsonValue]]:
        """All events in output order: metadata first, then by time."""
        meta = [self._meta[k] for k in sorted(self._meta)]
        timed = sorted(self._events, key=lambda e: (e.ts_ns, e.rank, -e.dur_ns, e.seq))
        return [dict(m) for m in meta] + [dict(e.data) for e in timed]

    def problems(self) -> list[str]:
        """What Perfetto would show oddly or drop, as sentences (empty when the trace is clean):
        slices on one thread that overlap without nesting (moved to an overflow track), flow
        ends not inside a slice of their thread (no arrow), processes without a name."""
        out: list[str] = []
        by_track: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
        named = {k[0] for k in self._meta if k[2] == "process_name"}
        pids: set[int] = set()
        for e in self._events:
            d = e.data
            pids.add(d["pid"])
            if d["ph"] == "X":
                by_track.setdefault((d["pid"], d["tid"]), []).append(
                    (e.ts_ns, e.ts_ns + e.dur_ns, d["name"]))
        for (pid, tid), slices in sorted(by_track.items()):
            stack: list[tuple[int, str]] = []
            for start, end, name in sorted(slices, key=lambda x: (x[0], -x[1])):
                while stack and stack[-1][0] <= start:
                    stack.pop()
                if stack and end > stack[-1][0]:
                    out.append(
                        f"slice {name!r} on pid {pid} tid {tid} at {start} ns overlaps "
                        f"{stack[-1][1]!r} without nesting"
                    )
                stack.append((end, name))
        for e in self._events:
            d = e.data
            if d["ph"] in ("s", "f"):
                inside = any(a <= e.ts_ns <= b
                             for a, b, _ in by_track.get((d["pid"], d["tid"]), []))
                if not inside:
                    which = "start" if d["ph"] == "s" else "end"
                    out.append(
                        f"flow {d['name']!r} id {d['id']} {which} at {e.ts_ns} ns is not inside "
                        f"a slice of pid {d['pid']} tid {d['tid']}"
                    )
        for pid in sorted(pids - named):
            out.append(f"pid {pid} has no process_name")
        return out

    def to_dict(self) -> dict[str, JsonValue]:
        return {"traceEvents": self.events(), "displayTimeUnit": "ns"}

    def to_json(self) -> str:
        """The trace as compact, deterministic JSON text (one event per line)."""
        lines = [json.dumps(ev, separators=(",", ":")) for ev in self.events()]
        body = ",\n".join(lines)
        return '{"displayTimeUnit":"ns","traceEvents":[\n' + body + "\n]}\n"

    def write(self, path: str | Path) -> Path:
        """Write the trace to ``path`` and return it."""
        p = Path(path)
        p.write_text(self.to_json(), encoding="utf-8")
        return p
