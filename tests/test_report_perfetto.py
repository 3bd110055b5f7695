"""The Chrome/Perfetto trace writer: valid JSON, required keys per phase, ordering, flows."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pmupart.report.perfetto import FlowEnd, TraceBuilder, ns_to_us

REQUIRED = {
    "M": {"ph", "pid", "tid", "name", "args"},
    "X": {"ph", "pid", "tid", "name", "ts", "dur"},
    "i": {"ph", "pid", "tid", "name", "ts", "s"},
    "C": {"ph", "pid", "name", "ts", "args"},
    "s": {"ph", "pid", "tid", "name", "cat", "id", "ts"},
    "f": {"ph", "pid", "tid", "name", "cat", "id", "ts", "bp"},
}


def migration_trace() -> TraceBuilder:
    """vm0:vcpu0 runs on cpu0 (LITTLE), is migrated to cpu4 (big); built out of time order."""
    tb = TraceBuilder()
    tb.process(4, "cpu4 (armv8_cortex_a76)", sort_index=4)
    tb.process(0, "cpu0 (armv8_cortex_a55)", sort_index=0)
    tb.thread(0, 1, "vm0:vcpu0")
    tb.thread(4, 1, "vm0:vcpu0")
    tb.thread(0, 2, "host")
    tb.slice(4, 1, "vm0:vcpu0", 2_000_500, 1_000_000, cat="vcpu")
    tb.slice(0, 1, "vm0:vcpu0", 0, 2_000_000, cat="vcpu", args={"vm": "vm0"})
    tb.slice(0, 2, "kworker", 2_000_000, 700, cat="host")
    tb.slice(0, 1, "trap PMCR_EL0", 1_200, 350, cat="trap")
    tb.instant(0, 1, "PMUIRQ", 1_500_000, scope="t", args={"counter": 3})
    tb.instant(4, 1, "migrate", 2_000_500, scope="p")
    tb.counter(0, "MDCR_EL2.HPMN", 0, {"value": 6})
    tb.counter(0, "MDCR_EL2.HPMN", 1_000, {"value": 4})
    tb.counter(4, "owner", 2_000_500, {"host": 2, "vm0": 4, "free": 0})
    tb.flow("vm0:vcpu0 migrates", FlowEnd(0, 1, 1_999_999), FlowEnd(4, 1, 2_000_500))
    return tb


def test_valid_json_and_container(tmp_path: Path) -> None:
    path = migration_trace().write(tmp_path / "t.json")
    doc = json.loads(path.read_text())
    assert doc["displayTimeUnit"] == "ns"
    assert isinstance(doc["traceEvents"], list) and len(doc["traceEvents"]) == 18


def test_every_event_has_the_keys_of_its_phase() -> None:
    for ev in json.loads(migration_trace().to_json())["traceEvents"]:
        missing = REQUIRED[ev["ph"]] - set(ev)
        assert not missing, (ev, missing)


def test_metadata_first_and_sorted() -> None:
    evs = migration_trace().events()
    phases = [e["ph"] for e in evs]
    n_meta = phases.count("M")
    assert phases[:n_meta] == ["M"] * n_meta and "M" not in phases[n_meta:]
    names = [(e["pid"], e["name"], e["args"]) for e in evs[:n_meta]]
    assert names[0] == (0, "process_name", {"name": "cpu0 (armv8_cortex_a55)"})
    assert (0, "process_sort_index", {"sort_index": 0}) in names


def test_ts_ordering_within_each_track() -> None:
    tracks: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for ev in migration_trace().events():
        if ev["ph"] == "M":
            continue
        key = (ev["pid"], ev["name"]) if ev["ph"] == "C" else (ev["pid"], ev["tid"])
        tracks[key].append(ev["ts"])
    assert tracks
    for ts in tracks.values():
        assert ts == sorted(ts)


def test_slices_nest_parent_first_at_equal_ts() -> None:
    tb = TraceBuilder()
    tb.slice(1, 1, "inner", 100, 10)
    tb.slice(1, 1, "outer", 100, 50)
    tb.flow("f", FlowEnd(1, 1, 100), FlowEnd(1, 1, 120))
    assert [e["name"] for e in tb.events()] == ["outer", "inner", "f", "f"]


def test_flows_paired_with_binding_point() -> None:
    evs = migration_trace().events()
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    ends = {e["id"]: e for e in evs if e["ph"] == "f"}
    assert set(starts) == set(ends) == {1}
    s, f = starts[1], ends[1]
    assert (s["cat"], s["name"]) == (f["cat"], f["name"])
    assert f["bp"] == "e" and s["ts"] <= f["ts"]
    assert (s["pid"], f["pid"]) == (0, 4)


def test_flow_ids_are_stable() -> None:
    tb = TraceBuilder()
    ids = [tb.flow("m", FlowEnd(0, 0, i), FlowEnd(1, 0, i + 1)) for i in range(3)]
    assert ids == [1, 2, 3]


def test_deterministic_bytes() -> None:
    assert migration_trace().to_json() == migration_trace().to_json()


def test_microseconds_from_nanoseconds() -> None:
    assert ns_to_us(2_000_000) == 2000 and isinstance(ns_to_us(2_000_000), int)
    assert ns_to_us(1_200) == 1.2
    assert ns_to_us(1) == 0.001
    ev = next(e for e in migration_trace().events() if e["name"] == "trap PMCR_EL0")
    assert (ev["ts"], ev["dur"]) == (1.2, 0.35)


def test_counter_series_and_instant_scope() -> None:
    evs = migration_trace().events()
    (own,) = [e for e in evs if e["name"] == "owner"]
    assert own["args"] == {"host": 2, "vm0": 4, "free": 0}
    (mig,) = [e for e in evs if e["name"] == "migrate"]
    assert mig["s"] == "p"


def test_empty_trace_is_valid() -> None:
    assert json.loads(TraceBuilder().to_json()) == {"displayTimeUnit": "ns", "traceEvents": []}


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda tb: tb.slice(0, 0, "x", -1, 5), "slice start_ns must be an int number"),
        (lambda tb: tb.slice(0, 0, "x", 1, 2.5), "slice dur_ns must be an int number"),
        (lambda tb: tb.slice(0, 0, "", 1, 2), "slice name must be a non-empty string"),
        (lambda tb: tb.instant(0, 0, "x", 1, scope="q"), "instant scope must be 'g', 'p' or 't'"),
        (lambda tb: tb.counter(0, "c", 1, {}), "must hold at least one series"),
        (lambda tb: tb.counter(0, "c", 1, {"v": float("nan")}), "'v' must be a finite number"),
        (lambda tb: tb.process(-1, "p"), "process pid must be an int >= 0"),
        (lambda tb: tb.flow("m", FlowEnd(0, 0, 5), FlowEnd(0, 0, 4)),
         "flow 'm' must end at or after its start"),
    ],
)
def test_bad_input(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(TraceBuilder())


def test_problems_clean_trace() -> None:
    assert migration_trace().problems() == []


def test_problems_found() -> None:
    tb = TraceBuilder()
    tb.slice(1, 1, "a", 0, 100)
    tb.slice(1, 1, "b", 50, 100)       # overlaps a without nesting
    tb.slice(1, 1, "c", 10, 20)        # nests in a: fine
    tb.flow("m", FlowEnd(1, 1, 5), FlowEnd(1, 2, 500))
    probs = tb.problems()
    assert any("slice 'b' on pid 1 tid 1 at 50 ns overlaps 'a'" in p for p in probs)
    assert any("flow 'm' id 1 end at 500 ns is not inside" in p for p in probs)
    assert "pid 1 has no process_name" in probs
    assert len(probs) == 3
