"""Partitioned and emulated guests on heterogeneous machines, migrating between runs; the
v1 "HPMN from the VM's PMU" variant; KVM_EXIT_FAIL_ENTRY; zero-general-counter guests with
and without FEAT_HPMN0 (spec kvm-partitioning §2.4, §2.5, §4.2, §4.4; style §2.6)."""

from __future__ import annotations

from typing import Any

import pytest

from pmupart import Machine
from pmupart.arch import Outcome
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.options import HpmnSource, KvmOptions

INST = 0x08
C = 1 << 31
E, LC = 1, 1 << 6
TPMCR, TPM, HPME, HPMD = 1 << 5, 1 << 6, 1 << 7, 1 << 17


def machine(clusters: list[dict[str, Any]], reserved: int = 2, **kw: Any) -> Machine:
    topo = Topology.from_mapping({"name": "h", "cluster": clusters})
    if "kvm_options" not in kw:
        kw.setdefault("revision", "intent")  # the design; v8 as posted: test_kvm_v8.py
    return Machine.from_topology(topo, reserved_host_counters=reserved, **kw)


def big_little(little_counters: int | None = None, reserved: int = 2, **kw: Any) -> Machine:
    """CPUs 0-1: Cortex-A720 (6 counters, FGT); CPUs 2-3: Cortex-A520 (FGT)."""
    little: dict[str, Any] = {"core": "cortex-a520", "count": 2}
    if little_counters is not None:
        little["num_counters"] = little_counters
    return machine([{"core": "cortex-a720", "count": 2}, little], reserved, **kw)


def vcpu_of(m: Machine, *, partition: bool, nr: int | None = None,
            pmu_type: int | None = None) -> Any:
    from conftest import make_vcpu

    return make_vcpu(m, partition=partition, nr=nr, pmu_type=pmu_type)


def mdcr(m: Machine, cpu: int) -> int:
    return m.host.cpus[cpu].pe.snapshot().mdcr_el2


def start_counting(g: Any) -> None:
    g.write("PMEVTYPER0_EL0", INST)
    g.write("PMEVCNTR0_EL0", 0)
    g.write("PMCCNTR_EL0", 0)
    g.write("PMCNTENSET_EL0", 1 | C)
    g.write("PMCR_EL0", LC | E)


class Probe:
    """A guest program that counts 1000 instructions and records what it and the CPU see."""

    def __init__(self, m: Machine, setup: bool = False) -> None:
        self.m = m
        self.setup = setup
        self.log: list[dict[str, Any]] = []

    def __call__(self, g: Any) -> None:
        if self.setup:
            start_counting(g)
            self.setup = False
        before = g.read("PMEVCNTR0_EL0").value
        g.count({"INST_RETIRED": 1000, "CPU_CYCLES": 1500})
        pe = self.m.host.cpus[g.cpu].pe
        s = pe.snapshot()
        self.log.append({
            "cpu": g.cpu, "delta": g.read("PMEVCNTR0_EL0").value - before,
            "mdcr": s.mdcr_el2, "hpmn": s.mdcr_el2 & 0x1F, "n": pe.num_counters,
            "cu": pe.hpmn_constrained_unpredictable,
            "pmcr_n": (g.read("PMCR_EL0").value >> 11) & 0x1F,
        })


# ---------------------------------------------------------------------- HPMN source
@pytest.mark.parametrize("little_counters", [3, 4, 6])
def test_default_design_never_programs_hpmn_above_the_cpus_counters(
        little_counters: int) -> None:
    m = big_little(little_counters)
    v = vcpu_of(m, partition=True)  # default PMU: CPU 0's (A720), nr = 4
    probe = Probe(m, setup=True)
    for cpu in (0, 2, 1, 3, 0):
        assert v.run(probe, cpu=cpu).reason == uapi.KVM_EXIT_SYSTEM_EVENT
    for rec in probe.log:
        assert rec["hpmn"] <= rec["n"] and not rec["cu"], rec
        assert rec["mdcr"] & HPME  # the host's range stays enabled while the guest runs
        assert rec["pmcr_n"] == 4  # the guest's PMCR.N never changes with the CPU
    big = [r for r in probe.log if r["cpu"] < 2]
    assert all(r["hpmn"] == 4 and not r["mdcr"] & (TPM | TPMCR) for r in big)
    assert all(r["delta"] == 1000 for r in big)


def test_v1_variant_programs_hpmn_above_the_cpus_counters() -> None:
    m = big_little(3, kvm_options=KvmOptions(hpmn_source=HpmnSource.VM_PMU))
    v = vcpu_of(m, partition=True)
    probe = Probe(m, setup=True)
    v.run(probe, cpu=0)
    v.run(probe, cpu=2)  # the A520 has 3 counters; the VM's PMU (A720) says 4
    on_little = probe.log[-1]
    assert on_little["hpmn"] == 4 > on_little["n"] == 3
    assert on_little["cu"]


