"""Host perf events on the PMUv3 driver: counter allocation, chaining, multiplexing, groups,
pinned-first scheduling and the merge_sched_in stop rule (spec kvm-partitioning §2.3 and the
issue's host section; kernel/events/core.c, drivers/perf/arm_pmuv3.c)."""

from __future__ import annotations

from typing import Any

import pytest

from pmupart import Machine
from pmupart.host import PerfEventAttr
from pmupart.host.perf_event import EventState
from pmupart.host.topology import Topology

INST, CYC, MEM, BR, L1D, L1DR, BRM, L1I = 0x08, 0x11, 0x13, 0x12, 0x04, 0x03, 0x10, 0x14
CYCLE_IDX = 31


def mach(core: str = "cortex-a720", n: int = 2, **kw: Any) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": core, "count": n}]})
    return Machine.from_topology(topo, **kw)


def open_(m: Machine, config: int, cpu: int = 0, **kw: Any) -> Any:
    typ = m.host.pmu_of_cpu(cpu).type
    return m.host.perf_event_open(PerfEventAttr(type=typ, config=config, **kw), cpu=cpu)


def work(m: Machine, ms: int, cpu: int = 0, el: int = 0) -> dict[int, int]:
    """A steady workload at host EL0: per 100 us block 300k cycles (3 GHz), fixed ratios."""
    per = {CYC: 300_000, INST: 500_000, MEM: 200_000, BR: 100_000, L1D: 190_000,
           L1DR: 7_000, BRM: 3_000, L1I: 250_000}
    tot = dict.fromkeys(per, 0)
    for _ in range(ms * 10):
        m.host.retire(cpu, el, per)
        for k, v in per.items():
            tot[k] += v
    return tot


# ---------------------------------------------------------------------- allocation
def test_allocation_high_to_low_and_cycle_counter() -> None:
    m = mach()
    n = m.host.pmus[0].num_counters
    evs = [open_(m, c) for c in (INST, MEM, BR)]
    assert [e.hw_idx for e in evs] == [n - 1, n - 2, n - 3]
    cyc = open_(m, CYC)
    assert cyc.hw_idx == CYCLE_IDX
    cyc2 = open_(m, CYC)  # the cycle counter is taken: a general counter
    assert cyc2.hw_idx == n - 4


def test_allocation_low_to_high_variant() -> None:
    m = mach(alloc_order="low-to-high")
    assert [open_(m, c).hw_idx for c in (INST, MEM, BR)] == [0, 1, 2]


def test_chained_pair_for_64bit_event_before_pmuv3p5() -> None:
    m = mach("cortex-a76")  # PMUv3p1: 32-bit event counters
    ev = open_(m, INST, long=True, exclude_kernel=True)  # EL0 only: no host-kernel work
    assert ev.chained and ev.hw_idx is not None and ev.hw_idx % 2 == 1
    pe = m.host.cpus[0].pe
    s = pe.snapshot()
    assert s.evtyper[ev.hw_idx] & 0xFFFF == 0x1E  # the odd counter counts CHAIN
    assert s.evtyper[ev.hw_idx - 1] & 0xFFFF == INST
    short = open_(m, MEM, exclude_kernel=True)
    assert not short.chained and short.hw_idx not in (ev.hw_idx, ev.hw_idx - 1)
    m.host.retire(0, 0, {INST: 5_000_000_000, MEM: 6_000_000_000})
    assert m.host.perf_event_read(ev)[0] == 5_000_000_000
    assert m.host.perf_event_read(short)[0] == 6_000_000_000  # 32-bit, kept by the IRQ


def test_no_chaining_from_pmuv3p5() -> None:
    m = mach("cortex-a720")
    ev = open_(m, INST, long=True, exclude_kernel=True)
    assert not ev.chained
    m.host.retire(0, 0, {INST: 5_000_000_000})
    assert m.host.perf_event_read(ev)[0] == 5_000_000_000


def test_counts_exact_without_multiplexing() -> None:
    m = mach()
    evs = {c: open_(m, c, exclude_kernel=True) for c in (CYC, INST, MEM, BR)}
    gaps = {c: e.time_enabled - e.time_running for c, e in evs.items()}
    tot = work(m, 10)
    for c, e in evs.items():
        cnt, en, run = m.host.perf_event_read(e)
        # Exact counts; the only not-running time is the few hundred ns of each later
        # install's ctx_resched, before the work started (perf_event_update_time).
        assert cnt == tot[c] and en - run == gaps[c] and run > 0


