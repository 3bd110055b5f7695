"""The checker catches every known-wrong design variant, each by running it, and the default
design passes the same runs clean (issue 5; DESIGN.md decision 7: known-wrong variants stay
available so the checker can show them).

Variants (pmupart.kvm.options.KvmOptions): the v1 06/17 rule that took MDCR_EL2.HPMN from the
VM's PMU (spec kvm-partitioning §2.4), HPMD left clear (§2.5), PMOVS not cleared at load
(§2.7, v6), the event filter not re-applied at load (§2.8).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from pmupart import Machine
from pmupart.arch.events import event_number as E
from pmupart.check import Checker, InvariantViolation
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.options import HpmnSource, KvmOptions
from pmupart.kvm.revision import MixedPmuver
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

CTRL = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
IRQ, INIT, FILTER, PART = 0, 1, 2, 5
E_BIT, LC = 1, 1 << 6
NSH = 1 << 27
C = 1 << 31
WL = Workload("compute", (Phase(rates=Workload.rates_of({"L1D_CACHE": 0.4, "BR_RETIRED": 0.15}),
                                kernel_fraction=0.05),))
EV4 = tuple(E(x) for x in ("CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "BR_RETIRED"))

#: CPUs 0-1 Cortex-A710 (20 counters, no FGT), CPUs 2-3 Cortex-A720 (6 counters, FGT).  A VM
#: without SET_PMU gets CPU 0's PMU (the A710's: 18 guest counters with 2 reserved) and may
#: run anywhere (kvm_arm_set_default_pmu, spec kvm-partitioning §4.2).
HETERO = {"name": "h", "cluster": [{"core": "cortex-a710", "count": 2},
                                   {"core": "cortex-a720", "count": 2}]}
HOMO = {"name": "a720x4", "cluster": [{"core": "cortex-a720", "count": 4}]}


def scenario(topology: dict[str, Any], opts: KvmOptions, *, vms: int = 1, vcpus: int = 2,
             ms: int = 30) -> ScenarioSpec:
    return ScenarioSpec(
        "variant", topology, duration_ns=ms * 10**6, seed=3,
        # HETERO mixes PMUv3p5 and p7, where mainline offers no guest PMU (kernel-code-deltas
        # §3.6): these stories are the what-if mixed_pmuver = vm-pmu
        machine_options={"reserved_host_counters": 2,
                         "kvm_options": dataclasses.replace(opts,
                                                            mixed_pmuver=MixedPmuver.VM_PMU)},
        vms=tuple(VmSpec(f"vm{i}", vcpus=vcpus, workload="compute", perf=PerfSession(EV4),
                         partition=True) for i in range(vms)),
        host_perf=(PerfSession(EV4),), workloads={"compute": WL},
        migration=MigrationSpec(MigrationPolicy.PERIODIC, 5_000_000))


def check(spec: ScenarioSpec) -> Checker:
    ck = Checker()
    result = run_scenario(spec, listeners=[ck.listener])
    ck.finish(result)
    return ck


def rules(ck: Checker) -> set[str]:
    return set(ck.counts)


def first(ck: Checker, rule: str) -> InvariantViolation:
    return next(v for v in ck.violations if v.rule == rule)


# ---------------------------------------------------------------------- v1 HPMN rule
def test_v1_hpmn_from_the_vm_pmu_is_caught_on_a_heterogeneous_machine() -> None:
    ck = check(scenario(HETERO, KvmOptions(hpmn_source=HpmnSource.VM_PMU)))
    assert {"hpmn-legal", "share"} <= rules(ck), ck.render()
    v = first(ck, "hpmn-legal")
    assert v.cpu in (2, 3) and v.vcpu is not None and v.vcpu.startswith("vm0:")
    assert v.values["hpmn"] == 18 and v.values["cpu_counters"] == 6
    assert v.values["vm_pmu"] == "armv9_cortex_a710"
    assert v.values["cpu_pmu"] == "armv9_cortex_a720"
    assert "hpmn-legal" in ck.verdict() or "share" in ck.verdict()
    share = first(ck, "share")  # the guest's mask takes the host's counters 4 and 5
    assert share.values["counters"] == "{4,5}"


@pytest.mark.parametrize("v1", [True, False])
def test_v1_hpmn_sends_host_overflows_to_the_guest(v1: bool) -> None:
    """With host ``perf record`` sampling, the host's counters 4 and 5 overflow while they are
    inside the v1 guest mask: the interrupt goes to both owners (spec kvm-partitioning §2.9)."""
    opts = KvmOptions(hpmn_source=HpmnSource.VM_PMU) if v1 else KvmOptions()
    spec = dataclasses.replace(scenario(HETERO, opts), host_perf=(
        PerfSession(EV4, mode=PerfMode.RECORD, freq=4000),))
    ck = check(spec)
    if not v1:
        assert ck.ok, ck.render()
        return
    v = first(ck, "irq-owner")
    assert v.cpu in (2, 3) and v.values["counters"] in ("{4}", "{5}", "{4,5}")
    assert "both to a host event and to the guest" in v.message


def test_default_design_is_clean_on_the_same_heterogeneous_run() -> None:
    ck = check(scenario(HETERO, KvmOptions()))
    assert ck.ok, ck.render()
    assert re.match(r"verdict: OK — \d+ invariants held over 0\.030 s", ck.verdict())


def test_v1_and_default_agree_on_a_homogeneous_machine() -> None:
    for opts in (KvmOptions(), KvmOptions(hpmn_source=HpmnSource.VM_PMU)):
        ck = check(scenario(HOMO, opts, vms=2))
        assert ck.ok, (opts, ck.render())


# ---------------------------------------------------------------------- HPMD left clear
def test_hpmd_left_clear_is_caught() -> None:
    ck = check(scenario(HOMO, KvmOptions(set_hpmd=False), vms=2))
    assert rules(ck) == {"el2-prohibited"}, ck.render()
    v = first(ck, "el2-prohibited")
    assert v.values["pmuver"] == "V3P7" and v.vcpu is not None
    assert not int(v.values["mdcr_el2"], 16) & (1 << 17)


# ---------------------------------------------------------------------- machine-level runs
def machine(opts: KvmOptions, cpus: int = 2) -> Machine:
    topo = Topology.from_mapping({"name": "m", "cluster": [{"core": "cortex-a720",
                                                              "count": cpus}]})
    return Machine.from_topology(topo, reserved_host_counters=2, kvm_options=opts)


def partitioned_vcpu(m: Machine, deny: int | None = None) -> Any:
    v = m.kvm.create_vm().create_vcpu()
    if deny is not None:
        v.set_device_attr(CTRL, FILTER, uapi.KvmPmuEventFilter(deny, 1, uapi.KVM_PMU_EVENT_DENY))
    v.set_device_attr(CTRL, PART, 1)
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)
    return v


def count_with(typer: int) -> Any:
    """A guest that programs counter 0 with ``typer`` itself (ignoring PMCEID, as a guest
    kernel may), enables it and works; returns what it read."""
    seen: list[int] = []

    def prog(g: Any) -> None:
        g.write("PMEVTYPER0_EL0", typer)
        g.write("PMEVCNTR0_EL0", 0)
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", LC | E_BIT)
        g.count({"INST_RETIRED": 1000, "CPU_CYCLES": 1500})
        for _ in range(3):  # trapped reads: KVM's exits are EL2 work
            g.read("PMCEID0_EL0")
        seen.append(g.read("PMEVCNTR0_EL0").value or 0)

    prog.seen = seen  # type: ignore[attr-defined]
    return prog


@pytest.mark.parametrize("filter_at_load", [True, False])
def test_event_filter_not_reapplied_is_caught(filter_at_load: bool) -> None:
    m = machine(KvmOptions(filter_at_load=filter_at_load))
    ck = Checker()
    ck.attach(m)
    v = partitioned_vcpu(m, deny=E("INST_RETIRED"))
    prog = count_with(E("INST_RETIRED"))
    v.run(prog, cpu=0)
    v.run(prog, cpu=1)
    ck.finish()
    if filter_at_load:
        assert ck.ok, ck.render()
        assert prog.seen == [0, 0]  # the denied event counts nothing
        return
    assert rules(ck) == {"own-work"}, ck.render()
    viol = first(ck, "own-work")
    assert viol.values["event"] == "INST_RETIRED" and viol.vcpu == "vm0:vcpu0"
    assert "denies" in viol.message
    assert {x.cpu for x in ck.violations} == {0, 1}  # at the first load and after migrating
    assert prog.seen[0] == 1000


def test_hpmd_clear_is_caught_though_the_guest_cannot_ask_for_el2() -> None:
    """HPMD/HCCD left clear breaks the el2-prohibited rule.  The guest cannot exploit it
    through PMEVTYPER: KVM stores a trapped write masked by ``kvm_pmu_evtyper_mask``, which
    keeps NSH (bit 27) only for a guest with EL2 (spec kernel-code-deltas §3.2), so even
    without the load-time filter its counter does not count KVM's EL2 work."""
    m = machine(KvmOptions(set_hpmd=False, filter_at_load=False))
    ck = Checker()
    ck.attach(m)
    v = partitioned_vcpu(m)
    prog = count_with(NSH | E("CPU_CYCLES"))
    v.run(prog, cpu=0)
    ck.finish()
    assert rules(ck) == {"el2-prohibited"}, ck.render()
    assert prog.seen[0] == 1500  # the guest's own cycles only


