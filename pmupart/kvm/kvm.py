"""KVM's VM and vCPU objects and the PMU device-attribute UAPI.

Models the UAPI half of ``arch/arm64/kvm/pmu-emul.c`` (``kvm_arm_pmu_v3_set_attr``,
``_get_attr``, ``_has_attr``, ``kvm_arm_set_pmu``, ``kvm_arm_set_nr_counters``), the
series' ``KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION`` (v6-v9), and ``KVM_RUN`` on a physical CPU
(``arch/arm64/kvm/arm.c``: load, the ``ON_UNSUPPORTED_CPU`` check, run, put).  The errno rules
follow the table in spec style-and-ecosystem §2.6 / kvm-partitioning §4.1; where the kernel's
documentation and code disagree, the code is followed and the comment says so.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pmupart.arch.features import PMUVer
from pmupart.errors import PmupartError
from pmupart.host.perf_event import Task
from pmupart.kvm import uapi
from pmupart.kvm.idregs import guest_pmuv3_supported
from pmupart.kvm.options import Backend, KvmCosts
from pmupart.kvm.revision import (
    IrqDemux,
    MixedPmuver,
    PartitionAttr,
    PartitionSupport,
    PmuStrict,
    Revision,
)

if TYPE_CHECKING:
    from pmupart.host.arm_pmuv3 import ArmPmu
    from pmupart.host.kernel import HostKernel
    from pmupart.kvm.vcpu_pmu import VcpuPmu


class KvmError(PmupartError, OSError):
    """A KVM ioctl failed: ``.errno`` is the kernel's errno, ``.ioctl`` and ``.attr`` say which."""

    def __init__(self, err: int, ioctl: str, attr: str = "", detail: str = "") -> None:
        name = errno.errorcode.get(err, str(err))
        msg = f"{ioctl}({attr}): -{name}" + (f": {detail}" if detail else "")
        OSError.__init__(self, err, msg)
        self.errno = err
        self.ioctl = ioctl
        self.attr = attr
        self.detail = detail

    def __str__(self) -> str:
        return self.args[1] if len(self.args) > 1 else super().__str__()


_ATTR_NAMES = {
    uapi.KVM_ARM_VCPU_PMU_V3_IRQ: "KVM_ARM_VCPU_PMU_V3_IRQ",
    uapi.KVM_ARM_VCPU_PMU_V3_INIT: "KVM_ARM_VCPU_PMU_V3_INIT",
    uapi.KVM_ARM_VCPU_PMU_V3_FILTER: "KVM_ARM_VCPU_PMU_V3_FILTER",
    uapi.KVM_ARM_VCPU_PMU_V3_SET_PMU: "KVM_ARM_VCPU_PMU_V3_SET_PMU",
    uapi.KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS: "KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS",
}


@dataclass
class VcpuStats:
    """What one vCPU cost (``vcpu.stats``)."""

    exits: Counter[str] = field(default_factory=Counter)  #: by reason
    traps: Counter[str] = field(default_factory=Counter)  #: by register
    exit_ns: Counter[str] = field(default_factory=Counter)  #: EL2 time by exit reason
    trap_ns: Counter[str] = field(default_factory=Counter)  #: EL2 time by register
    el2_cycles: int = 0
    perf_events_created: int = 0
    perf_events_released: int = 0
    irqs_injected: int = 0
    loads: int = 0
    puts: int = 0
    regs_swapped: int = 0
    fail_entries: int = 0
    #: guest kernel perf work besides register accesses, by kind: calls and EL1 cycles
    guest_work: Counter[str] = field(default_factory=Counter)
    guest_work_cycles: Counter[str] = field(default_factory=Counter)
    guest_work_ns: Counter[str] = field(default_factory=Counter)  #: at the CPU's clock


