"""The series v8 as posted, choice by choice (pmupart.kvm.revision), each against the
intent on the same machine and guest code; and the UAPI rows (kernel-code-deltas §3.11,
§3.12, §4.10-§4.12, §5.11)."""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

import pytest

from pmupart import Machine
from pmupart.host.topology import Topology
from pmupart.kvm import KvmError, uapi
from pmupart.kvm.pmu_direct import PartitionedPmu, PmuAccess
from pmupart.kvm.revision import REVISIONS, CounterMask, Revision
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

IRQ, INIT, PART = 0, 1, 5
TPM = 1 << 6
INST, SW_INCR = 0x08, 0x00


def machine(rev: str | Revision, core: str = "cortex-a720", n: int = 2,
            reserved: int = 2) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": core, "count": n}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved, revision=rev)


def vcpu(m: Machine, nr: int | None = None, filt: Any = None) -> Any:
    from conftest import make_vcpu

    return make_vcpu(m, partition=True, nr=nr, filters=() if filt is None else (filt,))


def pmu(v: Any) -> PartitionedPmu:
    assert isinstance(v.pmu, PartitionedPmu)
    return v.pmu


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_a_trapped_read_flips_ownership_only_in_v8_and_v8_loads_nothing(rev: str) -> None:
    """§4.1/§4.2: v8 15/21 flips on pmu_reg_read too, and kvm_pmu_set_guest_owned only
    rewrites MDCR_EL2 (VHE: at once); the intent flips on the first write and loads."""
    m = machine(rev)
    v = vcpu(m)
    events: list[str] = []
    m.host.listeners.append(lambda kind, data: events.append(kind))
    seen: dict[str, Any] = {}

    def prog(g: Any) -> None:
        g.read("PMCR_EL0")
        seen["access"] = pmu(v).access
        seen["mdcr"] = m.host.cpus[0].pe.snapshot().mdcr_el2
        g.write("PMEVCNTR0_EL0", 5)

    v.run(prog, cpu=0)
    if rev == "v8":
        assert seen["access"] is PmuAccess.GUEST_OWNED and not seen["mdcr"] & TPM
        first = events.index("guest_owned")
        assert "guest_counters_loaded" not in events[:first + 1]
    else:
        assert seen["access"] is PmuAccess.FREE and seen["mdcr"] & TPM
        assert "guest_counters_loaded" in events and "guest_owned" not in events


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_evtyper_write_reaches_hardware_only_at_the_next_load_in_v8(rev: str) -> None:
    """§4.5: v8 09/21 pmu_reg_write stores PMEVTYPER in the virtual register only."""
    m = machine(rev)
    v = vcpu(m)
    got: list[int] = []

    def prog(g: Any) -> None:
        g.write("PMCNTENSET_EL0", 1)  # owner first (both revisions)
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", 0)
        g.write("PMCR_EL0", 1)
        g.count({"INST_RETIRED": 1000})
        got.append(int(g.read("PMEVCNTR0_EL0").value or 0))

    v.run(prog, cpu=0)
    v.run(lambda g: (g.count({"INST_RETIRED": 500}),
                     got.append(int(g.read("PMEVCNTR0_EL0").value or 0))), cpu=0)
    assert got == ([0, 500] if rev == "v8" else [1000, 1500])


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_pmovs_read_is_virtual_only_in_v8(rev: str) -> None:
    """§4.6: an overflow of a counter without interrupt enable stays in hardware until the
    put under v8 (pmu_reg_read returns the virtual PMOVSSET); the intent folds it in at the
    trapped read."""
    m = machine(rev)
    v = vcpu(m)

    def setup(g: Any) -> None:
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", 0xFFFF_FFFF_FFFF_FFF0)
        g.write("PMCR_EL0", 1 | (1 << 7))  # E, LP: 64-bit overflow

    got: list[int] = []

    def overflow_then_read(g: Any) -> None:
        g.count({"INST_RETIRED": 100})
        got.append(int(g.read("PMOVSSET_EL0").value or 0) & 1)

    v.run(setup, cpu=0)
    v.run(overflow_then_read, cpu=0)  # v8: the type is in hardware from this load on
    v.run(lambda g: got.append(int(g.read("PMOVSSET_EL0").value or 0) & 1), cpu=0)
    assert got == ([0, 1] if rev == "v8" else [1, 1])  # v8: seen only after the put


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_pmuserenr_at_put_and_load(rev: str) -> None:
    """§4.4: v8 does not swap PMUSERENR: switch.h writes EN|SW|CR|ER at every load."""
    m = machine(rev)
    v = vcpu(m)
    v.run(lambda g: g.write("PMUSERENR_EL0", 0), cpu=0)
    hw: list[int] = []
    v.run(lambda g: hw.append(m.host.cpus[0].pe.read_el2("PMUSERENR_EL0")), cpu=0)
    assert hw == ([0xF] if rev == "v8" else [0])
    assert m.host.cpus[0].pe.read_el2("PMUSERENR_EL0") == 0  # the host's, after the put


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_host_pmcr_after_put(rev: str) -> None:
    """§4.7: v8 11/21 kvm_pmu_put never restores the host's PMCR_EL0."""
    m = machine(rev)
    pe = m.host.cpus[0].pe
    pe.write_el2("PMCR_EL0", 1)  # the host's PMU running
    v = vcpu(m)
    v.run(lambda g: g.write("PMCR_EL0", 0), cpu=0)
    assert pe.read_el2("PMCR_EL0") & 1 == (0 if rev == "v8" else 1)


