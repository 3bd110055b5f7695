"""The run tracer: Perfetto JSON structure (tracks, ordering, flows, limits) and the plot."""

from __future__ import annotations

import itertools
import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pmupart.arch.events import event_number
from pmupart.check.trace import TraceRecorder
from pmupart.sim import (
    MigrationPolicy,
    MigrationSpec,
    PerfMode,
    PerfSession,
    Phase,
    ScenarioSpec,
    VmSpec,
    Workload,
    run_scenario,
)
from pmupart.sim.session import RunResult

EV = tuple(event_number(x) for x in ("CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "BR_RETIRED"))
WL = Workload("compute", (Phase(rates=Workload.rates_of({"L1D_CACHE": 0.4, "BR_RETIRED": 0.15}),
                                kernel_fraction=0.05),))


#: big.LITTLE with FEAT_FGT on both clusters, so the partitioned vCPU really moves HPMN
MACHINE = {"name": "fgt-8", "cluster": [{"core": "cortex-a520", "count": 4},
                                       {"core": "cortex-a720", "count": 4}]}


def spec(**kw: Any) -> ScenarioSpec:
    vms = (
        VmSpec("vm0", vcpus=2, workload="compute", partition=True, affinity=(0, 1, 2, 3),
               perf=PerfSession(EV, mode=PerfMode.RECORD, freq=4000)),
        VmSpec("vm1", vcpus=1, workload="compute", affinity=(0, 1), perf=PerfSession(EV)),
    )
    base: dict[str, Any] = dict(
        name="trace-test", machine=MACHINE, duration_ns=12_000_000,
        machine_options={"reserved_host_counters": 2}, vms=vms,
        host_perf=(PerfSession(EV[:2]),), workloads={"compute": WL},
        migration=MigrationSpec(MigrationPolicy.PERIODIC, 3_000_000))
    base.update(kw)
    return ScenarioSpec(**base)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceRecorder, RunResult, Path]:
    tr = TraceRecorder()
    r = run_scenario(spec(), listeners=[tr.listener])
    out = tmp_path_factory.mktemp("trace") / "run.json"
    tr.write_trace(r, out)
    return tr, r, out


def events(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["displayTimeUnit"] == "ns"
    evs = doc["traceEvents"]
    assert isinstance(evs, list)
    return evs


def test_valid_json_and_clean(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    tr, _, path = traced
    evs = events(path)
    assert len(evs) > 100
    assert tr.tb.problems() == []
    assert {e["ph"] for e in evs} >= {"M", "X", "C", "i", "s", "f"}


def test_a_process_per_cpu_named_with_its_pmu(
        traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, r, path = traced
    names = {e["pid"]: e["args"]["name"] for e in events(path)
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert len(names) == len(r.machine.host.cpus)
    assert names[1] == "cpu0 (armv9_cortex_a520)"
    assert names[5] == "cpu4 (armv9_cortex_a720)"


def test_slices_for_vcpus_and_threads_named(
        traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, _, path = traced
    evs = events(path)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs
               if e["ph"] == "M" and e["name"] == "thread_name"}
    slices = [e for e in evs if e["ph"] == "X"]
    assert {e["name"] for e in slices} >= {"vm0:vcpu0", "vm0:vcpu1", "vm1:vcpu0"}
    for s in slices:
        assert threads[(s["pid"], s["tid"])] == s["name"]
        assert s["dur"] >= 0
    # one CPU runs one context at a time: slices of a process never overlap
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for s in slices:
        by_pid.setdefault(s["pid"], []).append((s["ts"], s["ts"] + s["dur"]))
    for spans in by_pid.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-9


def test_counter_tracks_present(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, r, path = traced
    counters = [e for e in events(path) if e["ph"] == "C"]
    names = Counter(e["name"] for e in counters)
    assert set(names) == {"PMU counters", "MDCR_EL2.HPMN", "ownership", "owner"}
    a55 = next(e for e in counters if e["name"] == "PMU counters" and e["pid"] == 1)
    assert set(a55["args"]) == {*(f"cnt{i}" for i in range(6)), "PMCCNTR"}
    # HPMN goes below N on a CPU while a partitioned vCPU owns counters there
    hpmn = [e["args"]["value"] for e in counters if e["name"] == "MDCR_EL2.HPMN"]
    assert min(hpmn) < 6 and max(hpmn) == 6
    own = [e["args"] for e in counters if e["name"] == "ownership"]
    assert any(a["guest"] > 0 for a in own) and any(a["host"] > 0 for a in own)
    # every CPU has every track
    for pid in range(1, len(r.machine.host.cpus) + 1):
        assert {e["name"] for e in counters if e["pid"] == pid} == set(names)


def test_instants(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, _, path = traced
    inst = Counter(e["cat"] for e in events(path) if e["ph"] == "i")
    for kind in ("trap", "pmu_irq", "virq", "migrate", "pmupart"):
        assert inst[kind] > 0, kind
    limits = next(e for e in events(path) if e["ph"] == "i" and e["name"] == "trace limits")
    assert limits["args"]["max_instants_per_cpu_and_kind"] == 2000


def test_time_ordered_metadata_first(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, _, path = traced
    evs = events(path)
    phases = [e["ph"] for e in evs]
    first_timed = phases.index(next(p for p in phases if p != "M"))
    assert set(phases[:first_timed]) == {"M"} and "M" not in phases[first_timed:]
    ts = [e["ts"] for e in evs[first_timed:]]
    assert ts == sorted(ts)


def test_flows_paired_across_migrations(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, r, path = traced
    evs = events(path)
    starts = {e["id"]: e for e in evs if e["ph"] == "s"}
    ends = {e["id"]: e for e in evs if e["ph"] == "f"}
    assert starts and set(starts) == set(ends)
    assert r.engine.migrations >= len(starts)
    for fid, s in starts.items():
        f = ends[fid]
        assert s["tid"] == f["tid"] and s["pid"] != f["pid"] and s["ts"] <= f["ts"]


def test_deterministic(traced: tuple[TraceRecorder, RunResult, Path], tmp_path: Path) -> None:
    _, _, path = traced
    tr = TraceRecorder()
    r = run_scenario(spec(), listeners=[tr.listener])
    assert tr.write_trace(r, tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_size_is_bounded(tmp_path: Path) -> None:
    tr = TraceRecorder(samples_per_cpu=10, max_instants=5)
    r = run_scenario(spec(), listeners=[tr.listener])
    evs = events(tr.write_trace(r, tmp_path / "small.json"))
    assert tr.tb.problems() == []
    per_cpu = Counter((e["pid"], e["name"]) for e in evs if e["ph"] == "C")
    # 10 samples by time, plus forced ones at load/put; far fewer than the sample points
    assert max(per_cpu.values()) < 200
    inst = Counter((e["pid"], e["cat"]) for e in evs if e["ph"] == "i" and e["cat"] != "pmupart")
    assert max(inst.values()) <= 5 * 2  # migrate instants are on both CPUs
    assert tr.dropped["trap"] > 0
    limits = next(e for e in evs if e["name"] == "trace limits")
    assert limits["args"]["dropped_trap"] == tr.dropped["trap"]


def test_plot_png(traced: tuple[TraceRecorder, RunResult, Path], tmp_path: Path) -> None:
    tr, r, _ = traced
    out = tr.write_plot(r, tmp_path / "run.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert w == 1200 and h > 700
    assert len(data) > 30_000  # drawn, not blank
    spans = tr.ownership()
    assert {s.owner for s in spans} >= {"host", "vm0", "vm1", "free"}
    ser = tr.series()
    assert ser and all(len(s.times_ns) >= 2 for s in ser)
    # the guest's counts never run ahead of what the vCPU retired for an unshared event
    inst = next(s for s in ser if s.name == "vm1:vcpu0 inst_retired")
    assert inst.counted[-1] <= inst.true[-1]


def test_unused_recorder_refuses(traced: tuple[TraceRecorder, RunResult, Path],
                                 tmp_path: Path) -> None:
    _, r, _ = traced
    with pytest.raises(ValueError, match="saw no run"):
        TraceRecorder().write_trace(r, tmp_path / "x.json")
    with pytest.raises(ValueError):
        TraceRecorder(samples_per_cpu=0)


def test_tracing_does_not_change_the_run(traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    _, r, _ = traced
    plain = run_scenario(spec())
    assert [[(e.event, e.count, e.time_running) for e in v.events] for v in plain.vms] == \
        [[(e.event, e.count, e.time_running) for e in v.events] for v in r.vms]
    assert [c.truth for c in plain.contexts] == [c.truth for c in r.contexts]


def test_counted_tracks_the_guest_between_reads(
        traced: tuple[TraceRecorder, RunResult, Path]) -> None:
    tr, _, _ = traced
    # vm1 (emulated, perf stat, 4 events on 6 counters: no rotation) only reads its
    # counters at the end, yet the plot follows its count at every switch point.
    ser = next(s for s in tr.series() if s.name == "vm1:vcpu0 inst_retired")
    mid = len(ser.times_ns) // 2
    assert 0 < ser.counted[mid] <= ser.true[mid]


def test_slices_capped_flows_stay_anchored(tmp_path: Path) -> None:
    tr = TraceRecorder(max_slices=2)
    r = run_scenario(spec(), listeners=[tr.listener])
    evs = events(tr.write_trace(r, tmp_path / "few.json"))
    assert tr.tb.problems() == []
    per_cpu = Counter(e["pid"] for e in evs if e["ph"] == "X")
    assert max(per_cpu.values()) <= 2
    assert tr.dropped["slice"] > 0


def test_plot_spans_merged_and_shares_keep_short_stretches() -> None:
    from pmupart.check.trace import _coarsen
    from pmupart.report.plots import OwnershipSpan, ownership_shares
    from pmupart.report.plots import _stack as stack
    # a counter that flips owner every 10 ns for 100 us, and one held by two owners
    flips = [OwnershipSpan(0, 0, t, t + 10, "host" if (t // 10) % 2 else "vm0")
             for t in range(0, 100_000, 10)]
    calm = [OwnershipSpan(0, 1, 0, 40_000, "vm0"), OwnershipSpan(0, 1, 40_000, 60_000, "vm0"),
            OwnershipSpan(0, 1, 60_000, 100_000, "free")]
    out = _coarsen(flips + calm, 100_000)
    assert [(s.start_ns, s.end_ns, s.owner) for s in out if s.counter == 1] == \
        [(0, 60_000, "vm0"), (60_000, 100_000, "free")]
    sh = ownership_shares(out, 100_000, 100)
    assert all(abs(x - 0.5) < 1e-9 for x in sh[(0, "vm0")])  # half of every column
    assert sh[(1, "vm0")][:60] == [1.0] * 60 and sh[(1, "free")][60:] == [1.0] * 40
    # a VM holding a counter 1 us in every 4 ms for 60 s: a 0.025% share per 50 ms column,
    # which a majority vote per pixel dropped; the stack keeps a cell for it
    short = [OwnershipSpan(0, 0, t, t + 1_000, "vm0") for t in range(0, 60 * 10**9, 4_000_000)]
    sh = ownership_shares(short, 60 * 10**9, 1200)
    assert all(0 < x < 0.001 for x in sh[(0, "vm0")])
    assert stack([("host", 0.9997), ("vm0", 0.0003)]).count("vm0") == 1
    assert len(stack([("host", 0.2), ("vm0", 0.5), ("free", 0.3)])) == 10


def test_a_skipped_stretch_is_marked(tmp_path: Path) -> None:
    """A stretch the engine fast-forwarded (here sampling windows of a guest perf record)
    has no traps or interrupts of its own in the trace: an instant on the CPU says where it
    starts, how long it is and how many windows it stands for."""
    from pmupart.check.cover_letter import scenario as cover

    tr = TraceRecorder()
    r = run_scenario(cover("gzip", "partitioned", 5.0), listeners=[tr.listener])
    out = tr.write_trace(r, tmp_path / "ff.json")
    ff = [e for e in events(out) if e["ph"] == "i" and e["cat"] == "fast_forward"]
    assert r.engine.fast_forwarded_ns > 0 and ff
    skipped = sum(e["args"]["until_ns"] for e in ff) - sum(int(e["ts"] * 1000) for e in ff)
    assert abs(skipped - r.engine.fast_forwarded_ns) <= 1000 * len(ff)  # ts is in µs
    assert all(e["args"]["periods"] >= 1 and "vm0" in e["args"]["contexts"] for e in ff)