class Kvm:
    """``/dev/kvm``: creates VMs on a host (``m.kvm``)."""

    def __init__(self, host: HostKernel, options: Revision | None = None,
                 costs: KvmCosts | None = None) -> None:
        self.host = host
        self.options = options or Revision()
        self.costs = costs or KvmCosts()
        self.vms: list[VM] = []
        running = self.options.irq_demux is IrqDemux.RUNNING_VCPU
        for pmu in host.pmus:
            pmu.guest_irq_handler = self._guest_irq
            # v8 16/21: the driver hands every guest-range bit of a partitioned PMU to KVM
            pmu.guest_irq_whole_guest_range = running

    @property
    def revision(self) -> Revision:
        """The kernel revision this KVM models (:mod:`pmupart.kvm.revision`); ``options`` is
        its older name."""
        return self.options

    def check_extension(self, cap: int) -> int:
        """``KVM_CHECK_EXTENSION``: KVM_CAP_ARM_PMU_V3 is 1 when a host PMU is registered."""
        if cap == uapi.KVM_CAP_ARM_PMU_V3:
            return 1 if self.host.pmus else 0
        return 0

    def create_vm(self, irqchip: bool = True, name: str | None = None) -> VM:
        """A VM; with ``irqchip`` its in-kernel vGICv3 is created and initialised (as a VMM
        does before it initialises the vCPU PMU)."""
        vm = VM(self, irqchip, name or f"vm{len(self.vms)}")
        self.vms.append(vm)
        return vm

    def _guest_irq(self, cpu: int, bits: int) -> None:
        """``kvm_pmu_handle_guest_irq``.  Intent: overflow bits of a loaded partitioned
        vCPU's counters go to its virtual PMOVSSET.  v8 16/21 as posted: the driver already
        cleared them in hardware; they are ORed into ``kvm_get_running_vcpu()``'s virtual
        PMOVSSET whatever that vCPU's backend or ownership (an emulated vCPU included)."""
        vcpu = self.host.cpus[cpu].loaded_vcpu
        if not isinstance(vcpu, VCPU) or vcpu.pmu is None:
            return
        self.host.emit("guest_overflow", cpu=cpu, vcpu=vcpu.name, bits=bits)
        if self.options.irq_demux is IrqDemux.RUNNING_VCPU:
            vcpu.pmu.ovs |= bits
        else:
            vcpu.pmu.handle_guest_irq(cpu, bits)


