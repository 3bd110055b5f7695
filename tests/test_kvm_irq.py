"""The PMU interrupt shared by host and guest (spec pmuv3 §7; kvm-partitioning §2.9, §4.3):
one PPI per PE, demultiplexed by the host driver (host bits to perf, guest bits to the vCPU's
virtual PMOVSSET, injected at the next entry); PMOVS cleared at load (virtual copy
authoritative), guest counters disabled at put; the non-FGT fallback keeps counting."""

from __future__ import annotations

from typing import Any

from pmupart import Machine
from pmupart.host import PerfEventAttr
from pmupart.host.topology import Topology
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

INIT, SET_NR, PART = 1, 4, 5
INST, CYC, MEM = 0x08, 0x11, 0x13
C = 1 << 31
M32 = (1 << 32) - 1
E, LC = 1, 1 << 6


def mach(core: str = "cortex-a720", reserved: int = 2) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": core, "count": 2}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved, revision="intent")


def vcpu(m: Machine, partition: bool, nr: int = 4) -> Any:
    from conftest import make_vcpu

    return make_vcpu(m, partition=partition, nr=nr)


def sampling_guest(hits: list[int], period: int = 1000) -> Any:
    def handler(g: Any) -> None:
        hits.append(g.read("PMEVCNTR0_EL0").value)
        g.write("PMOVSCLR_EL0", 1)
        g.write("PMEVCNTR0_EL0", M32 + 1 - period)

    def prog(g: Any) -> None:
        g.on_pmu_irq(handler)
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", M32 + 1 - period)
        g.write("PMINTENSET_EL1", 1)
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", LC | E)
        g.count({"INST_RETIRED": 10 * period + period // 2, "MEM_ACCESS": 33_000})
    return prog


def test_host_and_guest_overflows_are_demultiplexed() -> None:
    m = mach()
    typ = m.host.pmus[0].type
    samples: list[int] = []
    host = m.host.perf_event_open(
        PerfEventAttr(typ, MEM, sample_period=3000), cpu=0,
        overflow_handler=lambda ev: samples.append(ev.count))
    assert host.hw_idx is not None and host.hw_idx >= 4  # stays in the host's range
    hits: list[int] = []
    v = vcpu(m, partition=True)
    v.run(sampling_guest(hits), cpu=0)
    assert hits == [1 << 32] * 10  # every guest overflow once, at the wrap
    assert v.stats.irqs_injected == 10
    assert len(samples) == 11  # 33 000 MEM_ACCESS / 3000, all on the host side
    assert m.host.perf_event_read(host)[0] == 33_000


def test_guest_overflow_flag_survives_put_and_load() -> None:
    # An overflow with its interrupt disabled stays pending in the guest's PMOVSSET across a
    # put/load (virtual copy authoritative, hardware flags cleared at load).
    m = mach()
    v = vcpu(m, partition=True)
    seen: list[int] = []

    def first(g: Any) -> None:
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", M32 - 9)
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", LC | E)
        g.count({"INST_RETIRED": 20})
        seen.append(g.read("PMOVSSET_EL0").value)

    v.run(first, cpu=0)
    hw = m.host.cpus[0].pe.snapshot()
    assert hw.pmovs & 0xF == 0 and hw.pmcnten & (0xF | C) == 0  # disabled and clean at put
    v.run(lambda g: seen.append(g.read("PMOVSSET_EL0").value), cpu=1)
    assert seen == [1, 1]


def test_partitioned_without_fgt_keeps_counting_behind_traps() -> None:
    # Cortex-A76: no FEAT_FGT.  TPM stays set (HPMN = N) and the guest's counters live in
    # hardware behind the traps (spec kvm-partitioning §2.6 non-FGT path, §6).
    out: dict[str, list[int]] = {}
    for kind in ("emulated", "partitioned"):
        m = mach("cortex-a76")
        v = vcpu(m, partition=kind == "partitioned")
        vals: list[int] = []

        def prog(g: Any, vals: list[int] = vals, m: Machine = m) -> None:
            g.write("PMEVTYPER0_EL0", INST)
            g.write("PMEVTYPER1_EL0", MEM)
            g.write("PMCNTENSET_EL0", 0b11 | C)
            g.write("PMCR_EL0", LC | E | 2 | 4)
            g.count({"INST_RETIRED": 4000, "MEM_ACCESS": 900, "CPU_CYCLES": 5000})
            vals.extend(g.read(r).value for r in ("PMEVCNTR0_EL0", "PMEVCNTR1_EL0",
                                                  "PMCCNTR_EL0"))
            vals.append(m.host.cpus[0].pe.snapshot().mdcr_el2 & ((1 << 6) | 0x1F))

        v.run(prog, cpu=0)
        out[kind] = vals
    assert out["emulated"][:3] == out["partitioned"][:3] == [4000, 900, 5000]
    assert out["partitioned"][3] == (1 << 6) | 6  # TPM, HPMN = N


def test_userspace_irqchip_overflow_exits_to_the_vmm() -> None:
    # Without an in-kernel irqchip the level goes to userspace (KVM_ARM_DEV_PMU in
    # device_irq_level) and the VMM injects it: one exit per interrupt (spec kvm §4.3).
    for partition in (False, True):
        m = mach()
        v = m.kvm.create_vm(irqchip=False).create_vcpu()
        if partition:
            v.set_device_attr(CTRL, PART, 1)
        v.set_device_attr(CTRL, SET_NR, 4)
        v.set_device_attr(CTRL, INIT, None)
        hits: list[int] = []
        v.run(sampling_guest(hits), cpu=0)
        assert hits == [1 << 32] * 10, partition
        assert v.stats.exits["userspace_irqchip"] == 10, partition


def test_direct_write_delivers_an_overflow_taken_while_irqs_were_masked() -> None:
    """A guest overflow that arrives while the guest has IRQs masked is pending in the virtual
    PMOVSSET (kvm_pmu_handle_guest_irq); a later direct (untrapped) write re-evaluates the
    level (kvm_pmu_update_state) and, IRQs unmasked again, the guest's handler runs then, not
    at the next overflow (kvm-partitioning §2.9)."""
    m = mach()
    seen: list[str] = []

    def handler(g: Any) -> None:
        seen.append("irq")
        g.write("PMOVSCLR_EL0", 1)

    def prog(g: Any) -> None:
        g.on_pmu_irq(handler)
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", M32 + 1 - 100)
        g.write("PMINTENSET_EL1", 1)
        g.write("PMCNTENSET_EL0", 1)
        g.irqs_masked = True
        g.write("PMCR_EL0", LC | E)
        g.count({"INST_RETIRED": 150})  # overflows; the interrupt waits for the unmask
        assert seen == [] and g.vcpu.pmu.ovs & 1  # pending in the virtual PMOVSSET
        g.irqs_masked = False
        seen.append("unmasked")
        g.write("PMCNTENSET_EL0", 1)  # direct on the partitioned vPMU: the level is due
        seen.append("written")

    v = vcpu(m, partition=True)
    v.run(prog, cpu=0)
    assert seen == ["unmasked", "irq", "written"]