def test_default_design_keeps_nsh_and_el2_work_out() -> None:
    m = machine(KvmOptions())
    ck = Checker()
    ck.attach(m)
    v = partitioned_vcpu(m)
    prog = count_with(NSH | E("CPU_CYCLES"))
    v.run(prog, cpu=0)
    ck.finish()
    assert ck.ok, ck.render()
    assert prog.seen == [1500]


@pytest.mark.parametrize("clear", [True, False])
def test_pmovs_not_cleared_on_load_is_caught(clear: bool) -> None:
    """A host counter's overflow flag is still pending in the hardware when KVM loads the vCPU (the
    model's host driver clears flags when it gives a counter up, as Linux's
    ``armv8pmu_disable_intens`` does; a flag set after that, an overflow in flight, is what the
    series' "clear the guest bits so no spurious IRQ fires" is for: spec kvm-partitioning §2.7).
    Without the clear, the guest reads it as its own overflow."""
    m = machine(KvmOptions(clear_pmovs_on_load=clear), cpus=1)
    ck = Checker()
    ck.attach(m)
    v = partitioned_vcpu(m)
    reads: list[int] = []

    def start(g: Any) -> None:
        g.write("PMEVTYPER0_EL0", E("INST_RETIRED"))
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", LC | E_BIT)
        g.count({"INST_RETIRED": 100, "CPU_CYCLES": 150})

    def look(g: Any) -> None:
        reads.append(g.read("PMOVSSET_EL0").value or 0)

    v.run(start, cpu=0)
    pe = m.host.cpus[0].pe
    with pe.at_el(2):
        pe.write("PMOVSSET_EL0", 1 << 1)  # counter 1: the guest's range, no guest overflow
    v.run(look, cpu=0)
    ck.finish()
    if clear:
        assert ck.ok, ck.render()
        assert reads == [0]
        return
    assert rules(ck) == {"no-leak"}, ck.render()
    msgs = [x.message for x in ck.violations]
    assert any("set in hardware when its state is loaded" in s for s in msgs)
    assert any("guest reads an overflow flag another context left" in s for s in msgs)
    assert reads == [1 << 1]
    stale = first(ck, "no-leak")
    assert stale.cpu == 0 and stale.vcpu == "vm0:vcpu0" and stale.values["hw_pmovs"] == "{1}"