class VM:
    """A VM: its PMU selection (``kvm->arch.arm_pmu``), counter count, event filter."""

    def __init__(self, kvm: Kvm, irqchip: bool, name: str) -> None:
        self.kvm = kvm
        self.name = name
        self.irqchip = irqchip
        self.vgic_initialized = irqchip
        self.vcpus: list[VCPU] = []
        self.arm_pmu: ArmPmu | None = None
        self.pmu_explicit = False  #: chosen with SET_PMU (narrows supported_cpus)
        self.supported_cpus: frozenset[int] = frozenset(range(len(kvm.host.cpus)))
        self.nr_pmu_counters = 0
        self.pmu_filter: set[int] | None = None  #: allowed events; None = no filter
        self.has_run = False
        self.ppi: int | None = None
        #: KVM_ARCH_FLAG_PARTITION_PMU_ENABLED (v8 18/21: VM-wide)
        self.partition_enabled = False
        #: SPIs the in-kernel vGIC has (``vgic_valid_spi``: 32 <= intid < 32 + nr_spis); a
        #: VMM sets it with KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 256 is the model's default
        self.vgic_nr_spis = 256
        #: ``kvm->arch.pmmir_slots``: PMMIR_EL1.SLOTS shown to the guest, snapshot by SET_PMU
        #: for a KVM_ARM_VCPU_PMU_V3_STRICT vCPU (``kvm_arm_pmu_v3_set_pmu``), else 0
        self.pmmir_slots = 0

    def create_vcpu(self, pmu: bool = True, init_cpu: int = 0, strict: bool = False) -> VCPU:
        """``KVM_CREATE_VCPU`` + ``KVM_ARM_VCPU_INIT`` with the PMUv3 feature if ``pmu``, the
        VMM thread running on physical CPU ``init_cpu``.

        ``kvm_vcpu_init_check_features`` refuses the PMUv3 feature when no host PMU
        registered (``system_supported_vcpu_features`` clears it without
        ``kvm_supports_guest_pmuv3()``): -EINVAL.  Then ``kvm_setup_vcpu`` gives a PMU vCPU a
        default PMU when the VM has none yet: the PMU of the CPU doing the init
        (``kvm_arm_set_default_pmu`` → ``kvm_pmu_probe_armpmu``, -ENODEV when no PMU covers
        that CPU), with ``supported_cpus`` left unrestricted (kernel-code-deltas §3.11, §5.11).

        ``strict`` adds the feature KVM_ARM_VCPU_PMU_V3_STRICT (bit 9, mainline 7.3,
        kernel-code-deltas §3.13): where the revision lacks it the bit is unknown (-ENOENT); it
        needs the PMUv3 feature (-EINVAL); such a vCPU gets no default PMU (``kvm_setup_vcpu``),
        so the VMM must SET_PMU before the first run."""
        host = self.kvm.host
        if not 0 <= init_cpu < len(host.cpus):
            raise ValueError(f"init_cpu must be a physical CPU 0..{len(host.cpus) - 1}, "
                             f"not {init_cpu}")
        if strict and self.kvm.revision.pmu_strict is PmuStrict.ABSENT:
            # kvm_vcpu_init_check_features: a bit at or past KVM_VCPU_MAX_FEATURES (9 before
            # the STRICT patch) is refused with -ENOENT, before any support check
            raise KvmError(errno.ENOENT, "KVM_ARM_VCPU_INIT", "KVM_ARM_VCPU_PMU_V3_STRICT",
                           f"unknown vCPU feature bit 9 in revision {self.kvm.revision.name}")
        if strict and not pmu:
            # kvm_vcpu_init_check_features: "Strict PMUv3 UAPI requires PMUv3"
            raise KvmError(errno.EINVAL, "KVM_ARM_VCPU_INIT", "KVM_ARM_VCPU_PMU_V3_STRICT",
                           "needs the KVM_ARM_VCPU_PMU_V3 feature too")
        if pmu and not host.pmus:
            raise KvmError(errno.EINVAL, "KVM_ARM_VCPU_INIT", "KVM_ARM_VCPU_PMU_V3",
                           "no host PMU: the PMUv3 vCPU feature is unsupported")
        if pmu and not guest_pmuv3_supported(host) \
                and self.kvm.revision.mixed_pmuver is MixedPmuver.NO_GUEST_PMU:
            raise KvmError(errno.EINVAL, "KVM_ARM_VCPU_INIT", "KVM_ARM_VCPU_PMU_V3",
                           "the host's CPUs differ in PMUVer (sanitised to 0): "
                           "kvm_host_pmu_init registered no PMU for guests "
                           "(kvm.mixed_pmuver = \"vm-pmu\" for the what-if)")
        default = None
        # kvm_setup_vcpu: no default PMU for a KVM_ARM_VCPU_PMU_V3_STRICT vCPU
        if pmu and self.arm_pmu is None and not strict:
            default = next((p for p in host.pmus if init_cpu in p.cpus), None)
            if default is None:
                raise KvmError(errno.ENODEV, "KVM_ARM_VCPU_INIT", "KVM_ARM_VCPU_PMU_V3",
                               f"no host PMU covers cpu{init_cpu}, where the VMM runs the init")
        v = VCPU(self, len(self.vcpus), pmu)
        v.pmu_strict = strict
        self.vcpus.append(v)
        if default is not None:
            self._set_pmu(default, explicit=False)
        if pmu and self.partition_enabled:
            v.partition_requested = True
        return v

    # ------------------------------------------------------------------ helpers
    def _set_pmu(self, pmu: ArmPmu, explicit: bool) -> None:
        """``kvm_arm_set_pmu``: select the PMU, copy its CPUs (only for an explicit choice),
        and reset the counter count to the maximum (cancelling an earlier SET_NR_COUNTERS)."""
        self.arm_pmu = pmu
        self.pmu_explicit = explicit
        if explicit:
            self.supported_cpus = frozenset(pmu.cpus)
        self.nr_pmu_counters = self.max_counters()

    def max_counters(self) -> int:
        """``kvm_arm_pmu_get_max_counters``: the PMU's general counters, or, when its PMU is
        partitioned, ``max_guest_counters`` (series v8 10/21, as posted)."""
        pmu = self.arm_pmu
        if pmu is None:
            return 0
        if pmu.partitioned:
            return pmu.max_guest_counters
        return pmu.num_counters

    def guest_pmuver(self) -> PMUVer:
        """``kvm_arm_pmu_get_pmuver_limit``: the *system-sanitised* PMUVer capped at PMUv3p5,
        whatever the VM's PMU (spec kernel-code-deltas §3.6; :mod:`pmupart.kvm.idregs`)."""
        from pmupart.kvm.idregs import kvm_arm_pmu_get_pmuver_limit
        v = kvm_arm_pmu_get_pmuver_limit(self.kvm.host)
        if v:
            return PMUVer(v)
        # CPUs that differ in PMUVer sanitise to 0: mainline offers no guest PMU there (the
        # vCPU is refused at init); the what-if choice mixed_pmuver = vm-pmu takes the VM
        # PMU's version, capped.
        pmu = self.arm_pmu
        return min(pmu.core.pmuver, PMUVer.V3P5) if pmu is not None else PMUVer.V3

    def event_allowed(self, ev: int) -> bool:
        """The filter test: SW_INCR is never filtered, CHAIN filtering has no effect
        (vcpu.rst FILTER)."""
        if self.pmu_filter is None or ev in (0x00, 0x1E):
            return True
        return ev in self.pmu_filter


