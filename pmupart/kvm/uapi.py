"""KVM UAPI names and numbers, as the kernel spells them (spec kvm-partitioning §4.1, §2.11).

Upstream values come from ``arch/arm64/include/uapi/asm/kvm.h`` and ``include/uapi/linux/kvm.h``
(as synced into VMMs' headers).  ``KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION`` is the partitioning
series' (v6-v9) and is NOT upstream: its number (5) clashes with the multi-host-PMU series'
``KVM_ARM_VCPU_PMU_V3_FIXED_COUNTERS_ONLY``, so a machine can be built with another value
(``Machine(..., enable_partition_attr=N)``).
"""

from __future__ import annotations

from dataclasses import dataclass

# vCPU device attribute group and attributes (arch/arm64/include/uapi/asm/kvm.h)
KVM_ARM_VCPU_PMU_V3_CTRL = 0
KVM_ARM_VCPU_PMU_V3_IRQ = 0
KVM_ARM_VCPU_PMU_V3_INIT = 1
KVM_ARM_VCPU_PMU_V3_FILTER = 2
KVM_ARM_VCPU_PMU_V3_SET_PMU = 3
KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS = 4
#: Partitioning series v6-v9 only; configurable per machine (see module docstring).
KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION = 5

# Other vCPU attribute groups (for the -ENXIO "unknown group" rule)
KVM_ARM_VCPU_TIMER_CTRL = 1
KVM_ARM_VCPU_PVTIME_CTRL = 2

# Event filter actions (struct kvm_pmu_event_filter)
KVM_PMU_EVENT_ALLOW = 0
KVM_PMU_EVENT_DENY = 1

# vCPU feature bits for KVM_ARM_VCPU_INIT
KVM_ARM_VCPU_PMU_V3 = 3
#: mainline 7.3 (kvm-arm64/pmu-7.3): no default PMU; not in the series v8's base
KVM_ARM_VCPU_PMU_V3_STRICT = 9

# Capability (include/uapi/linux/kvm.h)
KVM_CAP_ARM_PMU_V3 = 126

# Exit reasons (include/uapi/linux/kvm.h)
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_INTR = 10
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_SYSTEM_EVENT = 24
KVM_SYSTEM_EVENT_SHUTDOWN = 1
#: arm64: fail_entry.hardware_entry_failure_reason when the CPU is outside the VM's PMU
KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED = 1 << 0

# kvm_run.s.regs.device_irq_level bits (userspace irqchip)
KVM_ARM_DEV_EL1_VTIMER = 1 << 0
KVM_ARM_DEV_EL1_PTIMER = 1 << 1
KVM_ARM_DEV_PMU = 1 << 2

#: The PMU overflow interrupt VMMs wire (QEMU, crosvm, cloud-hypervisor): PPI 7 = INTID 23.
PMU_PPI_INTID = 23


@dataclass(frozen=True, slots=True)
class KvmPmuEventFilter:
    """``struct kvm_pmu_event_filter { __u16 base_event; __u16 nevents; __u8 action; }``."""

    base_event: int
    nevents: int
    action: int


@dataclass(frozen=True, slots=True)
class FailEntry:
    """``kvm_run.fail_entry``."""

    hardware_entry_failure_reason: int
    cpu: int


@dataclass(frozen=True, slots=True)
class KvmExit:
    """What ``KVM_RUN`` returned: ``reason`` is a ``KVM_EXIT_*`` number."""

    reason: int
    fail_entry: FailEntry | None = None
    system_event_type: int | None = None
    device_irq_level: int = 0

    @property
    def reason_name(self) -> str:
        for k, v in globals().items():
            if k.startswith("KVM_EXIT_") and v == self.reason and "FAIL_ENTRY_" not in k:
                return k
        return str(self.reason)