# ---------------------------------------------------------------------- multiplexing
def test_multiplexing_rotation_scaled_counts() -> None:
    m = mach()
    cfgs = (INST, MEM, BR, L1D, L1DR, BRM, L1I, INST, MEM)  # 9 events, 6 counters
    evs = [open_(m, c, exclude_kernel=True) for c in cfgs]
    tot = work(m, 60)  # 60 ms: 15 mux intervals of 4 ms
    assert m.host.stats.rotations >= 10
    for c, e in zip(cfgs, evs, strict=True):
        _cnt, en, run = m.host.perf_event_read(e)
        assert 0 < run < en
        scaled = e.scaled()
        assert scaled is not None
        assert abs(scaled - tot[c]) <= 0.05 * tot[c], (hex(c), scaled, tot[c])
    # everyone ran about 6/9 of the time
    for e in evs:
        assert 0.5 < e.time_running / e.time_enabled < 0.8


def test_mux_interval_configurable() -> None:
    m = mach(mux_interval_ms=1)
    for c in (INST, MEM, BR, L1D, L1DR, BRM, L1I):
        open_(m, c)
    work(m, 10)
    assert m.host.stats.rotations >= 8


def _squeeze(m: Machine, on: bool) -> None:
    """A partitioned vCPU's load (on) or put (off) on CPU 0: counters 0-3 leave the host
    (``perf_pmu_resched_update``), then come back with a reschedule."""
    pmu = m.host.pmus[0]
    full = pmu.hw_cntr_impl
    if on:
        m.host.resched_update(0, pmu, full & ~0xF)
    else:
        pmu.set_cntr_mask(0, full)
        m.host.resched(0)


def _work_until(m: Machine, t_ns: int) -> None:
    hc = m.host.cpus[0]
    while hc.now_ns < t_ns:
        m.host.retire(0, 0, {CYC: 3_000})  # 1 us at 3 GHz


def test_mux_timer_keeps_its_period_across_guest_entries() -> None:
    """perf_mux_hrtimer_restart starts the mux hrtimer only if it is not active: a group that
    stops waiting and waits again (a vCPU put and load) does not push the rotation back
    (spec kernel-code-deltas §5.8).  Restarting at every load would put it at 2 + 4 ms."""
    m = mach()
    for c in (INST, MEM, BR, L1D, L1DR, BRM):
        open_(m, c, exclude_kernel=True)  # 6 events, 6 counters: all fit
    _squeeze(m, True)  # t ~ 0: 2 counters left, 4 groups wait; the timer starts (4 ms)
    assert m.host.cpus[0].mux_timer_active
    _work_until(m, 1_000_000)
    _squeeze(m, False)  # nothing waits; the timer stays queued
    _work_until(m, 2_000_000)
    _squeeze(m, True)
    assert m.host.cpus[0].next_rotation_ns == 4_000_000
    _work_until(m, 3_990_000)
    assert m.host.stats.rotations == 0
    _work_until(m, 4_100_000)
    assert m.host.stats.rotations == 1
    assert m.host.cpus[0].next_rotation_ns == 8_000_000  # hrtimer_forward_now: same phase


def test_mux_timer_stops_when_nothing_waits_at_expiry() -> None:
    """perf_mux_hrtimer_handler with nothing to rotate stops the timer (hrtimer_active = 0);
    the next restart forwards the old expiry by whole intervals past now."""
    m = mach()
    for c in (INST, MEM, BR, L1D, L1DR, BRM):
        open_(m, c, exclude_kernel=True)
    _squeeze(m, True)
    _work_until(m, 1_000_000)
    _squeeze(m, False)
    _work_until(m, 5_000_000)  # the 4 ms expiry passes with nothing waiting
    assert m.host.stats.rotations == 0
    _squeeze(m, True)  # restarted: 4 ms + 4 ms, not 5 + 4 ms and not at once
    assert m.host.cpus[0].next_rotation_ns == 8_000_000
    _work_until(m, 7_990_000)
    assert m.host.stats.rotations == 0
    _work_until(m, 8_100_000)
    assert m.host.stats.rotations == 1


def test_group_scheduled_together() -> None:
    m = mach()
    typ = m.host.pmus[0].type
    solo = [open_(m, c, exclude_kernel=True) for c in (L1DR, BRM, L1I)]
    lead = m.host.perf_event_open(PerfEventAttr(typ, INST, exclude_kernel=True), cpu=0)
    sibs = [m.host.perf_event_open(PerfEventAttr(typ, c, exclude_kernel=True), cpu=0,
                                   group_leader=lead) for c in (MEM, BR, L1D)]
    work(m, 40)
    grp = [lead, *sibs]
    for e in grp:
        m.host.perf_event_read(e)
    # a group is all-or-nothing: its members are out for the same time (they were opened
    # a few us apart, so their enabled times differ by that)
    outs = [e.time_enabled - e.time_running for e in grp]
    assert max(outs) - min(outs) <= 0.001 * lead.time_enabled, outs
    assert lead.time_running < lead.time_enabled
    for e in solo:
        assert e.time_running > 0