class VCPU:
    """A vCPU (``struct kvm_vcpu``) with its PMU state."""

    def __init__(self, vm: VM, idx: int, pmu: bool) -> None:
        self.vm = vm
        self.idx = idx
        self.name = f"{vm.name}:vcpu{idx}"
        self.has_pmu_feature = pmu
        #: KVM_ARM_VCPU_PMU_V3_STRICT (``kvm_vcpu_has_pmuv3_strict``)
        self.pmu_strict = False
        self.irq: int | None = None
        self.pmu_created = False  #: after KVM_ARM_VCPU_PMU_V3_INIT
        self.partition_requested = False
        self.pmu: VcpuPmu | None = None
        self.stats = VcpuStats()
        self.cpu: int | None = None  #: loaded on this physical CPU
        self.on_unsupported_cpu = False
        self.task = Task(self.name, 1000 + 10 * len(vm.kvm.vms) + idx)
        self.last_cpu: int | None = None
        #: the host's PMUSERENR_EL0 saved at load for a vCPU without a PMU backend
        #: (``__activate_traps_common``; a backend saves its own)
        self.host_userenr = 0

    @property
    def backend(self) -> Backend | None:
        if self.pmu is None:
            return None
        return self.pmu.backend

    # ------------------------------------------------------------------ device attributes
    def _partition_attr(self) -> int | None:
        """The ENABLE_PARTITION attribute number, or None where the revision has none
        (upstream: ``kvm_arm_pmu_v3_{has,set}_attr`` fall to their -ENXIO default)."""
        rev = self.vm.kvm.revision
        return rev.enable_partition_attr if rev.partitioning else None

    def _attr_name(self, attr: int) -> str:
        if attr == self._partition_attr():
            return "KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION"
        return _ATTR_NAMES.get(attr, str(attr))

    def has_device_attr(self, group: int, attr: int) -> None:
        """``KVM_HAS_DEVICE_ATTR``: returns if supported, else raises -ENXIO
        (``kvm_arm_pmu_v3_has_attr``: every PMU attr is there when the vCPU has the PMU)."""
        known = set(_ATTR_NAMES)
        pa = self._partition_attr()
        # v8 18/21 kvm_arm_pmu_v3_has_attr: ENABLE_PARTITION returns 0 whenever the vCPU has
        # a PMU (support is checked only at set); the intent reports it only where supported.
        if pa is not None and (self.vm.kvm.revision.partition_attr is PartitionAttr.VM_WIDE
                               or self._partition_supported()):
            known.add(pa)
        if group != uapi.KVM_ARM_VCPU_PMU_V3_CTRL or attr not in known \
                or not self.has_pmu_feature:
            raise KvmError(errno.ENXIO, "KVM_HAS_DEVICE_ATTR", self._attr_name(attr))

    def get_device_attr(self, group: int, attr: int) -> int:
        """``KVM_GET_DEVICE_ATTR``: only IRQ has a value (``kvm_arm_pmu_v3_get_attr``)."""
        name = self._attr_name(attr)
        if group != uapi.KVM_ARM_VCPU_PMU_V3_CTRL:
            raise KvmError(errno.ENXIO, "KVM_GET_DEVICE_ATTR", name, "unknown group")
        if attr == uapi.KVM_ARM_VCPU_PMU_V3_IRQ:
            if not self.vm.irqchip:
                raise KvmError(errno.EINVAL, "KVM_GET_DEVICE_ATTR", name, "no in-kernel irqchip")
            if not self.has_pmu_feature:
                raise KvmError(errno.ENODEV, "KVM_GET_DEVICE_ATTR", name, "vCPU has no PMU")
            if self.irq is None:
                raise KvmError(errno.ENXIO, "KVM_GET_DEVICE_ATTR", name, "IRQ not set")
            return self.irq
        raise KvmError(errno.ENXIO, "KVM_GET_DEVICE_ATTR", name)

    def set_device_attr(self, group: int, attr: int, value: Any) -> None:
        """``KVM_SET_DEVICE_ATTR`` on the PMU group, with the kernel's checks in its order.

        ``value`` is an int (IRQ, SET_PMU, SET_NR_COUNTERS, ENABLE_PARTITION as a 32-bit
        boolean), a :class:`~pmupart.kvm.uapi.KvmPmuEventFilter` (FILTER), or ``None`` for
        INIT.  An unreadable user pointer is modelled by a value of the wrong type (say
        ``None`` for IRQ): -EFAULT, as the kernel's ``get_user``/``copy_from_user`` fails.
        """
        name = self._attr_name(attr)
        ioctl = "KVM_SET_DEVICE_ATTR"
        if group != uapi.KVM_ARM_VCPU_PMU_V3_CTRL:
            raise KvmError(errno.ENXIO, ioctl, name, "unknown attribute group")
        # kvm_arm_pmu_v3_set_attr: -ENODEV without the vCPU feature, -EBUSY after INIT.
        if not self.has_pmu_feature:
            raise KvmError(errno.ENODEV, ioctl, name, "vCPU was not initialised with PMUv3")
        # Mainline's kvm_arm_pmu_v3_set_attr has no arm_pmu check (the default PMU is set at
        # vCPU init); kept for a non-strict vCPU, where it is unreachable.  A STRICT vCPU
        # reaches every attribute without a PMU: IRQ and INIT succeed, FILTER succeeds but
        # then locks SET_PMU out (-EBUSY, a filter for "another" PMU), SET_NR_COUNTERS is
        # -EINVAL, and the first KVM_RUN fails -EINVAL (kvm_arm_pmu_v3_enable).
        if self.vm.arm_pmu is None and not self.pmu_strict:
            raise KvmError(errno.ENODEV, ioctl, name, "no host PMU to default to")
        if self.pmu_created:
            raise KvmError(errno.EBUSY, ioctl, name, "PMU already initialised (INIT done)")
        if attr == uapi.KVM_ARM_VCPU_PMU_V3_IRQ:
            self._set_irq(value, ioctl, name)
        elif attr == uapi.KVM_ARM_VCPU_PMU_V3_FILTER:
            self._set_filter(value, ioctl, name)
        elif attr == uapi.KVM_ARM_VCPU_PMU_V3_SET_PMU:
            self._set_pmu_attr(value, ioctl, name)
        elif attr == uapi.KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS:
            self._set_nr_counters(value, ioctl, name)
        elif attr == uapi.KVM_ARM_VCPU_PMU_V3_INIT:
            self._init(ioctl, name)
        elif attr == self._partition_attr():
            self._enable_partition(value, ioctl, name)
        else:
            raise KvmError(errno.ENXIO, ioctl, name, "unknown attribute")

    @staticmethod
    def _user_int(value: Any, ioctl: str, name: str) -> int:
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int):
            raise KvmError(errno.EFAULT, ioctl, name, f"cannot read an int from {value!r}")
        return value

    def _set_irq(self, value: Any, ioctl: str, name: str) -> None:
        if not self.vm.irqchip:
            raise KvmError(errno.EINVAL, ioctl, name, "no in-kernel irqchip")
        irq = self._user_int(value, ioctl, name)
        # A PPI (16..31) or an SPI (32..1019); PPIs must match across vCPUs, SPIs must differ.
        if not (16 <= irq < 32 or 32 <= irq < 1020):
            raise KvmError(errno.EINVAL, ioctl, name, f"IRQ {irq} is not a PPI or SPI")
        # pmu_irq_is_valid (pmu-emul.c) walks every vCPU with an IRQ, this one included, before
        # the -EBUSY check: re-setting another PPI, or the same SPI, is -EINVAL.
        for other in self.vm.vcpus:
            if other.irq is None:
                continue
            if irq < 32 and other.irq != irq:
                raise KvmError(errno.EINVAL, ioctl, name,
                               f"PPI {irq} differs from {other.name}'s {other.irq}")
            if irq >= 32 and other.irq == irq:
                raise KvmError(errno.EINVAL, ioctl, name, f"SPI {irq} already used by "
                               f"{other.name}")
        if self.irq is not None:
            raise KvmError(errno.EBUSY, ioctl, name, "IRQ already set")
        self.irq = irq

    def _set_filter(self, value: Any, ioctl: str, name: str) -> None:
        if not isinstance(value, uapi.KvmPmuEventFilter):
            raise KvmError(errno.EFAULT, ioctl, name, f"cannot read a filter from {value!r}")
        # Event space from the PMU version limit: 10 bits for PMUv3, 16 from PMUv3p1.
        nr_events = 1 << (16 if self.vm.guest_pmuver() >= PMUVer.V3P1 else 10)
        f = value
        if f.base_event < 0 or f.nevents < 0 or f.base_event + f.nevents > nr_events or \
                f.action not in (uapi.KVM_PMU_EVENT_ALLOW, uapi.KVM_PMU_EVENT_DENY):
            raise KvmError(errno.EINVAL, ioctl, name, f"range {f.base_event:#x}+{f.nevents} "
                           f"outside 0..{nr_events:#x} or bad action {f.action}")
        if self.vm.has_run:
            raise KvmError(errno.EBUSY, ioctl, name, "the VM has already run")
        vm = self.vm
        if vm.pmu_filter is None:
            # The first filter sets the default: ALLOW first = default deny, DENY = allow.
            vm.pmu_filter = set() if f.action == uapi.KVM_PMU_EVENT_ALLOW \
                else set(range(nr_events))
        rng = range(f.base_event, f.base_event + f.nevents)
        if f.action == uapi.KVM_PMU_EVENT_ALLOW:
            vm.pmu_filter.update(rng)
        else:
            vm.pmu_filter.difference_update(rng)

    def _set_pmu_attr(self, value: Any, ioctl: str, name: str) -> None:
        typ = self._user_int(value, ioctl, name)
        pmu = self.vm.kvm.host.pmu_by_type(typ)
        if pmu is None:
            raise KvmError(errno.ENXIO, ioctl, name, f"no host PMU with type {typ}")
        vm = self.vm
        if vm.has_run or (vm.pmu_filter is not None and vm.arm_pmu is not pmu):
            raise KvmError(errno.EBUSY, ioctl, name,
                           "the VM has run, or a filter exists for another PMU"
                           + (" (STRICT: a FILTER set before any SET_PMU)"
                              if vm.arm_pmu is None else ""))
        vm._set_pmu(pmu, explicit=True)
        if self.pmu_strict:
            # kvm_arm_pmu_v3_set_pmu: under STRICT the chosen PMU's PMMIR_EL1.SLOTS is
            # snapshot into kvm->arch.pmmir_slots (the PMMIR the driver probed: reg_pmmir)
            from pmupart.host.sysfs import probed_pmmir
            vm.pmmir_slots = probed_pmmir(pmu.core) & 0xFF

    def _set_nr_counters(self, value: Any, ioctl: str, name: str) -> None:
        n = self._user_int(value, ioctl, name)
        vm = self.vm
        # Code, not doc: the doc says an explicit SET_PMU is needed; kvm_arm_set_nr_counters
        # only checks that arm_pmu is set, and kvm_setup_vcpu installs a default one.
        if vm.arm_pmu is None or not 0 <= n <= vm.max_counters():
            raise KvmError(errno.EINVAL, ioctl, name,
                           f"{n} counters; this PMU allows 0..{vm.max_counters()}")
        vm.nr_pmu_counters = n

    def _init(self, ioctl: str, name: str) -> None:
        if self.vm.irqchip:
            if not self.vm.vgic_initialized:
                raise KvmError(errno.ENODEV, ioctl, name, "vGIC not initialised")
            if self.irq is None:
                raise KvmError(errno.ENXIO, ioctl, name, "PMU IRQ not set")
            # kvm_vgic_set_owner: SGIs/LPIs and SPIs beyond the vGIC cannot be wired (-EINVAL)
            if self.irq >= 32 + self.vm.vgic_nr_spis:
                raise KvmError(errno.EINVAL, ioctl, name, f"SPI {self.irq} beyond the vGIC's "
                               f"{self.vm.vgic_nr_spis} SPIs")
            # kvm_vgic_set_owner: another device already owns this interrupt (-EEXIST)
            if self.irq >= 32 and any(v.irq == self.irq and v.pmu_created
                                      for v in self.vm.vcpus if v is not self):
                raise KvmError(errno.EEXIST, ioctl, name, f"IRQ {self.irq} owned elsewhere")
        self.pmu_created = True
        from pmupart.kvm.vcpu_pmu import make_vcpu_pmu
        self.pmu = make_vcpu_pmu(self)

    def _partition_supported(self) -> bool:
        """``has_kvm_pmu_partition_support``: VHE + PMUv3 and the driver partitioned.  v8
        08/21: a global flag (``armv8pmu_is_partitioned``), set when any host PMU is
        partitioned; the intent asks the VM's own PMU."""
        if self.vm.kvm.revision.partition_support is PartitionSupport.GLOBAL:
            return any(p.partitioned for p in self.vm.kvm.host.pmus)
        pmu = self.vm.arm_pmu
        return pmu is not None and pmu.partitioned

    def _enable_partition(self, value: Any, ioctl: str, name: str) -> None:
        b = self._user_int(value, ioctl, name)
        if not self._partition_supported():
            raise KvmError(errno.EPERM, ioctl, name, "host PMU is not partitioned "
                           "(arm_pmuv3.reserved_host_counters = -1)")
        if self.vm.has_run:
            raise KvmError(errno.EBUSY, ioctl, name, "the VM has already run (v8)")
        on = bool(b & 0xFFFFFFFF)
        vm = self.vm
        if vm.kvm.revision.partition_attr is PartitionAttr.VM_WIDE:
            # v8 18/21 kvm_pmu_partition_enable: the VM-wide flag, read dynamically by every
            # path; a vCPU already initialised changes backend with it.
            vm.partition_enabled = on
            for v in vm.vcpus:
                v.partition_requested = on and v.has_pmu_feature
                if v.pmu is not None and (v.pmu.backend is Backend.PARTITIONED) != on:
                    from pmupart.kvm.vcpu_pmu import make_vcpu_pmu
                    v.pmu = make_vcpu_pmu(v)
        else:
            self.partition_requested = on
        if on:
            vm.nr_pmu_counters = min(vm.nr_pmu_counters, vm.max_counters())

    # ------------------------------------------------------------------ KVM_RUN
    def run(self, program: Callable[[Any], object], cpu: int) -> uapi.KvmExit:
        """``KVM_RUN`` on physical CPU ``cpu``: load, check the CPU, run ``program(guest)``
        until it returns (a PSCI SYSTEM_OFF: ``KVM_EXIT_SYSTEM_EVENT``), put."""
        from pmupart.kvm.run import kvm_arch_vcpu_run
        return kvm_arch_vcpu_run(self, program, cpu)