def test_both_designs_agree_on_a_homogeneous_machine() -> None:
    for src in HpmnSource:
        m = machine([{"core": "cortex-a720", "count": 2}],
                    kvm_options=KvmOptions(hpmn_source=src))
        v = vcpu_of(m, partition=True)
        probe = Probe(m, setup=True)
        for cpu in (0, 1, 0):
            v.run(probe, cpu=cpu)
        assert [r["hpmn"] for r in probe.log] == [4, 4, 4], src
        assert [r["delta"] for r in probe.log] == [1000] * 3


def test_partitioned_state_survives_migration_between_same_type_cpus() -> None:
    m = machine([{"core": "cortex-a720", "count": 2}])
    v = vcpu_of(m, partition=True)
    vals: list[tuple[int, int]] = []

    def prog(g: Any) -> None:
        if not vals:
            start_counting(g)
        g.count({"INST_RETIRED": 700, "CPU_CYCLES": 900})
        vals.append((g.read("PMEVCNTR0_EL0").value, g.read("PMCCNTR_EL0").value))

    for cpu in (0, 1, 1, 0):
        v.run(prog, cpu=cpu)
    assert [a for a, _ in vals] == [700, 1400, 2100, 2800]
    assert [b for _, b in vals] == [900, 1800, 2700, 3600]


# ---------------------------------------------------------------------- FAIL_ENTRY
@pytest.mark.parametrize("partition", [False, True])
def test_fail_entry_on_cpu_outside_the_chosen_pmu(partition: bool) -> None:
    m = big_little()
    big, little = m.host.pmus
    v = vcpu_of(m, partition=partition, pmu_type=little.type)
    ran: list[int] = []
    for cpu in big.cpus:
        ex = v.run(lambda g: ran.append(g.cpu), cpu=cpu)
        assert ex.reason == uapi.KVM_EXIT_FAIL_ENTRY
        assert ex.fail_entry is not None
        assert ex.fail_entry.hardware_entry_failure_reason == \
            uapi.KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED
        assert ex.fail_entry.cpu == cpu
    assert ran == []  # the guest never entered
    assert v.run(lambda g: ran.append(g.cpu), cpu=3).reason == uapi.KVM_EXIT_SYSTEM_EVENT
    assert ran == [3]


def test_default_pmu_counters_stop_on_cpus_of_another_type_emulated() -> None:
    m = big_little(reserved=-1)
    v = vcpu_of(m, partition=False)  # default PMU = CPU 0's, supported_cpus not narrowed
    probe = Probe(m, setup=True)
    for cpu in (0, 2, 1):
        assert v.run(probe, cpu=cpu).reason == uapi.KVM_EXIT_SYSTEM_EVENT
    assert [r["delta"] for r in probe.log] == [1000, 0, 1000]


# ---------------------------------------------------------------------- zero counters
def zero_counter_guest(out: dict[str, Any], m: Machine) -> Any:
    def prog(g: Any) -> None:
        out["pmcr_n"] = (g.read("PMCR_EL0").value >> 11) & 0x1F
        g.write("PMCCNTR_EL0", 0)
        g.write("PMCNTENSET_EL0", 0xFFFFFFFF)
        out["cnten"] = g.read("PMCNTENSET_EL0").value
        g.write("PMCR_EL0", LC | E)
        g.count({"CPU_CYCLES": 12345})
        out["ccnt"] = g.read("PMCCNTR_EL0").value
        out["evcntr0"] = g.read("PMEVCNTR0_EL0").outcome
        out["evtyper0"] = g.write("PMEVTYPER0_EL0", INST).outcome
        out["mdcr"] = mdcr(m, g.cpu)
    return prog


def test_zero_counters_with_hpmn0_is_untrapped() -> None:
    m = machine([{"core": "c1-pro", "count": 2}])
    v = vcpu_of(m, partition=True, nr=0)
    out: dict[str, Any] = {}
    v.run(zero_counter_guest(out, m), cpu=0)
    assert out["mdcr"] & 0x1F == 0 and not out["mdcr"] & (TPM | TPMCR)
    assert out["mdcr"] & HPMD
    assert out["pmcr_n"] == 0 and out["cnten"] == C
    assert out["ccnt"] == 12345
    assert out["evcntr0"] is Outcome.UNDEFINED and out["evtyper0"] is Outcome.UNDEFINED
    # Lazy swap: the first PMU write (PMCCNTR) traps and hands the PMU over; the PMCR read
    # before it traps too.  Nothing after it does, but the FGT-trapped PMEVTYPER write.
    assert v.stats.traps["PMCCNTR_EL0"] == 1 and v.stats.traps["PMCR_EL0"] == 1
    assert set(v.stats.traps) <= {"PMCCNTR_EL0", "PMCR_EL0", "PMEVCNTR0_EL0",
                                  "PMEVTYPER0_EL0"}