def test_pinned_scheduled_before_flexible() -> None:
    m = mach()
    n = m.host.pmus[0].num_counters
    flex = [open_(m, c) for c in (INST, MEM, BR, L1D, L1DR, BRM)[:n]]
    assert all(e.state is EventState.ACTIVE for e in flex)
    pinned = open_(m, L1I, pinned=True)
    assert pinned.state is EventState.ACTIVE
    assert sum(e.state is EventState.ACTIVE for e in flex) == n - 1
    m.host.perf_event_read(pinned)
    gap = pinned.time_enabled - pinned.time_running  # its install, before any work
    work(m, 40)
    _cnt, en, run = m.host.perf_event_read(pinned)
    assert en - run == gap  # never rotated out
    assert all(e.time_running < e.time_enabled for e in flex)


def test_pinned_that_cannot_fit_goes_to_error() -> None:
    m = mach()
    n = m.host.pmus[0].num_counters
    pins = [open_(m, INST, pinned=True) for _ in range(n)]
    extra = open_(m, MEM, pinned=True)
    assert all(p.state is EventState.ACTIVE for p in pins)
    assert extra.state is EventState.ERROR


def test_merge_sched_in_stops_after_first_flexible_failure() -> None:
    m = mach()
    typ = m.host.pmus[0].type
    n = m.host.pmus[0].num_counters  # 6

    def group(cfgs: tuple[int, ...]) -> list[Any]:
        lead = m.host.perf_event_open(PerfEventAttr(typ, cfgs[0]), cpu=0)
        return [lead] + [m.host.perf_event_open(PerfEventAttr(typ, c), cpu=0, group_leader=lead)
                         for c in cfgs[1:]]

    a = group((INST, MEM, BR, L1D))  # 4 counters
    b = group((L1DR, BRM, L1I))  # 3: does not fit in the 2 left
    c = group((INST,))  # 1: would fit, but is not tried after b failed
    assert n == 6
    m.host.resched(0)
    assert all(e.state is EventState.ACTIVE for e in a)
    assert all(e.state is EventState.INACTIVE for e in b)
    assert c[0].state is EventState.INACTIVE


@pytest.mark.parametrize("core", ["cortex-a76", "cortex-a720"])
def test_release_frees_the_counter(core: str) -> None:
    m = mach(core)
    e = open_(m, INST)
    idx = e.hw_idx
    m.host.perf_event_release(e)
    assert e.state is EventState.DEAD
    assert open_(m, MEM).hw_idx == idx


def test_release_does_not_reschedule_the_context() -> None:
    """``perf_event_release_kernel`` -> ``perf_remove_from_context``: the event is scheduled
    out and unlinked (``event_sched_out``, ``list_del_event``), nothing else is touched; a
    flexible event waiting for a counter gets the freed one at the next rotation of the mux
    timer, not at the release, and the events left on their counters are not rescheduled
    (no ``perf_sched`` charge beyond the released event's own ``armpmu_del``)."""
    m = mach()
    h = m.host
    n = h.pmus[0].num_counters
    evs = [open_(m, c) for c in (INST, MEM, BR, L1D, L1DR, BRM, L1I)[:n + 1]]
    waiting = [e for e in evs if e.state is EventState.INACTIVE]
    assert len(waiting) == 1 and h.cpus[0].ctx.rotate_necessary
    on = {e.id: e.hw_idx for e in evs if e.state is EventState.ACTIVE}
    gone = next(e for e in evs if e.state is EventState.ACTIVE)
    sched0 = h.cpus[0].el2_cycles_by_reason["perf_sched"]
    h.perf_event_release(gone, charge_cpu=0)
    assert waiting[0].state is EventState.INACTIVE  # still waiting for its turn
    assert all(e.hw_idx == on[e.id] for e in evs if e is not gone and e.id in on)
    assert h.cpus[0].el2_cycles_by_reason["perf_sched"] - sched0 == h.costs.perf_sched_event
    work(m, 5)  # the mux timer (4 ms) rotates: the waiting event gets a counter
    assert waiting[0].state is EventState.ACTIVE


def test_a_disabled_event_joining_a_busy_context_is_not_scheduled() -> None:
    """``perf_install_in_context``: a disabled event joining a context that already has
    events is only added to it (no ``ctx_resched``: nothing else is scheduled out and in,
    no ``perf_sched`` charge); an enabled one reschedules the context."""
    m = mach()
    h = m.host
    hc = h.cpus[0]
    first = open_(m, INST)
    idx, sched0 = first.hw_idx, hc.el2_cycles_by_reason["perf_sched"]
    off = open_(m, MEM, disabled=True)
    assert off.state is EventState.OFF and off.hw_idx is None
    assert first.hw_idx == idx and hc.el2_cycles_by_reason["perf_sched"] == sched0
    on = open_(m, BR)  # enabled: ctx_resched takes `first` out and in again
    assert on.state is EventState.ACTIVE
    assert hc.el2_cycles_by_reason["perf_sched"] - sched0 == 3 * h.costs.perf_sched_event
    h.perf_event_enable(off, charge_cpu=0)
    assert off.state is EventState.ACTIVE
