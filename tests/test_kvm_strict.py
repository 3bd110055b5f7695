"""KVM_ARM_VCPU_PMU_V3_STRICT (vCPU feature 9, mainline 7.3; spec kernel-code-deltas §3.13).

Facts from the kvmarm series "KVM: arm64: Expose PMMIR_EL1.SLOTS to guests" (merged into
kvmarm/next for 7.3, branch kvm-arm64/pmu-7.3): ``kvm_vcpu_init_check_features``,
``kvm_setup_vcpu``, ``kvm_arm_pmu_v3_enable``, ``kvm_arm_pmu_v3_set_pmu``, ``access_pmmir``,
``compute_pmceid1``.  Each test names the function whose rule it pins."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from pmupart import Machine
from pmupart.host.topology import Topology
from pmupart.kvm import uapi
from pmupart.kvm.kvm import KvmError
from pmupart.kvm.revision import REVISIONS, PmuStrict, revision_with
from pmupart.kvm.uapi import KVM_ARM_VCPU_PMU_V3_CTRL as CTRL

IRQ, INIT, FILTER, SET_PMU, SET_NR = 0, 1, 2, 3, 4
STALL_SLOTS = (1 << (0x3D - 0x20)) | (1 << (0x3E - 0x20)) | (1 << (0x3F - 0x20))


def machine(revision: Any = "upstream") -> Machine:
    """Neoverse-N2 (cpu0, PMMIR.SLOTS 5) next to Neoverse-V2 (cpu1, SLOTS 8): both PMUv3p5+,
    so mainline offers a guest PMU (§3.6), and two PMUs to choose from."""
    topo = Topology.from_mapping({"name": "t", "cluster": [
        {"core": "neoverse-n2", "count": 1}, {"core": "neoverse-v2", "count": 1}]})
    return Machine.from_topology(topo, revision=revision)


def pmu_type(m: Machine, core: str) -> int:
    return next(p.type for p in m.host.pmus if p.core.name == core)


def reads(v: Any, *names: str, cpu: int = 0) -> dict[str, int]:
    out: dict[str, int] = {}

    def prog(g: Any) -> None:
        for n in names:
            out[n] = g.read(n).value
    ex = v.run(prog, cpu=cpu)
    assert ex.reason == uapi.KVM_EXIT_SYSTEM_EVENT
    return out


def test_revisions_name_the_choice() -> None:
    assert REVISIONS["upstream"].pmu_strict is PmuStrict.SUPPORTED
    assert REVISIONS["v8"].pmu_strict is PmuStrict.ABSENT      # base v7.1-rc7 predates it
    assert REVISIONS["intent"].pmu_strict is PmuStrict.ABSENT
    assert uapi.KVM_ARM_VCPU_PMU_V3_STRICT == 9


@pytest.mark.parametrize("rev", ["v8", "intent"])
def test_unknown_feature_bit_before_7_3(rev: str) -> None:
    # kvm_vcpu_init_check_features: bit 9 >= KVM_VCPU_MAX_FEATURES (9) there: -ENOENT
    vm = machine(rev).kvm.create_vm()
    with pytest.raises(KvmError) as e:
        vm.create_vcpu(strict=True)
    assert e.value.errno == errno.ENOENT


def test_strict_needs_pmuv3() -> None:
    # kvm_vcpu_init_check_features: "Strict PMUv3 UAPI requires PMUv3": -EINVAL
    vm = machine().kvm.create_vm()
    with pytest.raises(KvmError) as e:
        vm.create_vcpu(pmu=False, strict=True)
    assert e.value.errno == errno.EINVAL


def test_no_default_pmu_and_run_fails_without_set_pmu() -> None:
    # kvm_setup_vcpu: no default PMU; kvm_arm_pmu_v3_enable: -EINVAL at the first KVM_RUN
    m = machine()
    vm = m.kvm.create_vm()
    v = vm.create_vcpu(strict=True)
    assert vm.arm_pmu is None and vm.max_counters() == 0
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)          # INIT itself does not look at the PMU
    with pytest.raises(KvmError) as e:
        v.run(lambda g: None, cpu=0)
    assert e.value.errno == errno.EINVAL and not vm.has_run
    # and now SET_PMU comes too late: the PMU is created (kvm_arm_pmu_v3_set_attr: -EBUSY)
    with pytest.raises(KvmError) as e:
        v.set_device_attr(CTRL, SET_PMU, pmu_type(m, "neoverse-v2"))
    assert e.value.errno == errno.EBUSY


def test_a_non_strict_vcpu_still_gets_the_default() -> None:
    vm = machine().kvm.create_vm()
    vm.create_vcpu(init_cpu=1)
    assert vm.arm_pmu is not None and vm.arm_pmu.core.name == "neoverse-v2"


def test_filter_before_set_pmu_locks_set_pmu_out() -> None:
    # kvm_arm_pmu_v3_set_pmu: a filter exists and kvm->arch.arm_pmu (NULL) differs: -EBUSY
    m = machine()
    v = m.kvm.create_vm().create_vcpu(strict=True)
    v.set_device_attr(CTRL, FILTER, uapi.KvmPmuEventFilter(0x11, 1, uapi.KVM_PMU_EVENT_ALLOW))
    with pytest.raises(KvmError) as e:
        v.set_device_attr(CTRL, SET_PMU, pmu_type(m, "neoverse-n2"))
    assert e.value.errno == errno.EBUSY


def test_set_nr_counters_before_set_pmu_is_einval() -> None:
    # kvm_arm_pmu_v3_set_nr_counters: no arm_pmu: -EINVAL
    v = machine().kvm.create_vm().create_vcpu(strict=True)
    with pytest.raises(KvmError) as e:
        v.set_device_attr(CTRL, SET_NR, 2)
    assert e.value.errno == errno.EINVAL


def strict_vcpu(m: Machine, core: str, strict: bool = True) -> Any:
    v = m.kvm.create_vm().create_vcpu(strict=strict)
    v.set_device_attr(CTRL, SET_PMU, pmu_type(m, core))
    v.set_device_attr(CTRL, IRQ, 23)
    v.set_device_attr(CTRL, INIT, None)
    return v


@pytest.mark.parametrize("core, cpu, slots", [("neoverse-n2", 0, 5), ("neoverse-v2", 1, 8)])
def test_pmmir_slots_of_the_chosen_pmu(core: str, cpu: int, slots: int) -> None:
    # kvm_arm_pmu_v3_set_pmu snapshots SLOTS; access_pmmir returns it, other fields RAZ
    v = strict_vcpu(machine(), core)
    assert reads(v, "PMMIR_EL1", cpu=cpu)["PMMIR_EL1"] == slots


def test_pmmir_is_raz_without_strict() -> None:
    # access_pmmir: pmmir_slots stays 0 unless SET_PMU ran under STRICT
    v = strict_vcpu(machine(), "neoverse-v2", strict=False)
    assert reads(v, "PMMIR_EL1", cpu=1)["PMMIR_EL1"] == 0


def test_stall_slot_advertised_only_under_strict() -> None:
    # compute_pmceid1: STALL_SLOT* kept with STRICT, cleared without
    m = machine()
    on = reads(strict_vcpu(m, "neoverse-v2"), "PMCEID1_EL0", cpu=1)["PMCEID1_EL0"]
    off = reads(strict_vcpu(m, "neoverse-v2", strict=False), "PMCEID1_EL0",
                cpu=1)["PMCEID1_EL0"]
    assert on & STALL_SLOTS == STALL_SLOTS
    assert off & STALL_SLOTS == 0
    assert on & ~STALL_SLOTS == off


def test_v8_with_the_choice_overridden_accepts_strict() -> None:
    rev = revision_with("v8", pmu_strict="supported")
    v = strict_vcpu(machine(rev), "neoverse-n2")
    assert reads(v, "PMMIR_EL1")["PMMIR_EL1"] == 5



@pytest.mark.parametrize("extra, rev, err", [
    ('set_pmu = 9\n', "upstream", None),  # type 9: machine()'s neoverse-v2
    ("", "upstream", errno.EINVAL),          # kvm_arm_pmu_v3_enable at the first KVM_RUN
    ('set_pmu = 9\n', "v8", errno.ENOENT),  # kvm_vcpu_init_check_features
])
def test_scenario_key_reaches_kvm_arm_vcpu_init(extra: str, rev: str, err: int | None) -> None:
    # [[vm]] pmu_strict = true: setup_vm passes the feature to KVM_ARM_VCPU_INIT
    from pmupart.scenario.loader import load_scenario_text
    from pmupart.sim.session import setup_vm
    text = ('[scenario]\nname = "s"\nduration = "1ms"\n[machine]\npreset = "tensor-g1"\n'
            f'[[vm]]\nname = "a"\nirqchip = false\npmu_strict = true\n{extra}')
    vs = load_scenario_text(text, "s.toml").vms[0]
    assert vs.pmu_strict
    m = machine(rev)
    try:
        vm = setup_vm(m, vs)
        vm.vcpus[0].run(lambda g: None, cpu=1)
    except KvmError as e:
        assert e.errno == err
    else:
        assert err is None and vm.arm_pmu is not None and vm.arm_pmu.core.name == "neoverse-v2"
        assert vm.pmmir_slots == 8