# ---------------------------------------------------------------------- reports
def test_violation_details_and_verdict_name_time_cpu_vcpu_rule_and_values() -> None:
    ck = check(scenario(HETERO, KvmOptions(hpmn_source=HpmnSource.VM_PMU), ms=12))
    v = first(ck, "hpmn-legal")
    line = v.details()
    assert line.startswith("t=") and " ms cpu" in line and "[hpmn-legal]" in line
    assert "hpmn=18" in line and "cpu_counters=6" in line
    assert "§9" in v.details(source=True)
    verdict = ck.verdict()
    assert verdict.startswith(f"verdict: {ck.total} violations of {len(ck.counts)} invariants "
                              "(first: t=")
    assert "\n" not in verdict
    out = ck.render()
    assert out.splitlines()[-1] == verdict
    assert "hpmn-legal: " in out and "spec pmuv3 §9" in out


def test_every_invariant_names_its_rule_and_source() -> None:
    ck = Checker()
    names = [inv.name for inv in ck.invariants]
    assert len(names) == len(set(names)) >= 10
    for inv in ck.invariants:
        # a spec section, the Arm ARM, or the kernel source file the rule follows
        assert inv.rule and inv.__doc__
        assert re.search(r"spec |Arm ARM|kernel/|arch/arm64/|drivers/", inv.source), inv.name


def test_a_vcpu_running_outside_its_supported_cpus_is_reported() -> None:
    """No variant skips KVM's ON_UNSUPPORTED_CPU check, so the rule is shown by taking it
    away: the VM's supported CPUs lose this CPU while its vCPU runs there."""
    m = machine(KvmOptions())
    ck = Checker()
    ck.attach(m)
    v = partitioned_vcpu(m)

    def prog(g: Any) -> None:
        v.vm.supported_cpus = frozenset({1})  # as if KVM had skipped the check on entry
        g.count({"INST_RETIRED": 10})

    v.run(prog, cpu=0)
    ck.finish()
    viol = first(ck, "pmu-covers-cpu")
    assert viol.cpu == 0 and viol.vcpu == "vm0:vcpu0" and viol.values["supported"] == [1]
