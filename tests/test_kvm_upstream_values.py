"""Guest-visible values as upstream KVM shows them (spec kernel-code-deltas §3.1-§3.10, §5.2,
§5.7): each test names the kernel function whose behaviour it pins."""

from __future__ import annotations

from typing import Any

import pytest

from pmupart import Machine
from pmupart.arch import Outcome
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.revision import revision_with

C = 1 << 31
LC, E = 1 << 6, 1


def machine(*cores: str, revision: str = "v8", what_if: bool = False, **kw: Any) -> Machine:
    """A host of one CPU per core named; ``what_if`` offers a guest PMU even where the cores
    differ in PMUVer (mainline offers none, §3.6)."""
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": c, "count": 1}
                                                           for c in cores]})
    rev: Any = revision
    if what_if:
        rev = revision_with(revision, mixed_pmuver="vm-pmu")
    return Machine.from_topology(topo, revision=rev, **kw)


def vcpu(m: Machine, partition: bool = False, filt: list[Any] | None = None,
         pmu: bool = True) -> Any:
    from conftest import make_vcpu

    return make_vcpu(m, partition=partition, filters=filt or (), pmu=pmu)


def run(v: Any, prog: Any, cpu: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ex = v.run(lambda g: prog(g, out), cpu=cpu)
    assert ex.reason == uapi.KVM_EXIT_SYSTEM_EVENT
    return out


def read(name: str, el: int = 1) -> Any:
    def prog(g: Any, out: dict[str, Any]) -> None:
        g.el = el
        out["acc"] = g.read(name)
        g.el = 1
    return prog


# ---------------------------------------------------------------------- PMCR (§3.3, §3.4)
@pytest.mark.parametrize(("core", "want"), [
    ("cortex-a76", 6 << 11),          # AArch32 EL0: LC = 0 (reset_pmcr), IMP = 0
    ("cortex-a720", 6 << 11 | LC),    # no AArch32: LC is RES1
])
def test_pmcr_at_reset_is_reset_pmcr(core: str, want: int) -> None:
    """reset_pmcr stores 0 (plus LC only without AArch32 EL0); kvm_vcpu_read_pmcr adds N
    only: no IMP, whatever the host's PMU version."""
    m = machine(core, core)
    assert run(vcpu(m), read("PMCR_EL0"))["acc"].value == want


def test_pmcr_imp_never_reaches_the_guest_after_writes() -> None:
    """access_pmcr keeps bits [7:0] of a write on top of kvm_vcpu_read_pmcr: IMP stays 0."""
    def prog(g: Any, out: dict[str, Any]) -> None:
        g.write("PMCR_EL0", 0xFF00_0000 | LC | E)
        out["pmcr"] = g.read("PMCR_EL0").value
    assert run(vcpu(machine("cortex-a76", "cortex-a76")), prog)["pmcr"] == 6 << 11 | LC | E


@pytest.mark.parametrize("partition", [False, True])
def test_partitioned_guest_reads_one_imp_value(partition: bool) -> None:
    """§5.2: before and after the ownership flip a partitioned guest on a PMUv3p7 core (IMP
    RAZ in hardware) reads the same IMP, 0, as the emulated one does."""
    m = machine("cortex-a720", "cortex-a720", reserved_host_counters=2)

    def prog(g: Any, out: dict[str, Any]) -> None:
        out["before"] = g.read("PMCR_EL0").value
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCNTENCLR_EL0", 1)
        out["after"] = g.read("PMCR_EL0").value
    out = run(vcpu(m, partition=partition), prog)
    assert out["before"] >> 24 == out["after"] >> 24 == 0


# ---------------------------------------------------------------- event types (§3.2)
@pytest.mark.parametrize("partition", [False, True])
def test_evtyper_and_ccfiltr_take_kvm_pmu_evtyper_mask(partition: bool) -> None:
    """kvm_pmu_set_counter_event_type: data & (P | U | event mask); NSH (bit 27) only for a
    guest with EL2.  PMCCFILTR takes the same mask: its evtCount bits read back."""
    m = machine("cortex-a720", "cortex-a720", reserved_host_counters=2)

    def prog(g: Any, out: dict[str, Any]) -> None:
        g.write("PMEVTYPER0_EL0", 0x0800_0008)
        g.write("PMCCFILTR_EL0", 0x4800_0011)
        out["typer"] = g.read("PMEVTYPER0_EL0").value
        out["ccfiltr"] = g.read("PMCCFILTR_EL0").value
    out = run(vcpu(m, partition=partition), prog)
    assert out["typer"] == 0x8
    if not partition:  # the partitioned read-back is the series' business (§4)
        assert out["ccfiltr"] == 0x4000_0011


# ----------------------------------------------------------------- PMUSERENR (§3.1)
def test_el0_reads_pmuserenr_unchecked_and_writes_undef() -> None:
    """access_pmuserenr: a read has no check; a write from EL0 is undef_access."""
    def prog(g: Any, out: dict[str, Any]) -> None:
        g.el = 0
        out["r"] = g.read("PMUSERENR_EL0")
        out["w"] = g.write("PMUSERENR_EL0", 0xF)
        out["pmcr"] = g.read("PMCR_EL0")  # EN = 0: PMCR is still UNDEFINED at EL0
        g.el = 1
    out = run(vcpu(machine("cortex-a76", "cortex-a76")), prog)
    assert out["r"].outcome is Outcome.OK and out["r"].value == 0
    assert out["w"].outcome is Outcome.UNDEFINED
    assert out["pmcr"].outcome is Outcome.UNDEFINED


# ------------------------------------------------------------------- PMCEID (§3.5)
def test_pmceid_forces_swinc_and_chain_and_filters_them() -> None:
    """compute_pmceid0 sets SW_INCR and CHAIN; kvm_pmu_get_pmceid ANDs every bit, those two
    included, with the filter."""
    m = machine("cortex-a76", "cortex-a76")
    plain = run(vcpu(m), read("PMCEID0_EL0"))["acc"].value
    assert plain & 1 and plain >> 30 & 1
    allow = uapi.KvmPmuEventFilter(0x08, 1, uapi.KVM_PMU_EVENT_ALLOW)  # INST_RETIRED only
    v = vcpu(m, filt=[allow])
    assert run(v, read("PMCEID0_EL0"))["acc"].value == 1 << 8
    deny = uapi.KvmPmuEventFilter(0x00, 1, uapi.KVM_PMU_EVENT_DENY)  # SW_INCR
    v = vcpu(m, filt=[deny])
    assert run(v, read("PMCEID0_EL0"))["acc"].value == plain & ~1


# ------------------------------------------------------ PMU version, ID registers (§3.6, §3.7)
def test_guest_pmuver_is_the_system_sanitised_one_capped() -> None:
    """kvm_arm_pmu_get_pmuver_limit: the system-sanitised PMUVer (all p7 here), capped at p5."""
    m = machine("cortex-a520", "cortex-x4")
    v = vcpu(m)
    dfr0 = run(v, read("ID_AA64DFR0_EL1"))["acc"].value
    assert (dfr0 >> 8) & 0xF == 0b0110 and dfr0 & 0xF == 0x6


@pytest.mark.parametrize(("revision", "hpmn0"), [("upstream", 0), ("v8", 1)])
def test_guest_hpmn0_follows_the_cpufeature_table(revision: str, hpmn0: int) -> None:
    """Mainline's ftr_id_aa64dfr0 has no HPMN0 entry (the sanitised value drops it); the
    series' FEAT_HPMN0 cpufeature entry is FTR_LOWER_SAFE (lowest of the system)."""
    m = machine("c1-pro", "c1-pro", revision=revision)
    assert run(vcpu(m), read("ID_AA64DFR0_EL1"))["acc"].value >> 60 == hpmn0
    mixed = machine("c1-pro", "cortex-a720", revision=revision, what_if=True)
    assert run(vcpu(mixed), read("ID_AA64DFR0_EL1"), cpu=0)["acc"].value >> 60 == 0


def test_dfr1_is_raz_and_mmfr0_is_the_lowest_fgt() -> None:
    """ID_AA64DFR1_EL1 is ftr_raz in mainline; ID_AA64MMFR0_EL1.FGT is FTR_LOWER_SAFE."""
    fgt = machine("cortex-a720", "cortex-a720")
    assert run(vcpu(fgt), read("ID_AA64MMFR0_EL1"))["acc"].value >> 56 & 0xF == 1
    mixed = machine("cortex-a720", "cortex-a710", what_if=True)
    assert run(vcpu(mixed), read("ID_AA64MMFR0_EL1"))["acc"].value == 0
    assert run(vcpu(fgt), read("ID_AA64DFR1_EL1"))["acc"].value == 0


def test_a_vcpu_without_pmu_reads_pmuver_zero() -> None:
    """sanitise_id_aa64dfr0_el1 sets PMUVer only for a vCPU with a PMU."""
    m = machine("cortex-a76", "cortex-a76")
    v = m.kvm.create_vm().create_vcpu(pmu=False)
    assert run(v, read("ID_AA64DFR0_EL1"))["acc"].value == 0x6


# ----------------------------------------------- perf events of the emulated vPMU (§3.8, §3.9)
INST = 0x08


def test_perf_event_created_disabled_and_recreated_on_every_write() -> None:
    """kvm_pmu_create_perf_event always creates the event, attr.disabled while the counter is
    not enabled; every PMEVTYPER and counter write recreates it (kvm_pmu_set_counter_event_type,
    kvm_pmu_set_pmc_value); kvm_pmu_reprogram_counter_mask enables the one it has."""
    from pmupart.host.perf_event import EventState

    def prog(g: Any, out: dict[str, Any]) -> None:
        pmu = g.vcpu.pmu
        g.write("PMEVTYPER0_EL0", INST)
        out["after_type"] = (g.vcpu.stats.perf_events_created, pmu.perf[0].state)
        g.write("PMEVCNTR0_EL0", 5)
        out["after_cntr"] = (g.vcpu.stats.perf_events_created,
                             g.vcpu.stats.perf_events_released)
        ev = pmu.perf[0]
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", E)
        out["enabled"] = (g.vcpu.stats.perf_events_created, pmu.perf[0] is ev, ev.state)
    out = run(vcpu(machine("cortex-a76", "cortex-a76")), prog)
    assert out["after_type"] == (1, EventState.OFF)
    assert out["after_cntr"] == (2, 1)
    created, same, state = out["enabled"]
    assert created == 2 and same and state is not EventState.OFF


def _timing(start: int, plan: list[int]) -> list[tuple[int, int]]:
    out: dict[str, Any] = {"plan": plan}

    def prog(g: Any, o: dict[str, Any]) -> None:
        g.write("PMEVTYPER0_EL0", INST)
        g.write("PMEVCNTR0_EL0", start)
        g.write("PMCNTENSET_EL0", 1)
        g.write("PMCR_EL0", E)
        steps = []
        for n in plan:
            g.el = 0
            g.count({"INST_RETIRED": n})
            g.el = 1
            steps.append((g.read("PMOVSSET_EL0").value & 1, g.read("PMEVCNTR0_EL0").value))
            g.write("PMOVSCLR_EL0", 1)
        o["steps"] = steps
    v = vcpu(machine("cortex-a76", "cortex-a76"))
    ex = v.run(lambda g: prog(g, out), cpu=0)
    assert ex.reason == uapi.KVM_EXIT_SYSTEM_EVENT
    return list(out["steps"])


def test_overflow_rearm_follows_the_perf_count_not_the_guest_value() -> None:
    """kvm_pmu_perf_overflow re-arms with compute_period(local64_read(&event->count)): a
    counter first written to S = 1000 sets its flag at the wrap (2^32 - S events), then
    again S events later, where the guest counter reads S and has not wrapped; after that the
    perf count is 2^32, the period 0, and no flag ever comes again (the architecture would
    set one at every wrap, 2^32 events apart)."""
    s = 1000
    steps = _timing(s, [(1 << 32) - s - 1, 1, s - 1, 1, 1 << 32, 1 << 32])
    assert steps == [
        (0, (1 << 32) - 1),
        (1, 0),            # the wrap: right
        (0, s - 1),
        (1, s),            # S events after the wrap: upstream's early flag
        (0, s),            # the real second wrap passes unflagged ...
        (0, s),            # ... and so does every later one
    ]


def test_counter_at_zero_never_flags() -> None:
    """compute_period(0) = 0: a counting perf event; __perf_event_overflow ignores its
    interrupts, so a guest counter started at 0 wraps without an overflow flag."""
    assert _timing(0, [(1 << 32) + 10]) == [(0, 10)]


# ------------------------------------------------------------------- PMSELR (§3.10)
@pytest.mark.parametrize("leaver", ["host", "partitioned"])
def test_pmselr_is_zeroed_at_every_vcpu_load(leaver: str) -> None:
    """__activate_traps_common writes PMSELR_EL0 = 0 at every vcpu_load: a SEL = 31 left in
    hardware by the host or by a partitioned vCPU cannot make the next guest's PMXEVCNTR_EL0
    UNDEFINED (31 >= N at EL1) instead of trapping to KVM."""
    m = machine("cortex-a720", "cortex-a720", reserved_host_counters=2)
    if leaver == "host":
        m.host.cpus[0].pe.write_el2("PMSELR_EL0", 31)
    else:
        def part(g: Any, out: dict[str, Any]) -> None:
            g.write("PMCNTENSET_EL0", 1)  # a trapped access: the partitioned vCPU owns its PMU
            g.write("PMSELR_EL0", 31)
        p = vcpu(m, partition=True)
        run(p, part)
        run(p, part)  # loaded with its state in hardware, then put
    out = run(vcpu(m), read("PMXEVCNTR_EL0"))
    assert out["acc"].outcome is Outcome.OK


@pytest.mark.parametrize("revision", ["upstream", "v8", "intent"])
def test_no_guest_pmu_on_a_host_mixing_pmu_versions(revision: str) -> None:
    """ID_AA64DFR0.PMUVer is FTR_EXACT with safe value 0: on CPUs that differ (A720 p7, A76
    p1) the sanitised PMUVer is 0, kvm_host_pmu_init registers no PMU for guests, and
    KVM_ARM_VCPU_INIT refuses the PMUv3 feature with -EINVAL.  The what-if choice
    mixed_pmuver = vm-pmu offers the VM PMU's version instead."""
    import errno

    from pmupart.kvm import KvmError

    m = machine("cortex-a720", "cortex-a76", revision=revision)
    with pytest.raises(KvmError) as e:
        m.kvm.create_vm().create_vcpu()
    assert e.value.errno == errno.EINVAL
    assert m.kvm.create_vm().create_vcpu(pmu=False) is not None
    w = machine("cortex-a720", "cortex-a76", revision=revision, what_if=True)
    v = vcpu(w)
    assert (run(v, read("ID_AA64DFR0_EL1"))["acc"].value >> 8) & 0xF == 0b0110


def test_no_pmu_vcpu_el0_access_exits_to_kvm_and_undefs() -> None:
    """__activate_traps_common opens PMUSERENR_EL0 for every vCPU, so a no-PMU guest's EL0 PMU
    access traps to EL2 and KVM injects UNDEF; the host's PMUSERENR comes back at put."""
    m = machine("cortex-a76", "cortex-a76")
    m.host.cpus[0].pe.write_el2("PMUSERENR_EL0", 0x1)
    v = m.kvm.create_vm().create_vcpu(pmu=False)
    out = run(v, read("PMCCNTR_EL0", el=0))
    assert out["acc"].outcome is Outcome.UNDEFINED
    assert v.stats.traps["PMCCNTR_EL0"] == 1
    assert m.host.cpus[0].pe.read_el2("PMUSERENR_EL0") == 0x1