def test_v8_filter_does_not_exempt_sw_incr_the_intent_does() -> None:
    """§4.9: v8 12/21 kvm_pmu_apply_event_filter tests the bitmap without exemption; vcpu.rst
    says SW_INCR is never filtered."""
    only_inst = uapi.KvmPmuEventFilter(INST, 1, uapi.KVM_PMU_EVENT_ALLOW)
    for rev, excluded in (("v8", True), ("intent", False)):
        p = pmu(vcpu(machine(rev), filt=only_inst))
        t = p.filtered_typer(SW_INCR, SW_INCR)
        assert bool(t & (1 << 31)) == excluded and bool(t & (1 << 30)) == excluded, rev
        assert p.filtered_typer(INST, INST) == INST


def test_counter_mask_is_max_guest_in_v8() -> None:
    """§4.3: kvm_pmu_guest_counter_mask = GENMASK(max_guest_counters - 1, 0) | C."""
    assert pmu(vcpu(machine("v8"), nr=2)).own_mask == 0b1111 | (1 << 31)
    assert pmu(vcpu(machine("intent"), nr=2)).own_mask == 0b11 | (1 << 31)
    var = dataclasses.replace(REVISIONS["v8"], counter_mask=CounterMask.VM_NR)
    assert pmu(vcpu(machine(var), nr=2)).own_mask == 0b11 | (1 << 31)


def test_fgt_bits_for_every_vcpu_in_v8() -> None:
    """§4.17: v8 08/21 ORs the PMU FGT bits for every vCPU (a FREE one included)."""
    m = machine("v8")
    v = vcpu(m)
    seen: list[int] = []
    v.run(lambda g: seen.append(m.host.cpus[0].pe.read_el2("HDFGRTR_EL2")), cpu=0)
    m2 = machine("intent")
    v2 = vcpu(m2)
    v2.run(lambda g: seen.append(m2.host.cpus[0].pe.read_el2("HDFGRTR_EL2")), cpu=0)
    assert seen[0] != 0 and seen[1] == 0  # FREE vCPU: v8 sets the PMU bits, intent none


def test_v8_hpmn_rule_on_a_cpu_with_fewer_counters_than_the_vm_pmus_guest_range() -> None:
    """§5.12 / 08/21: pmu_is_partitioned compares the VM PMU's max_guest_counters with *this*
    CPU's counters: where they do not fit, v8 keeps the traps (HPMN never exceeds N)."""
    topo = Topology.from_mapping({"name": "h", "cluster": [
        {"core": "cortex-a720", "count": 1, "num_counters": 10},
        {"core": "cortex-a520", "count": 1}]})
    m = Machine.from_topology(topo, reserved_host_counters=2, revision="v8")
    v = vcpu(m)  # default PMU: CPU 0's, max_guest_counters = 8
    mdcrs: list[int] = []
    for cpu in (0, 1):
        v.run(lambda g: (g.write("PMCNTENSET_EL0", 1),
                         mdcrs.append(m.host.cpus[g.cpu].pe.snapshot().mdcr_el2)), cpu=cpu)
    assert not mdcrs[0] & TPM and (mdcrs[0] & 0x1F) == 8
    assert mdcrs[1] & TPM and (mdcrs[1] & 0x1F) == 6  # traps kept; HPMN = this CPU's N


def test_filter_first_load_only_variant() -> None:
    """§5.12: the filter applied at a vCPU's first load only; later loads write raw types."""
    deny_inst = uapi.KvmPmuEventFilter(INST, 1, uapi.KVM_PMU_EVENT_DENY)
    for first_only, excluded_later in ((False, True), (True, False)):
        var = dataclasses.replace(REVISIONS["intent"], filter_first_load_only=first_only)
        m = machine(var)
        v = vcpu(m, filt=deny_inst)
        v.run(lambda g: g.write("PMEVTYPER0_EL0", INST), cpu=0)
        types: list[int] = []
        pe = m.host.cpus[0].pe
        v.run(lambda g, pe=pe, types=types: types.append(pe.read_el2("PMEVTYPER0_EL0")),
              cpu=0)
        assert bool(types[0] & (1 << 31)) == excluded_later, first_only


