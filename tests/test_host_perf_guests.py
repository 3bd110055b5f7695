"""Host perf events while guests run (spec kvm-partitioning §2.3, §4.3): host events keep
their counts, exactly where they keep a counter and scaled (count * enabled / running)
where they are multiplexed, on the emulated vPMU (guest counters are pinned host events)
and on the partitioned vPMU with the dynamic (v7+) and static (up to v6) reservation; a
pinned host event squeezed out by a partitioned vCPU draws a warning and a stat."""

from __future__ import annotations

from typing import Any

import pytest

from pmupart import Machine
from pmupart.host import PerfEventAttr
from pmupart.host.perf_event import EventState
from pmupart.host.topology import Topology
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

IRQ, INIT, SET_NR, PART = 0, 1, 4, 5
INST, CYC, MEM, BR, L1D, L1I = 0x08, 0x11, 0x13, 0x12, 0x04, 0x14
C = 1 << 31
PER_BLOCK = {CYC: 300_000, INST: 500_000, MEM: 200_000, BR: 100_000, L1D: 190_000,
             L1I: 250_000}


def mach(reservation: str = "dynamic", reserved: int = 2) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": "cortex-a720", "count": 2}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved, reservation=reservation,
                                 revision="intent")


def guest_vcpu(m: Machine, partition: bool) -> Any:
    v = m.kvm.create_vm().create_vcpu()
    if partition:
        v.set_device_attr(CTRL, PART, 1)
    v.set_device_attr(CTRL, SET_NR, 4)
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)
    return v


def guest_program(ms: int, tot: dict[int, int]) -> Any:
    """The guest counts 4 events and the cycles while it runs a steady workload at EL0."""
    def prog(g: Any) -> None:
        for i, ev in enumerate((INST, MEM, BR, L1D)):
            g.write(f"PMEVTYPER{i}_EL0", ev)
        g.write("PMCNTENSET_EL0", 0xF | C)
        g.write("PMCR_EL0", (1 << 6) | 1)
        g.el = 0
        for _ in range(ms * 10):
            g.count(PER_BLOCK)
            for k, v in PER_BLOCK.items():
                tot[k] = tot.get(k, 0) + v
        g.el = 1
    return prog


def host_events(m: Machine, cfgs: tuple[int, ...], **kw: Any) -> list[Any]:
    typ = m.host.pmus[0].type
    # EL0 only (exclude_kernel): host and guest EL0 work, none of the EL2 costs, so the
    # truth is the workload itself.
    return [m.host.perf_event_open(PerfEventAttr(typ, c, exclude_kernel=True, **kw), cpu=0)
            for c in cfgs]


def check_scaled(m: Machine, evs: list[Any], cfgs: tuple[int, ...], tot: dict[int, int],
                 tol: float) -> None:
    for c, e in zip(cfgs, evs, strict=True):
        cnt, en, run = m.host.perf_event_read(e)
        assert run > 0, hex(c)
        scaled = e.scaled()
        assert scaled is not None
        assert abs(scaled - tot[c]) <= tol * tot[c], (hex(c), cnt, en, run, scaled, tot[c])


CASES = [("emulated", "dynamic"), ("partitioned", "dynamic"), ("partitioned", "static")]


@pytest.mark.parametrize(("backend", "reservation"), CASES)
def test_host_events_keep_scaled_counts_while_a_guest_runs(backend: str,
                                                           reservation: str) -> None:
    m = mach(reservation)
    cfgs = (INST, MEM, BR, L1I)
    evs = host_events(m, cfgs)
    v = guest_vcpu(m, backend == "partitioned")
    tot: dict[int, int] = {}
    for _ in range(3):
        v.run(guest_program(20, tot), cpu=0)
        for _ in range(200):  # 20 ms of host work between the guest's runs
            m.host.retire(0, 0, PER_BLOCK)
            for k, x in PER_BLOCK.items():
                tot[k] += x
    # the guest leaves 2 counters (reserved_host_counters) and the host wants 4: multiplexed
    assert any(e.time_running < e.time_enabled for e in evs)
    check_scaled(m, evs, cfgs, tot, tol=0.05)


@pytest.mark.parametrize(("backend", "reservation"), CASES)
def test_host_events_that_fit_count_exactly(backend: str, reservation: str) -> None:
    m = mach(reservation)
    cfgs = (INST, MEM)  # two events: they fit in the host's 2 reserved counters
    evs = host_events(m, cfgs)
    v = guest_vcpu(m, backend == "partitioned")
    tot: dict[int, int] = {}
    v.run(guest_program(10, tot), cpu=0)
    for c, e in zip(cfgs, evs, strict=True):
        cnt, _, _ = m.host.perf_event_read(e)
        assert cnt == tot[c], (hex(c), cnt, tot[c])


