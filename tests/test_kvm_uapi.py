"""The vCPU PMU device-attribute UAPI, errno by errno (spec style-and-ecosystem §2.6,
kvm-partitioning §4.1 and §2.11).  Expectations come from the spec's table and its "code
wins over doc" notes, not from the model."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from pmupart import Machine
from pmupart.host.topology import Topology
from pmupart.kvm import KvmError, uapi
from pmupart.kvm.options import KvmOptions
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_CTRL as CTRL,
)
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_FILTER as FILTER,
)
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_INIT as INIT,
)
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_IRQ as IRQ,
)
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS as SET_NR,
)
from pmupart.kvm.uapi import (
    KVM_ARM_VCPU_PMU_V3_SET_PMU as SET_PMU,
)
from pmupart.kvm.uapi import KvmPmuEventFilter as Filt

PART = 5  # KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION (series v6-v9, not upstream)
ALLOW, DENY = uapi.KVM_PMU_EVENT_ALLOW, uapi.KVM_PMU_EVENT_DENY
PPI = 23


def hetero(reserved: int = -1, **kw: Any) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [
        {"core": "cortex-a720", "count": 2}, {"core": "cortex-a520", "count": 2}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved, **kw)


def homo(core: str = "cortex-a720", reserved: int = -1, n: int = 2, **kw: Any) -> Machine:
    topo = Topology.from_mapping({"name": "t", "cluster": [{"core": core, "count": n}]})
    return Machine.from_topology(topo, reserved_host_counters=reserved, **kw)


def err(fn: Callable[..., object], *args: Any) -> int:
    with pytest.raises(KvmError) as ei:
        fn(*args)
    assert isinstance(ei.value, OSError)
    return ei.value.errno


def init(vcpu: Any, irq: int = PPI) -> None:
    vcpu.set_device_attr(CTRL, IRQ, irq)
    vcpu.set_device_attr(CTRL, INIT, None)


def idle(cpu: Any) -> None:
    cpu.count({"CPU_CYCLES": 100})


def pmcr_n(vcpu: Any, cpu: int = 0) -> int:
    seen: list[int] = []
    vcpu.run(lambda g: seen.append(((g.read("PMCR_EL0").value or 0) >> 11) & 0x1F), cpu=cpu)
    return seen[0]


# ---------------------------------------------------------------- capability, has_attr
def test_cap_arm_pmu_v3() -> None:
    assert homo().kvm.check_extension(uapi.KVM_CAP_ARM_PMU_V3) == 1


def test_has_attr_with_and_without_pmu() -> None:
    m = homo()
    vm = m.kvm.create_vm()
    v = vm.create_vcpu()
    for a in (IRQ, INIT, FILTER, SET_PMU, SET_NR):
        v.has_device_attr(CTRL, a)  # 0: does not raise
    assert err(v.has_device_attr, CTRL, 99) == errno.ENXIO
    assert err(v.has_device_attr, uapi.KVM_ARM_VCPU_TIMER_CTRL + 40, IRQ) == errno.ENXIO
    nopmu = vm.create_vcpu(pmu=False)
    for a in (IRQ, INIT, FILTER, SET_PMU, SET_NR):
        assert err(nopmu.has_device_attr, CTRL, a) == errno.ENXIO


def test_has_attr_enable_partition_on_partitioned_host() -> None:
    v = homo(reserved=2).kvm.create_vm().create_vcpu()
    v.has_device_attr(CTRL, PART)


# ---------------------------------------------------------------- common checks
def test_enodev_without_pmu_feature_for_every_attr() -> None:
    vm = homo(reserved=2).kvm.create_vm()
    v = vm.create_vcpu(pmu=False)
    for a, val in ((IRQ, PPI), (INIT, None), (FILTER, Filt(0, 1, ALLOW)), (SET_PMU, 8),
                   (SET_NR, 1), (PART, 1), (99, 0)):
        assert err(v.set_device_attr, CTRL, a, val) == errno.ENODEV, a


def test_ebusy_after_init_for_every_attr() -> None:
    m = homo(reserved=2)
    v = m.kvm.create_vm().create_vcpu()
    init(v)
    typ = m.host.pmus[0].type
    for a, val in ((IRQ, PPI), (INIT, None), (FILTER, Filt(0, 1, ALLOW)), (SET_PMU, typ),
                   (SET_NR, 1), (PART, 1), (99, 0)):
        assert err(v.set_device_attr, CTRL, a, val) == errno.EBUSY, a


def test_enxio_unknown_attr_and_group() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, 99, 0) == errno.ENXIO
    # ENABLE_PARTITION is not known when its number is moved elsewhere
    assert err(v.set_device_attr, 42, IRQ, PPI) == errno.ENXIO
    assert err(v.get_device_attr, 42, IRQ) == errno.ENXIO
    assert err(v.get_device_attr, CTRL, INIT) == errno.ENXIO


# ---------------------------------------------------------------- IRQ
def test_irq_needs_in_kernel_irqchip() -> None:
    v = homo().kvm.create_vm(irqchip=False).create_vcpu()
    assert err(v.set_device_attr, CTRL, IRQ, PPI) == errno.EINVAL
    # the irqchip check comes before reading the value
    assert err(v.set_device_attr, CTRL, IRQ, "23") == errno.EINVAL


@pytest.mark.parametrize("irq", [0, 15, 1020, 4096, -1])
def test_irq_not_ppi_or_spi(irq: int) -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, IRQ, irq) == errno.EINVAL


@pytest.mark.parametrize("irq", [16, 23, 31, 32, 1019])
def test_irq_valid_ppi_and_spi(irq: int) -> None:
    v = homo().kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, IRQ, irq)
    assert v.get_device_attr(CTRL, IRQ) == irq


def test_irq_efault_unreadable() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, IRQ, "23") == errno.EFAULT
    assert err(v.set_device_attr, CTRL, IRQ, None) == errno.EFAULT


def test_irq_ppi_must_match_across_vcpus() -> None:
    vm = homo().kvm.create_vm()
    a, b, c = vm.create_vcpu(), vm.create_vcpu(), vm.create_vcpu()
    a.set_device_attr(CTRL, IRQ, 23)
    assert err(b.set_device_attr, CTRL, IRQ, 22) == errno.EINVAL
    b.set_device_attr(CTRL, IRQ, 23)
    c.set_device_attr(CTRL, IRQ, 23)


def test_irq_spi_must_differ_across_vcpus() -> None:
    vm = homo().kvm.create_vm()
    a, b = vm.create_vcpu(), vm.create_vcpu()
    a.set_device_attr(CTRL, IRQ, 40)
    assert err(b.set_device_attr, CTRL, IRQ, 40) == errno.EINVAL
    assert err(b.set_device_attr, CTRL, IRQ, 23) == errno.EINVAL  # PPI vs another's SPI
    b.set_device_attr(CTRL, IRQ, 41)


def test_irq_already_set_ebusy() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, IRQ, PPI)
    assert err(v.set_device_attr, CTRL, IRQ, PPI) == errno.EBUSY


def test_irq_reset_on_same_vcpu_is_validated_first() -> None:
    # pmu_irq_is_valid walks every vCPU, this one included, before the -EBUSY check
    # (kvm_arm_pmu_v3_set_attr): a different PPI, or the same SPI, is -EINVAL.
    vm = homo().kvm.create_vm()
    v = vm.create_vcpu()
    v.set_device_attr(CTRL, IRQ, 23)
    assert err(v.set_device_attr, CTRL, IRQ, 22) == errno.EINVAL
    w = vm.create_vcpu()
    vm2 = homo().kvm.create_vm()
    s = vm2.create_vcpu()
    s.set_device_attr(CTRL, IRQ, 40)
    assert err(s.set_device_attr, CTRL, IRQ, 40) == errno.EINVAL
    assert err(s.set_device_attr, CTRL, IRQ, 41) == errno.EBUSY
    del w


def test_get_irq_errnos() -> None:
    m = homo()
    v = m.kvm.create_vm(irqchip=False).create_vcpu()
    assert err(v.get_device_attr, CTRL, IRQ) == errno.EINVAL
    vm = m.kvm.create_vm()
    assert err(vm.create_vcpu(pmu=False).get_device_attr, CTRL, IRQ) == errno.ENODEV
    w = vm.create_vcpu()
    assert err(w.get_device_attr, CTRL, IRQ) == errno.ENXIO
    w.set_device_attr(CTRL, IRQ, PPI)
    assert w.get_device_attr(CTRL, IRQ) == PPI


# ---------------------------------------------------------------- INIT
def test_init_needs_irq_with_irqchip() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, INIT, None) == errno.ENXIO


def test_init_needs_initialised_vgic() -> None:
    vm = homo().kvm.create_vm()
    vm.vgic_initialized = False  # vGIC created but not yet KVM_DEV_ARM_VGIC_CTRL_INIT
    v = vm.create_vcpu()
    v.set_device_attr(CTRL, IRQ, PPI)
    assert err(v.set_device_attr, CTRL, INIT, None) == errno.ENODEV


def test_init_without_irqchip_needs_no_irq() -> None:
    v = homo().kvm.create_vm(irqchip=False).create_vcpu()
    v.set_device_attr(CTRL, INIT, None)
    assert v.run(idle, cpu=0).reason == uapi.KVM_EXIT_SYSTEM_EVENT


# ---------------------------------------------------------------- FILTER
def test_filter_efault() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, FILTER, (0, 1, ALLOW)) == errno.EFAULT


def test_filter_range_16bit_on_pmuv3p1_plus() -> None:
    v = homo().kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, FILTER, Filt(0xFFFF, 1, ALLOW))  # ends exactly at 2^16
    v.set_device_attr(CTRL, FILTER, Filt(0, 0x10000, DENY))
    assert err(v.set_device_attr, CTRL, FILTER, Filt(0xFFFF, 2, ALLOW)) == errno.EINVAL


def test_filter_range_10bit_on_pmuv3_host() -> None:
    v = homo("cortex-a72").kvm.create_vm().create_vcpu()  # PMUv3 (v8.0)
    v.set_device_attr(CTRL, FILTER, Filt(0x3FF, 1, ALLOW))
    assert err(v.set_device_attr, CTRL, FILTER, Filt(0x3FF, 2, ALLOW)) == errno.EINVAL
    assert err(v.set_device_attr, CTRL, FILTER, Filt(0x400, 1, DENY)) == errno.EINVAL


@pytest.mark.parametrize("action", [2, 255, -1])
def test_filter_bad_action(action: int) -> None:
    v = homo().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, FILTER, Filt(0x11, 1, action)) == errno.EINVAL


def test_filter_ebusy_after_vm_ran() -> None:
    vm = homo().kvm.create_vm()
    a, b = vm.create_vcpu(), vm.create_vcpu()
    init(a)
    a.run(idle, cpu=0)
    assert err(b.set_device_attr, CTRL, FILTER, Filt(0x11, 1, ALLOW)) == errno.EBUSY
    # range/action are checked before the has-run check
    assert err(b.set_device_attr, CTRL, FILTER, Filt(0x11, 1, 7)) == errno.EINVAL


def _pmceid(vcpu: Any) -> tuple[int, int]:
    out: list[int] = []

    def prog(g: Any) -> None:
        out.append(g.read("PMCEID0_EL0").value or 0)
        out.append(g.read("PMCEID1_EL0").value or 0)
    vcpu.run(prog, cpu=0)
    return out[0], out[1]


def test_filter_first_allow_means_default_deny() -> None:
    vm = homo().kvm.create_vm()
    v = vm.create_vcpu()
    v.set_device_attr(CTRL, FILTER, Filt(0x11, 1, ALLOW))
    v.set_device_attr(CTRL, FILTER, Filt(0x08, 1, ALLOW))
    init(v)
    p0, p1 = _pmceid(v)
    assert p0 & ~0x40000001 == (1 << 0x11) | (1 << 0x08)  # SW_INCR/CHAIN bits not asserted
    assert p1 == 0


def test_filter_first_deny_means_default_allow() -> None:
    m = homo()
    vm = m.kvm.create_vm()
    v = vm.create_vcpu()
    ref = m.kvm.create_vm().create_vcpu()
    init(ref)
    r0, r1 = _pmceid(ref)
    assert r0 & (1 << 0x08) and r0 & (1 << 0x11)
    v.set_device_attr(CTRL, FILTER, Filt(0x08, 1, DENY))
    v.set_device_attr(CTRL, FILTER, Filt(0x20, 0x20, DENY))
    v.set_device_attr(CTRL, FILTER, Filt(0x24, 1, ALLOW))
    init(v)
    p0, p1 = _pmceid(v)
    assert p0 == r0 & ~(1 << 0x08)
    assert p1 == r1 & (1 << 4)


# ---------------------------------------------------------------- SET_PMU
def test_set_pmu_unknown_type_enxio_and_efault() -> None:
    v = hetero().kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, SET_PMU, 12345) == errno.ENXIO
    assert err(v.set_device_attr, CTRL, SET_PMU, "8") == errno.EFAULT


def test_set_pmu_ebusy_after_run() -> None:
    m = hetero()
    vm = m.kvm.create_vm()
    a, b = vm.create_vcpu(), vm.create_vcpu()
    init(a)
    a.run(idle, cpu=0)
    assert err(b.set_device_attr, CTRL, SET_PMU, m.host.pmus[0].type) == errno.EBUSY


def test_set_pmu_ebusy_with_filter_for_other_pmu() -> None:
    m = hetero()
    big, little = m.host.pmus
    v = m.kvm.create_vm().create_vcpu()  # default PMU: CPU 0's (big)
    v.set_device_attr(CTRL, FILTER, Filt(0x11, 1, ALLOW))
    v.set_device_attr(CTRL, SET_PMU, big.type)  # same PMU: fine
    assert err(v.set_device_attr, CTRL, SET_PMU, little.type) == errno.EBUSY
    # unknown type is -ENXIO even then
    assert err(v.set_device_attr, CTRL, SET_PMU, 12345) == errno.ENXIO


def test_set_pmu_resets_counter_count() -> None:
    m = hetero()
    big = m.host.pmus[0]
    v = m.kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, SET_NR, 2)
    v.set_device_attr(CTRL, SET_PMU, big.type)  # cancels SET_NR_COUNTERS
    init(v)
    assert pmcr_n(v) == big.num_counters


def test_set_pmu_then_nr_counters_sticks() -> None:
    m = hetero()
    v = m.kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, SET_PMU, m.host.pmus[1].type)
    v.set_device_attr(CTRL, SET_NR, 3)
    init(v)
    assert pmcr_n(v, cpu=2) == 3


# ---------------------------------------------------------------- SET_NR_COUNTERS
def test_set_nr_counters_bounds() -> None:
    m = homo()
    n = m.host.pmus[0].num_counters
    v = m.kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, SET_NR, n + 1) == errno.EINVAL
    assert err(v.set_device_attr, CTRL, SET_NR, 31) == errno.EINVAL
    assert err(v.set_device_attr, CTRL, SET_NR, -1) == errno.EINVAL  # an unsigned int
    assert err(v.set_device_attr, CTRL, SET_NR, "2") == errno.EFAULT
    v.set_device_attr(CTRL, SET_NR, n)
    v.set_device_attr(CTRL, SET_NR, 0)


def test_set_nr_counters_without_set_pmu_uses_default_pmu() -> None:
    # Doc vs code: the doc asks for SET_PMU first, the code only needs arm_pmu, which
    # kvm_setup_vcpu installs (spec kvm-partitioning §4.1).  Code wins.
    v = homo().kvm.create_vm().create_vcpu()
    v.set_device_attr(CTRL, SET_NR, 1)
    init(v)
    assert pmcr_n(v) == 1


def test_set_nr_counters_bound_is_max_guest_counters_when_partitioned() -> None:
    m = homo(reserved=2)
    v = m.kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, SET_NR, 5) == errno.EINVAL
    v.set_device_attr(CTRL, SET_NR, 4)


# ---------------------------------------------------------------- ENABLE_PARTITION
def test_enable_partition_eperm_when_host_not_partitioned() -> None:
    v = homo(reserved=-1).kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, PART, 1) == errno.EPERM


def test_enable_partition_efault_before_eperm() -> None:
    v = homo(reserved=-1).kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, PART, "1") == errno.EFAULT


def test_enable_partition_ebusy_after_run() -> None:
    vm = homo(reserved=2).kvm.create_vm()
    a, b = vm.create_vcpu(), vm.create_vcpu()
    init(a)
    a.run(idle, cpu=0)
    assert err(b.set_device_attr, CTRL, PART, 1) == errno.EBUSY


def test_enable_partition_number_configurable() -> None:
    m = homo(reserved=2, kvm_options=KvmOptions(enable_partition_attr=7))
    v = m.kvm.create_vm().create_vcpu()
    assert err(v.set_device_attr, CTRL, PART, 1) == errno.ENXIO
    v.set_device_attr(CTRL, 7, 1)
    v.has_device_attr(CTRL, 7)
    init(v)
    assert v.backend is not None and v.backend.value == "partitioned"


def test_enable_partition_selects_backend() -> None:
    """Intent: a per-vCPU request fixed at INIT, so backends can mix within a VM."""
    vm = homo(reserved=2, revision="intent").kvm.create_vm()
    a, b = vm.create_vcpu(), vm.create_vcpu()
    a.set_device_attr(CTRL, PART, 1)
    init(a)
    init(b)
    assert a.backend is not None and a.backend.value == "partitioned"
    assert b.backend is not None and b.backend.value == "emulated"


def test_enable_partition_is_vm_wide_in_v8() -> None:
    """v8 18/21 kvm_pmu_partition_enable: one VM-wide flag; a vCPU initialised before another
    vCPU sets it changes backend with it, and clearing it changes them all back."""
    vm = homo(reserved=2, revision="v8").kvm.create_vm()
    a, b, c = vm.create_vcpu(), vm.create_vcpu(), vm.create_vcpu()
    init(a)
    assert a.backend is not None and a.backend.value == "emulated"
    b.set_device_attr(CTRL, PART, 1)
    init(b)
    init_c = vm.create_vcpu()
    assert all(v.partition_requested for v in (a, b, c, init_c))
    assert a.backend.value == "partitioned" and b.backend is not None \
        and b.backend.value == "partitioned"
    c.set_device_attr(CTRL, PART, 0)
    assert a.backend.value == "emulated" and b.backend.value == "emulated"


def test_run_without_pmu_init_is_einval() -> None:
    """kvm_arm_pmu_v3_enable on the first KVM_RUN: a vCPU with the PMU feature whose PMU was
    never initialised fails with -EINVAL, with or without an in-kernel irqchip."""
    import errno as _errno

    from pmupart import Machine
    from pmupart.kvm import KvmError as _KvmError

    for irqchip in (True, False):
        m = Machine.from_preset("rk3399")
        vcpu = m.kvm.create_vm(irqchip=irqchip).create_vcpu(pmu=True)
        with pytest.raises(_KvmError) as ei:
            vcpu.run(lambda cpu: None, cpu=0)
        assert ei.value.errno == _errno.EINVAL