def test_pmovs_not_cleared_at_put_partner_shows_the_stale_flag() -> None:
    """§5.9: with PMOVS cleared neither at put nor at load, a flag of the last guest is in
    hardware when the next one loads (the checker's no-leak "stale" rule)."""
    from pmupart.check import Checker

    var = dataclasses.replace(REVISIONS["intent"], clear_pmovs_on_load=False,
                              clear_pmovs_on_put=False, save_pmovs_on_put=False)
    for v_, stale in ((REVISIONS["intent"], False), (var, True)):
        m = machine(v_, n=1)
        ck = Checker()
        ck.attach(m)
        a, b = vcpu(m), vcpu(m)

        def overflow(g: Any) -> None:
            g.write("PMCNTENSET_EL0", 1)
            g.write("PMEVTYPER0_EL0", INST)
            g.write("PMEVCNTR0_EL0", 0xFFFF_FFF0)
            g.write("PMCR_EL0", 1)
            g.count({"INST_RETIRED": 100})

        a.run(overflow, cpu=0)
        b.run(lambda g: g.write("PMCNTENSET_EL0", 0), cpu=0)
        rules = {x.rule for x in ck.violations}
        assert ("no-leak" in rules) == stale, rules


# ---------------------------------------------------------------------- UAPI
def test_has_attr_and_support_check_v8_vs_intent() -> None:
    """§4.11/§4.12: v8 has_attr answers 0 for ENABLE_PARTITION whenever the vCPU has a PMU and
    checks support only at set (-EPERM), globally: any partitioned host PMU will do."""
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": "cortex-a720", "count": 1}]})
    for rev in ("v8", "intent"):
        m = Machine.from_topology(topo, revision=rev)  # not partitioned
        v = m.kvm.create_vm().create_vcpu()
        if rev == "v8":
            v.has_device_attr(CTRL, PART)
        else:
            with pytest.raises(KvmError) as ei:
                v.has_device_attr(CTRL, PART)
            assert ei.value.errno == errno.ENXIO
        with pytest.raises(KvmError) as ei:
            v.set_device_attr(CTRL, PART, 1)
        assert ei.value.errno == errno.EPERM


def test_init_without_host_pmu_is_einval_and_the_default_pmu_is_the_init_cpus() -> None:
    """§3.11: kvm_vcpu_init_check_features refuses PMUv3 without a host PMU (-EINVAL), before
    any attribute call; §5.11: kvm_arm_set_default_pmu takes the PMU of the CPU doing INIT."""
    topo = Topology.from_mapping({"name": "h", "cluster": [
        {"core": "cortex-a720", "count": 1}, {"core": "cortex-a520", "count": 1}]})
    m = Machine.from_topology(topo, revision="v8")
    a520 = next(p for p in m.host.pmus if 1 in p.cpus)
    vm = m.kvm.create_vm()
    vm.create_vcpu(init_cpu=1)
    assert vm.arm_pmu is a520 and vm.supported_cpus == frozenset({0, 1})
    with pytest.raises(ValueError, match="init_cpu"):
        m.kvm.create_vm().create_vcpu(init_cpu=5)
    m.host.pmus.clear()
    with pytest.raises(KvmError) as ei:
        m.kvm.create_vm().create_vcpu(pmu=True)
    assert ei.value.errno == errno.EINVAL and ei.value.ioctl == "KVM_ARM_VCPU_INIT"
    m.kvm.create_vm().create_vcpu(pmu=False)  # a vCPU without the PMU is fine


def test_init_with_an_spi_beyond_the_vgic_is_einval() -> None:
    """§3.12: kvm_vgic_set_owner refuses an SPI the vGIC does not have (-EINVAL)."""
    m = machine("v8")
    v = m.kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, IRQ, 32 + 256)
    with pytest.raises(KvmError) as ei:
        v.set_device_attr(CTRL, INIT, None)
    assert ei.value.errno == errno.EINVAL


def test_upstream_has_no_partitioned_backend() -> None:
    m = machine("upstream")
    v = m.kvm.create_vm().create_vcpu()
    with pytest.raises(KvmError) as ei:
        v.set_device_attr(CTRL, PART, 1)
    assert ei.value.errno == errno.ENXIO
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)
    assert v.backend is not None and v.backend.value == "emulated"


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_overflow_pending_while_free(rev: str) -> None:
    """§4.15: a FREE vCPU whose virtual PMCR.E, PMOVS and PMINTEN say "interrupt" (a VMM
    restoring a migrated guest with KVM_SET_ONE_REG): v8 17/21 flips it to GUEST_OWNED and
    decides from the hardware registers; the intent raises nothing while FREE."""
    m = machine(rev)
    v = vcpu(m)
    p = pmu(v)
    p.pmcr, p.ovs, p.inten = 1, 1, 1  # what the VMM restored
    seen: list[tuple[bool, PmuAccess]] = []
    v.run(lambda g: seen.append((p.overflow_status(), p.access)), cpu=0)
    status, access = seen[0]
    if rev == "v8":
        # owned now; the hardware PMCR/PMINTENSET were never loaded, so no interrupt either
        assert access is PmuAccess.GUEST_OWNED and status is False
    else:
        assert access is PmuAccess.FREE and status is False


def test_upstream_ignores_reserved_host_counters(caplog: pytest.LogCaptureFixture) -> None:
    """Mainline's arm_pmuv3 has no reserved_host_counters (v8 07/21 adds it): an unknown
    command-line parameter, warned about and ignored."""
    m = machine("upstream", reserved=2)
    assert all(not p.partitioned for p in m.host.pmus)
    assert "not a parameter of revision 'upstream'" in caplog.text