def test_dynamic_reservation_squeezes_host_events_only_while_loaded() -> None:
    m = mach("dynamic")
    evs = host_events(m, (INST, MEM, BR, L1D, L1I, CYC))
    assert all(e.state is EventState.ACTIVE for e in evs)  # 6 counters + PMCCNTR, no guest
    v = guest_vcpu(m, True)
    during: list[int] = []

    def prog(g: Any) -> None:
        g.write("PMCNTENSET_EL0", 1)  # first PMU write: the guest takes its counters
        during.append(sum(e.state is EventState.ACTIVE for e in evs))
        busy = {e.hw_idx for e in evs if e.state is EventState.ACTIVE}
        assert busy <= {4, 5}, busy  # never a guest counter (0..3, 31)

    v.run(prog, cpu=0)
    assert during == [2]
    assert m.host.stats.squeezed_out >= 1 and m.stats.host_events_squeezed_out >= 1
    # flexible events squeezed out: no warning
    assert m.host.stats.pinned_squeezed_out == 0 and not m.host.stats.warnings
    # put gives the counters back
    assert all(e.state is EventState.ACTIVE for e in evs)


def test_static_reservation_keeps_the_host_out_of_the_guest_range_from_boot() -> None:
    m = mach("static")
    evs = host_events(m, (INST, MEM, BR, CYC))
    # PMCCNTR and counters 0..3 were taken at boot: 2 counters for 4 events
    assert {e.hw_idx for e in evs if e.state is EventState.ACTIVE} <= {4, 5}
    assert sum(e.state is EventState.ACTIVE for e in evs) == 2
    v = guest_vcpu(m, True)
    v.run(lambda g: g.write("PMCNTENSET_EL0", 1), cpu=0)
    assert m.host.stats.squeezed_out == 0


def test_pinned_host_event_squeezed_out_warns_and_counts() -> None:
    m = mach("dynamic")
    evs = host_events(m, (INST, MEM, BR, L1D, L1I), pinned=True)
    pinned_on_guest_range = [e for e in evs if e.hw_idx is not None and e.hw_idx < 4]
    assert pinned_on_guest_range
    v = guest_vcpu(m, True)
    tot: dict[int, int] = {}
    v.run(guest_program(5, tot), cpu=0)
    st = m.host.stats
    assert st.pinned_squeezed_out >= 1 and m.stats.pinned_host_events_squeezed_out >= 1
    assert any("squeezed out" in w.lower() for w in st.warnings)
    # after the put the pinned events are back on counters
    assert all(e.state is EventState.ACTIVE for e in evs)


def test_pinned_squeeze_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    m = mach("dynamic")
    host_events(m, (INST, MEM, BR, L1D, L1I), pinned=True)
    v = guest_vcpu(m, True)
    with caplog.at_level("WARNING", logger="pmupart.host"):
        v.run(lambda g: g.write("PMCNTENSET_EL0", 1), cpu=0)
    assert any("squeezed out" in r.getMessage().lower() for r in caplog.records)


@pytest.mark.parametrize("swap", ["lazy", "eager"])
def test_lazy_swap_leaves_host_counters_to_a_guest_that_never_uses_the_pmu(swap: str) -> None:
    from pmupart.kvm.options import KvmOptions, Swap
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": "cortex-a720", "count": 2}]})
    m = Machine.from_topology(topo, reserved_host_counters=2,
                              kvm_options=KvmOptions(swap=Swap(swap)))
    evs = host_events(m, (INST, MEM, BR, L1D, L1I, CYC))
    v = guest_vcpu(m, True)
    during: list[int] = []
    v.run(lambda g: (g.count(PER_BLOCK),
                     during.append(sum(e.state is EventState.ACTIVE for e in evs))), cpu=0)
    # v7 14/20: the vCPU starts FREE, with no swap, until its first trapped PMU write
    assert during == ([6] if swap == "lazy" else [2])
    assert (m.host.stats.squeezed_out == 0) == (swap == "lazy")
    assert (v.stats.regs_swapped > 20) == (swap == "eager")


@pytest.mark.parametrize("backend", ["emulated", "partitioned"])
def test_host_cycle_counter_sees_kvm_el2_costs(backend: str) -> None:
    # A host event counting at every EL (the VHE host kernel is EL2) sees KVM's trap handling
    # and the vPMU's perf work; with partitioning its counter is in the second range, which
    # HPMD does not stop at EL2 (spec pmuv3 §5, kvm §2.5).
    m = mach()
    typ = m.host.pmus[0].type
    cyc = m.host.perf_event_open(PerfEventAttr(typ, CYC), cpu=0)
    v = guest_vcpu(m, backend == "partitioned")
    tot: dict[int, int] = {}
    v.run(guest_program(2, tot), cpu=0)
    cnt, en, run = m.host.perf_event_read(cyc)
    el2 = m.host.cpus[0].el2_cycles
    assert v.stats.el2_cycles > 0 and el2 >= v.stats.el2_cycles
    # it was off its counter only for a few us of rescheduling (3 GHz: 3 cycles per ns)
    assert en - run < 10_000
    assert cnt >= tot[CYC] + v.stats.el2_cycles - 3 * (en - run)
    assert cnt <= tot[CYC] + el2