def test_zero_counters_without_hpmn0_falls_back_to_traps() -> None:
    m = machine([{"core": "cortex-a720", "count": 2}])
    v = vcpu_of(m, partition=True, nr=0)
    out: dict[str, Any] = {}
    v.run(zero_counter_guest(out, m), cpu=0)
    # HPMN = 0 would be CONSTRAINED UNPREDICTABLE without FEAT_HPMN0: KVM keeps HPMN = N and
    # the TPM/TPMCR traps (spec kvm §2.4, §4.4).
    assert out["mdcr"] & 0x1F == m.host.pmus[0].num_counters
    assert out["mdcr"] & TPM and out["mdcr"] & TPMCR
    assert not m.host.cpus[0].pe.hpmn_constrained_unpredictable
    assert out["pmcr_n"] == 0 and out["cnten"] == C
    assert out["ccnt"] == 12345  # the cycle counter still works, through traps
    assert out["evcntr0"] is Outcome.UNDEFINED and out["evtyper0"] is Outcome.UNDEFINED
    assert v.stats.traps["PMCCNTR_EL0"] >= 1 and v.stats.traps["PMCR_EL0"] >= 1


def test_zero_counters_emulated_on_either_core() -> None:
    for core in ("c1-pro", "cortex-a720"):
        m = machine([{"core": core, "count": 2}], reserved=-1)
        v = vcpu_of(m, partition=False, nr=0)
        out: dict[str, Any] = {}
        v.run(zero_counter_guest(out, m), cpu=0)
        assert out["pmcr_n"] == 0 and out["ccnt"] == 12345, core
        assert out["evcntr0"] is Outcome.UNDEFINED, core


def test_mdcr_has_hpme_always_and_hpmd_only_when_partitioned() -> None:
    for reserved, partition in ((-1, False), (2, False), (2, True)):
        m = machine([{"core": "cortex-a720", "count": 2}], reserved)
        v = vcpu_of(m, partition=partition)
        seen: list[int] = []
        v.run(lambda g, m=m, seen=seen: (g.write("PMCNTENSET_EL0", 1),
                                         seen.append(mdcr(m, 0))), cpu=0)
        assert seen[0] & HPME, (reserved, partition)
        assert bool(seen[0] & HPMD) == partition
        assert bool(seen[0] & TPM) != partition  # emulated: every access traps


def test_v1_rule_on_a_smaller_cpu_does_not_touch_missing_counters() -> None:
    """Under the v1 HPMN rule a VM's guest range (18 counters here) can exceed a CPU's 6:
    KVM's partitioned accessors (PMCR.P, SW_INCR) must not reach counters the CPU lacks,
    whose state is simply lost there (the checker reports the CONSTRAINED UNPREDICTABLE
    HPMN)."""
    from pmupart import Machine
    from pmupart.host.topology import Topology
    from pmupart.kvm import KvmOptions, uapi
    from pmupart.kvm.options import HpmnSource

    topo = Topology.from_mapping({"name": "h", "cluster": [
        {"core": "cortex-a720", "count": 1, "num_counters": 20},
        {"core": "c1-pro", "count": 1}]})
    from pmupart.kvm.revision import MixedPmuver

    # A720 (p7) + C1-Pro (p8): the what-if where KVM offers a guest PMU (kernel-code-deltas
    # §3.6: mainline offers none on CPUs that differ in PMUVer)
    m = Machine.from_topology(topo, reserved_host_counters=2,
                              kvm_options=KvmOptions(hpmn_source=HpmnSource.VM_PMU,
                                                     mixed_pmuver=MixedPmuver.VM_PMU))
    vcpu = m.kvm.create_vm().create_vcpu()
    g = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    vcpu.set_device_attr(g, m.kvm.options.enable_partition_attr, 1)
    vcpu.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, 23)
    vcpu.set_device_attr(g, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    seen = {}

    def guest(cpu):  # type: ignore[no-untyped-def]
        cpu.write("PMCNTENSET_EL0", 0xFFFF)
        cpu.write("PMCR_EL0", 0b11)  # E and P: resets every guest counter
        cpu.write("PMSWINC_EL0", 0x3FFFF)
        cpu.count({"INST_RETIRED": 100, "CPU_CYCLES": 200})
        seen["hpmn_cu"] = m.host.cpus[1].pe.hpmn_constrained_unpredictable

    vcpu.run(guest, cpu=1)
    assert seen["hpmn_cu"] is True
