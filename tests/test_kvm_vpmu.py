"""One guest program, three PMUs: a bare PE, the emulated vPMU, the partitioned vPMU.

The architecture fixes what a guest driving PMUv3 at EL1 observes (spec pmuv3-semantics
§3-§8); KVM must present the same (DESIGN.md decision 4, spec kvm-partitioning §4.3 and §2).
The reference is a bare PE with N = the guest's counter count, HPMN = N, PMUv3p5 (KVM caps the
guest's PMU version at p5: ``kvm_arm_pmu_get_pmuver_limit``) and FEAT_FGT (so that an access
to an unimplemented counter is UNDEFINED, as KVM makes it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pmupart import Machine
from pmupart.arch import PE, Outcome
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

IRQ, INIT, FILTER, SET_NR, PART = 0, 1, 2, 4, 5
INST, CYC, MEM, CHAIN, SWINC, BR = 0x08, 0x11, 0x13, 0x1E, 0x00, 0x12
C = 1 << 31
E, P, LC = 1, 2, 1 << 6
EXCL_EL1, EXCL_EL0 = 1 << 31, 1 << 30
M32 = (1 << 32) - 1
N = 4  # guest counters: the partitioned host keeps 2 of the A720's 6


class BareCpu:
    """A bare PE at EL1 behind the guest API; an interrupt is taken where the counter that
    raised it overflows (the block is cut there, as the architecture does per instruction)."""

    def __init__(self, n: int) -> None:
        self.pe = PE(num_counters=n, pmuver="V3P5", fgt=True)  # no AArch32, as the A720
        self.pe.el = 1
        self._handler: Callable[[Any], object] | None = None
        self._in = False

    @property
    def el(self) -> int:
        return self.pe.el

    @el.setter
    def el(self, v: int) -> None:
        self.pe.el = v

    def read(self, name: str) -> Any:
        return self.pe.read(name)

    def write(self, name: str, value: int) -> Any:
        a = self.pe.write(name, value)
        self._irq()
        return a

    def on_pmu_irq(self, h: Callable[[Any], object]) -> None:
        self._handler = h

    def _irq(self) -> None:
        if self._handler is None or self._in:
            return
        for _ in range(8):
            if not self.pe.pmuirq:
                return
            old = self.pe.el
            self.pe.el = 1
            self._in = True
            try:
                self._handler(self)
            finally:
                self._in = False
                self.pe.el = old

    def count(self, events: Mapping[str | int, int]) -> None:
        ev = {k: v for k, v in events.items() if v}
        if len(ev) != 1:  # the reference cuts single-event blocks only
            assert not self.pe.snapshot().pminten, "mixed block with interrupts enabled"
            self.pe.count(ev)
            self._irq()
            return
        (k, n), = ev.items()
        code = {"INST_RETIRED": INST, "CPU_CYCLES": CYC, "MEM_ACCESS": MEM}.get(str(k), k)
        while n:
            s = self.pe.snapshot()
            cut = n
            for i in range(self.pe.num_counters):
                if (s.pminten & s.pmcnten >> i) & 1 and (s.evtyper[i] & 0xFFFF) == code:
                    k2 = self.pe.events_to_overflow(i)
                    if k2 is not None:
                        cut = min(cut, k2)
            if code == CYC and s.pminten & s.pmcnten & C:
                k2 = self.pe.events_to_overflow(31)
                if k2 is not None:
                    cut = min(cut, k2)
            self.pe.count({k: cut})
            n -= cut
            self._irq()


def fgt_machine(reserved: int = 2) -> Machine:
    """Two Cortex-A720s; the emulated vPMU's SW_INCR filtered by EL as the architecture does
    (KvmOptions.emulated_swinc_el_filter), so all three backends must agree."""
    from pmupart.kvm import KvmOptions

    topo = Topology.from_mapping({"name": "fgt", "cluster": [{"core": "cortex-a720", "count": 2}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved,
                                 kvm_options=KvmOptions(emulated_swinc_el_filter=True))


def run_on(kind: str, program: Callable[[Any], object], n: int = N,
           m: Machine | None = None, filt: list[uapi.KvmPmuEventFilter] | None = None) -> Any:
    if kind == "bare":
        cpu = BareCpu(n)
        program(cpu)
        return None
    m = m or fgt_machine()
    v = m.kvm.create_vm().create_vcpu()
    for f in filt or []:
        v.set_device_attr(CTRL, FILTER, f)
    if kind == "partitioned":
        v.set_device_attr(CTRL, PART, 1)
    v.set_device_attr(CTRL, SET_NR, n)
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)
    ex = v.run(program, cpu=0)
    assert ex.reason == uapi.KVM_EXIT_SYSTEM_EVENT
    return v


KINDS = ("bare", "emulated", "partitioned")


def observe(program: Callable[[Any, dict[str, Any]], None], **kw: Any) -> dict[str, Any]:
    outs: dict[str, Any] = {}
    for kind in KINDS:
        out: dict[str, Any] = {}
        run_on(kind, lambda cpu, out=out: program(cpu, out), **kw)
        outs[kind] = out
    return outs


def same(outs: dict[str, Any]) -> dict[str, Any]:
    ref = outs["bare"]
    for k in KINDS[1:]:
        assert outs[k] == ref, f"{k} differs from the bare PE:\n{outs[k]}\n!=\n{ref}"
    return ref


def val(cpu: Any, name: str) -> int | str:
    a = cpu.read(name)
    return a.value if a.outcome is Outcome.OK else a.outcome.name


# ---------------------------------------------------------------------- programs
def counting_loop(cpu: Any, out: dict[str, Any]) -> None:
    cpu.write("PMEVTYPER0_EL0", INST)
    cpu.write("PMEVTYPER1_EL0", MEM | EXCL_EL0)  # kernel only
    cpu.write("PMEVTYPER2_EL0", BR | EXCL_EL1)  # user only
    cpu.write("PMEVTYPER3_EL0", CYC)
    for i in range(4):
        cpu.write(f"PMEVCNTR{i}_EL0", 0)
    cpu.write("PMCR_EL0", LC | P | 4)  # reset counters (P) and the cycle counter (C)
    cpu.write("PMCNTENSET_EL0", 0xF | C)
    cpu.write("PMCR_EL0", LC | E)
    for _ in range(5):
        cpu.count({"INST_RETIRED": 1000})
        cpu.count({"MEM_ACCESS": 300})
        cpu.el = 0
        cpu.count({"MEM_ACCESS": 70})
        cpu.count({BR: 11})
        cpu.el = 1
        cpu.count({BR: 5})
        cpu.count({"CPU_CYCLES": 4000})
    cpu.write("PMCR_EL0", LC)  # stop
    cpu.count({"INST_RETIRED": 999, "CPU_CYCLES": 999})
    for i in range(4):
        out[f"c{i}"] = val(cpu, f"PMEVCNTR{i}_EL0")
    out["ccnt"] = val(cpu, "PMCCNTR_EL0")
    out["ovs"] = val(cpu, "PMOVSSET_EL0")
    out["cnten"] = val(cpu, "PMCNTENSET_EL0")
    out["pmcr_n"] = (cpu.read("PMCR_EL0").value >> 11) & 0x1F
    out["pmcr_e"] = cpu.read("PMCR_EL0").value & 1


def test_counting_loop_exact() -> None:
    ref = same(observe(counting_loop))
    assert ref["c0"] == 5000 and ref["c1"] == 1500 and ref["c2"] == 55
    assert ref["c3"] == ref["ccnt"] == 20000
    assert ref["pmcr_n"] == N and ref["ovs"] == 0 and ref["cnten"] == 0xF | C


def sw_incr(cpu: Any, out: dict[str, Any]) -> None:
    cpu.write("PMEVTYPER0_EL0", SWINC)
    cpu.write("PMEVTYPER1_EL0", SWINC)
    cpu.write("PMEVTYPER2_EL0", INST)
    cpu.write("PMEVCNTR0_EL0", 0)
    cpu.write("PMEVCNTR1_EL0", M32)  # wraps on the first increment
    cpu.write("PMEVCNTR2_EL0", 0)
    cpu.write("PMOVSCLR_EL0", 0xFFFFFFFF)
    cpu.write("PMCNTENSET_EL0", 0b011)
    cpu.write("PMSWINC_EL0", 0b0111)  # bit 2 is not a SW_INCR counter; bit 2 disabled too
    cpu.write("PMCR_EL0", LC | E)
    for _ in range(3):
        cpu.write("PMSWINC_EL0", 0b0111 | (1 << 30))  # a bit beyond N is ignored
    cpu.write("PMCNTENCLR_EL0", 0b10)
    cpu.write("PMSWINC_EL0", 0b11)
    out["c0"], out["c1"], out["c2"] = (val(cpu, f"PMEVCNTR{i}_EL0") for i in range(3))
    out["ovs"] = val(cpu, "PMOVSSET_EL0")


def test_sw_incr() -> None:
    ref = same(observe(sw_incr))
    # PMCR.E was 0 for the first write: no count.  Counter 1 wraps 32 bits (LP = 0) at its
    # first increment; with PMUv3p5 the upper half still increments (spec §6).
    assert ref["c0"] == 4 and ref["c1"] == (1 << 32) + 2 and ref["c2"] == 0
    assert ref["ovs"] == 0b10


def chain(cpu: Any, out: dict[str, Any]) -> None:
    cpu.write("PMEVTYPER0_EL0", INST)
    cpu.write("PMEVTYPER1_EL0", CHAIN)
    cpu.write("PMEVTYPER2_EL0", INST)
    cpu.write("PMEVTYPER3_EL0", CHAIN)
    cpu.write("PMEVCNTR0_EL0", M32 - 99)
    cpu.write("PMEVCNTR1_EL0", 7)
    cpu.write("PMEVCNTR2_EL0", M32 - 99)
    cpu.write("PMEVCNTR3_EL0", 7)
    cpu.write("PMOVSCLR_EL0", 0xFFFFFFFF)
    cpu.write("PMCNTENSET_EL0", 0b0111)  # counter 3 (CHAIN) disabled: no chaining there
    cpu.write("PMCR_EL0", LC | E)  # LP = 0: 32-bit overflow, even counters chain
    cpu.count({"INST_RETIRED": 250})
    for i in range(4):
        out[f"c{i}"] = val(cpu, f"PMEVCNTR{i}_EL0")
    out["ovs"] = val(cpu, "PMOVSSET_EL0")


def test_chain_on_32bit_overflow() -> None:
    ref = same(observe(chain))
    assert ref["c0"] == ref["c2"] == (1 << 32) + 150
    assert ref["c1"] == 8 and ref["c3"] == 7
    assert ref["ovs"] == 0b101


def overflow_irq(cpu: Any, out: dict[str, Any]) -> None:
    start = M32 - 999
    hits: list[tuple[int | str, int | str]] = []

    def handler(c: Any) -> None:
        hits.append((val(c, "PMEVCNTR0_EL0"), val(c, "PMOVSCLR_EL0")))
        c.write("PMOVSCLR_EL0", 1)
        c.write("PMEVCNTR0_EL0", start)

    cpu.on_pmu_irq(handler)
    cpu.write("PMEVTYPER0_EL0", INST)
    cpu.write("PMEVTYPER1_EL0", INST)  # same event, no interrupt: counts everything
    cpu.write("PMEVCNTR0_EL0", start)
    cpu.write("PMEVCNTR1_EL0", 0)
    cpu.write("PMOVSCLR_EL0", 0xFFFFFFFF)
    cpu.write("PMINTENSET_EL1", 1)
    cpu.write("PMCNTENSET_EL0", 0b11)
    cpu.write("PMCR_EL0", LC | E)
    cpu.count({"INST_RETIRED": 10_500})
    out["hits"] = hits
    out["c0"] = val(cpu, "PMEVCNTR0_EL0")
    out["c1"] = val(cpu, "PMEVCNTR1_EL0")
    out["ovs"] = val(cpu, "PMOVSSET_EL0")


def test_overflow_interrupt_once_per_overflow_at_the_right_count() -> None:
    ref = same(observe(overflow_irq))
    # 64-bit counters (PMUv3p5) with LP = 0: the flag rises at the 32-bit wrap, the counter
    # reads 2^32 there; 10 wraps in 10 500 instructions, 500 left after the last re-arm.
    assert ref["hits"] == [(1 << 32, 1)] * 10
    assert ref["c0"] == M32 - 999 + 500 and ref["c1"] == 10_500 and ref["ovs"] == 0


def limits(cpu: Any, out: dict[str, Any]) -> None:
    out["pmcr_n"] = (cpu.read("PMCR_EL0").value >> 11) & 0x1F
    for i in range(8):
        out[f"cnt{i}"] = cpu.read(f"PMEVCNTR{i}_EL0").outcome.name
        out[f"typ{i}"] = cpu.read(f"PMEVTYPER{i}_EL0").outcome.name
        out[f"wcnt{i}"] = cpu.write(f"PMEVCNTR{i}_EL0", 1).outcome.name
    cpu.write("PMCNTENSET_EL0", 0xFFFFFFFF)
    out["cnten"] = val(cpu, "PMCNTENSET_EL0")
    cpu.write("PMINTENSET_EL1", 0xFFFFFFFF)
    out["inten"] = val(cpu, "PMINTENSET_EL1")
    cpu.write("PMOVSSET_EL0", 0xFFFFFFFF)
    out["ovs"] = val(cpu, "PMOVSSET_EL0")
    cpu.write("PMOVSCLR_EL0", 0xFFFFFFFF)
    cpu.write("PMINTENCLR_EL1", 0xFFFFFFFF)
    for sel in (0, 2, 5, 31):
        cpu.write("PMSELR_EL0", sel)
        out[f"xcnt{sel}"] = cpu.read("PMXEVCNTR_EL0").outcome.name if sel != 31 else None
    out["ccnt"] = cpu.read("PMCCNTR_EL0").outcome.name


@pytest.mark.parametrize("n", [1, 3, 4])
def test_set_nr_counters_limits_the_guest(n: int) -> None:
    ref = same(observe(limits, n=n))
    assert ref["pmcr_n"] == n
    for i in range(8):
        want = "OK" if i < n else "UNDEFINED"
        assert ref[f"cnt{i}"] == ref[f"typ{i}"] == ref[f"wcnt{i}"] == want, i
    mask = ((1 << n) - 1) | C
    assert ref["cnten"] == ref["inten"] == ref["ovs"] == mask
    assert ref["ccnt"] == "OK"


def test_guest_pmuver_capped_at_p5() -> None:
    for kind in ("emulated", "partitioned"):
        seen: list[int] = []
        run_on(kind, lambda c, seen=seen: seen.append(c.read("ID_AA64DFR0_EL1").value))
        assert (seen[0] >> 8) & 0xF == 6, kind  # PMUVer = PMUv3p5 on a PMUv3p7 core


def test_filtered_event_counts_nothing_on_both_backends() -> None:
    f = [uapi.KvmPmuEventFilter(INST, 1, uapi.KVM_PMU_EVENT_DENY)]
    for kind in ("emulated", "partitioned"):
        out: dict[str, Any] = {}
        run_on(kind, lambda c, out=out: counting_loop(c, out), filt=f)
        assert out["c0"] == 0, kind
        assert out["c1"] == 1500 and out["ccnt"] == 20000, kind


def test_partitioned_guest_touches_common_registers_untrapped() -> None:
    v = run_on("partitioned", lambda c: counting_loop(c, {}))
    traps = set(v.stats.traps)
    # FGT keeps PMEVTYPER, PMCCFILTR, PMOVS, PMCEID, PMMIR trapped; the lazy switch traps the
    # first PMU write (spec kvm-partitioning §2.6, §2.7).
    allowed = {f"PMEVTYPER{i}_EL0" for i in range(N)} | {"PMOVSSET_EL0", "PMOVSCLR_EL0"}
    assert traps <= allowed, traps
    e = run_on("emulated", lambda c: counting_loop(c, {}))
    assert {"PMCR_EL0", "PMCNTENSET_EL0", "PMEVCNTR0_EL0", "PMCCNTR_EL0"} <= set(e.stats.traps)
    assert sum(e.stats.exits.values()) > 3 * sum(v.stats.exits.values())


def lc_res1(cpu: Any, out: dict[str, Any]) -> None:
    cpu.write("PMCR_EL0", E)  # LC clear: RES1 on a PE without AArch32 (Cortex-A720)
    out["pmcr_lc"] = (cpu.read("PMCR_EL0").value >> 6) & 1
    cpu.write("PMCCNTR_EL0", (1 << 32) - 10)
    cpu.write("PMCNTENSET_EL0", C)
    cpu.count({"CPU_CYCLES": 20})
    out["ccnt"] = val(cpu, "PMCCNTR_EL0")
    out["ovs"] = val(cpu, "PMOVSSET_EL0")


def test_pmcr_lc_res1_without_aarch32() -> None:
    ref = same(observe(lc_res1))
    assert ref == {"pmcr_lc": 1, "ccnt": (1 << 32) + 10, "ovs": 0}


def el0_gate(cpu: Any, out: dict[str, Any]) -> None:
    for userenr in (0, (1 << 3) | (1 << 2), 1):  # nothing; ER|CR; EN
        cpu.write("PMUSERENR_EL0", userenr)
        cpu.el = 0
        out[userenr] = (cpu.read("PMEVCNTR0_EL0").outcome.name,
                        cpu.read("PMCCNTR_EL0").outcome.name,
                        cpu.write("PMEVCNTR0_EL0", 5).outcome.name,
                        cpu.write("PMCR_EL0", LC).outcome.name,
                        cpu.write("PMINTENSET_EL1", 1).outcome.name)
        cpu.el = 1


def test_el0_pmuserenr_gate() -> None:
    outs = observe(el0_gate)
    assert outs["partitioned"] == outs["bare"]  # PMUSERENR untrapped: the hardware decides
    ref = outs["bare"]
    assert ref[0] == ("TRAP_EL1",) * 4 + ("UNDEFINED",)
    assert ref[(1 << 3) | (1 << 2)] == ("OK", "OK", "TRAP_EL1", "TRAP_EL1", "UNDEFINED")
    assert ref[1] == ("OK",) * 4 + ("UNDEFINED",)
    # The emulated vPMU allows and refuses the same accesses, but a refused one is an UNDEF
    # (check_pmu_access_disabled -> kvm_inject_undefined, sys_regs.c), not the EL1 trap.
    for k, row in ref.items():
        want = tuple("UNDEFINED" if o == "TRAP_EL1" else o for o in row)
        assert outs["emulated"][k] == want, k


def test_emulated_swinc_ignores_the_el_filter_as_kvm_does() -> None:
    """Upstream kvm_pmu_counter_increment checks PMCR.E, PMCNTENSET and the event type only:
    a SW_INCR counter filtered out of EL1 (P = 1) still counts a write from EL1 on the
    emulated vPMU (the default), while the architecture (and the option) does not count it."""
    from pmupart.kvm import KvmOptions

    def prog(cpu: Any) -> None:
        cpu.write("PMEVTYPER0_EL0", (1 << 31) | 0x00)  # SW_INCR, not at EL1
        cpu.write("PMCNTENSET_EL0", 1)
        cpu.write("PMCR_EL0", 1)
        cpu.write("PMSWINC_EL0", 1)
        got.append(cpu.read("PMEVCNTR0_EL0").value)

    for arch, want in ((False, 1), (True, 0)):
        got: list[int] = []
        topo = Topology.from_mapping({"name": "t", "cluster": [{"core": "cortex-a720",
                                                                 "count": 1}]})
        m = Machine.from_topology(topo, kvm_options=KvmOptions(emulated_swinc_el_filter=arch))
        v = m.kvm.create_vm().create_vcpu()
        v.set_device_attr(CTRL, 0, 23)
        v.set_device_attr(CTRL, 1, None)
        v.run(prog, cpu=0)
        assert got == [want]
