"""``KVM_RUN``: vcpu load/put and the guest's view of the CPU.

Models the PMU-relevant parts of ``arch/arm64/kvm/arm.c`` (``kvm_arch_vcpu_load``,
``kvm_arch_vcpu_put``, the ``ON_UNSUPPORTED_CPU`` flag and ``kvm_vcpu_exit_request``),
``arch/arm64/kvm/pmu.c`` (``kvm_vcpu_pmu_restore_guest/host``: the host events' EL0 filter
switch on VHE) and ``kvm_handle_sys_reg`` (a trapped access: an exit to EL2, the
descriptor's handler, the cost).

A guest program is ``program(cpu)``; ``cpu`` is a :class:`GuestCpu` with the same surface as
a bare PE (``read``, ``write``, ``count``, ``el``) plus ``on_pmu_irq(handler)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pmupart.arch.pe import PE, Access, Outcome
from pmupart.arch.sysreg import BY_NAME, RegDef, check_value, lookup
from pmupart.kvm import uapi
from pmupart.kvm.debug import host_mdcr, kvm_arm_setup_mdcr_el2, restore_host_traps
from pmupart.kvm.idregs import guest_id_reg
from pmupart.kvm.options import Backend

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU

_UNDEF = Access(Outcome.UNDEFINED)
_TRAP_EL2 = Outcome.TRAP_EL2
_PARTITIONED = Backend.PARTITIONED
_M64 = (1 << 64) - 1
_CYCLES_EV = 0x11  # CPU_CYCLES
_INST_EV = 0x08  # INST_RETIRED
_HCR_GUEST = 1 << 34  # E2H set, TGE clear while a guest runs (VHE)
_HCR_HOST = (1 << 34) | (1 << 27)
#: Writes that can change the virtual interrupt condition (PMCR.E, PMINTEN, PMOVS, counters).
_IRQ_REGS = frozenset({"PMCR_EL0", "PMINTENSET_EL1", "PMINTENCLR_EL1", "PMOVSSET_EL0",
                       "PMOVSCLR_EL0", "PMCNTENSET_EL0", "PMCNTENCLR_EL0", "PMSWINC_EL0"})
_ID_REGS = frozenset(("ID_AA64DFR0_EL1", "ID_AA64DFR1_EL1", "ID_AA64MMFR0_EL1"))


def kvm_arch_vcpu_load(vcpu: VCPU, cpu: int) -> None:
    """Load ``vcpu`` on physical CPU ``cpu``: the vCPU thread is switched in (its perf events
    with it), the host events' EL0 filter goes to guest mode, the PMU backend loads."""
    vm = vcpu.vm
    host = vm.kvm.host
    if not 0 <= cpu < len(host.cpus):
        raise ValueError(f"cpu must be a physical CPU 0..{len(host.cpus) - 1}, not {cpu}")
    hc = host.cpus[cpu]
    if hc.loaded_vcpu is not None and hc.loaded_vcpu is not vcpu:
        raise ValueError(f"CPU {cpu} already runs {getattr(hc.loaded_vcpu, 'name', '?')}")
    migrated = vcpu.last_cpu is not None and vcpu.last_cpu != cpu
    vcpu.cpu = cpu
    # "Physical CPU not in supported_cpus" (kvm_arch_vcpu_load).
    vcpu.on_unsupported_cpu = cpu not in vm.supported_cpus
    host.switch_task(cpu, vcpu.task)
    hc.loaded_vcpu = vcpu
    hc.party = vm.name
    hc.guest_loaded = True
    pmu = host.pmu_of_cpu(cpu)
    n = pmu.reprogram_el0(cpu, guest_context=True)  # kvm_vcpu_pmu_restore_guest
    vcpu.stats.loads += 1
    vcpu.stats.regs_swapped += n
    # __activate_traps_common (hyp/include/hyp/switch.h, from kvm_vcpu_load_vhe) on a PMUv3
    # system, for every vCPU: PMSELR_EL0 = 0, so that a SEL = 31 left by the host or another
    # vCPU cannot make this guest's PMXEVCNTR_EL0 UNDEFINED at EL1 instead of trapping to EL2
    # (spec kernel-code-deltas §3.10).  The backend's load runs after it (a partitioned
    # vCPU's own PMSELR goes back to hardware there).
    hc.pe.write_el2("PMSELR_EL0", 0)
    if vcpu.pmu is not None:
        vcpu.pmu.load(cpu)
    else:
        # The rest of __activate_traps_common for a vCPU without the PMU feature: save the
        # host's PMUSERENR and open EL0 accesses, so that they reach EL2 (where KVM injects
        # UNDEF) instead of faulting to the guest's EL1; restored at put.
        vcpu.host_userenr = hc.pe.read_el2("PMUSERENR_EL0")
        hc.pe.write_el2("PMUSERENR_EL0", 0xF)
        kvm_arm_setup_mdcr_el2(vcpu, cpu, guest_owned=False)
    host.emit("vcpu_load", cpu=cpu, vcpu=vcpu.name, migrated=migrated)


def kvm_arch_vcpu_put(vcpu: VCPU) -> None:
    """Put ``vcpu`` off its CPU: the backend saves, host traps and EL0 filters come back."""
    cpu = vcpu.cpu
    if cpu is None:
        return
    host = vcpu.vm.kvm.host
    hc = host.cpus[cpu]
    if vcpu.pmu is not None:
        vcpu.pmu.put(cpu)
    else:
        hc.pe.write_el2("PMUSERENR_EL0", vcpu.host_userenr)  # __deactivate_traps_common
    restore_host_traps(vcpu, cpu)
    pmu = host.pmu_of_cpu(cpu)
    hc.guest_loaded = False
    n = pmu.reprogram_el0(cpu, guest_context=False)  # kvm_vcpu_pmu_restore_host
    vcpu.stats.regs_swapped += n
    hc.loaded_vcpu = None
    hc.party = "host"
    host.switch_task(cpu, None)
    vcpu.on_unsupported_cpu = False
    vcpu.last_cpu = cpu
    vcpu.cpu = None
    vcpu.stats.puts += 1
    host.emit("vcpu_put", cpu=cpu, vcpu=vcpu.name)


class GuestCpu:
    """What a guest program sees: a CPU with the PE's register API.

    Accesses go to the physical PE at the guest's EL; those that trap to EL2 exit to KVM,
    which emulates them (and charges the exit).  ``count`` retires guest work on the
    physical CPU.  A PMU interrupt the vCPU's PMU raises is delivered to the handler
    registered with :meth:`on_pmu_irq` (at EL1) when the guest's IRQs are unmasked.
    """

    def __init__(self, vcpu: VCPU, cpu: int) -> None:
        self.vcpu = vcpu
        self.cpu = cpu
        self._el = 1
        self._handler: Callable[[GuestCpu], object] | None = None
        self._in_handler = False
        self.irqs_masked = False  #: PSTATE.I
        #: where :meth:`kernel_work` adds what it retires (the engine's ground truth)
        self.truth: dict[int, int] | None = None
        host = vcpu.vm.kvm.host
        self._host = host
        self._hc = host.cpus[cpu]
        self._pe = self._hc.pe

    @property
    def el(self) -> int:
        return self._el

    @el.setter
    def el(self, value: int) -> None:
        if value not in (0, 1):
            raise ValueError(f"a guest runs at EL0 or EL1, not {value!r}")
        self._el = value

    @property
    def physical_pe(self) -> PE:
        """The physical CPU's PE (the hardware view, for tools such as the AArch64 runner that
        predict where a counter overflows; a guest program itself uses read/write)."""
        return self._pe

    @property
    def pmuirq(self) -> bool:
        """The vCPU's (virtual) PMU interrupt level."""
        return bool(self.vcpu.pmu and self.vcpu.pmu.irq_level)

    def on_pmu_irq(self, handler: Callable[[GuestCpu], object]) -> None:
        """Register ``handler(cpu)`` for the guest's PMU interrupt (PPI the VMM set)."""
        self._handler = handler

    # ------------------------------------------------------------------ accesses
    def read(self, name: str) -> Access:
        return self._access(BY_NAME.get(name) or lookup(name), False, 0)

    def write(self, name: str, value: int) -> Access:
        reg = BY_NAME.get(name) or lookup(name)
        if value.__class__ is not int or not 0 <= value <= _M64:
            check_value(reg, value)
        return self._access(reg, True, value)

    def _access(self, reg: RegDef, write: bool, value: int) -> Access:
        host = self._host
        if self._hc.pending_el2:
            host.flush(self.cpu)  # EL2 work before this access has happened
        if host.listeners:  # the checker compares the hardware around guest accesses
            host.emit("guest_access_begin", cpu=self.cpu, vcpu=self.vcpu.name, reg=reg.name,
                      write=write)
        name = reg.name
        if name in _ID_REGS:
            acc = self._id_reg(reg, write)  # KVM's answer or UNDEF, never a further trap
        else:
            acc = self._pe.access(reg, write, value, self._el)
            if acc.outcome is _TRAP_EL2:
                acc = self._trapped(reg, write, value)
        if host.listeners:
            host.emit("guest_access", cpu=self.cpu, vcpu=self.vcpu.name, reg=name,
                      write=write, value=value, el=self._el, access=acc)
        if write and name in _IRQ_REGS:
            # A direct write may have changed the interrupt condition (PMINTENSET, PMCR.E).
            pmu = self.vcpu.pmu
            if pmu is not None and pmu.backend is _PARTITIONED:
                pmu.sync_irq()  # kvm_pmu_update_state: irq_level = overflow_status()
                if not pmu.irq_level:
                    # No overflow condition: _deliver's overflow_status() would find none
                    # either (nothing changed since; a False answer leaves it stable), and
                    # the level is already low.
                    return acc
            self._deliver()
        return acc

    def _trapped(self, reg: RegDef, write: bool, value: int) -> Access:
        """An access that trapped to EL2: KVM handles it (:meth:`_trap`), and where the
        handler asks for the access to be retried (the lazy flip) it is executed again, at
        most three times in all."""
        hc = self._host.cpus[self.cpu]
        stats = self.vcpu.stats
        pe = self._pe
        for attempt in range(3):
            if attempt:
                acc = pe.access(reg, write, value, self._el)
                if acc.outcome is not _TRAP_EL2:
                    return acc
            t0 = hc.now_ns
            acc = self._trap(reg, write, value)
            dt = hc.now_ns - t0
            stats.trap_ns[reg.name] += dt
            stats.exit_ns["sysreg"] += dt
            if acc.outcome is not _TRAP_EL2:  # RETRY after the lazy flip
                return acc
        return acc

    def _trap(self, reg: RegDef, write: bool, value: int) -> Access:
        """``kvm_handle_sys_reg``: exit to EL2, run the descriptor's handler, charge it."""
        vcpu = self.vcpu
        costs = vcpu.vm.kvm.costs
        vcpu.stats.exits["sysreg"] += 1
        vcpu.stats.traps[reg.name] += 1
        cycles = costs.exit_round_trip + costs.sysreg_handler
        vcpu.stats.el2_cycles += cycles
        host = self._host
        host.charge(self.cpu, cycles, "kvm_sysreg_trap")
        if host.listeners:
            host.emit("trap", cpu=self.cpu, vcpu=vcpu.name, reg=reg.name, write=write)
        if vcpu.pmu is None:
            return _UNDEF  # no PMU feature: KVM injects UNDEF for every PMU register
        return vcpu.pmu.handle_trap(reg, write, value, self._el)

    def _id_reg(self, reg: RegDef, write: bool) -> Access:
        """ID registers trap with HCR_EL2.TID3; KVM returns its sanitised values."""
        if write or self._el == 0:
            return _UNDEF
        self.vcpu.stats.exits["sysreg"] += 1
        self.vcpu.stats.traps[reg.name] += 1
        c = self.vcpu.vm.kvm.costs
        self._host.charge(self.cpu, c.exit_round_trip + c.sysreg_handler, "kvm_sysreg_trap")
        # __kvm_read_sanitised_id_reg: the system-sanitised host value, then KVM's own
        # sanitising (spec kernel-code-deltas §3.7)
        return Access(Outcome.OK, guest_id_reg(self.vcpu, reg.name))

    # ------------------------------------------------------------------ work
    def count(self, events: Mapping[str | int, int]) -> None:
        """Retire guest work at the current EL on the physical CPU."""
        if self._host.listeners:  # ground truth for the checker's ledger
            self._host.emit("guest_retire", cpu=self.cpu, vcpu=self.vcpu.name, el=self._el,
                            events=dict(events), t=self._host.cpus[self.cpu].now_ns)
        self._host.retire(self.cpu, self._el, events, on_irq=self.on_host_irq)
        self._deliver()

    def kernel_work(self, kind: str, cycles: int) -> None:
        """The guest kernel runs ``cycles`` of its own code (IPC 1 assumed) at EL1 for perf:
        retired on the physical CPU like any guest work, counted in ``vcpu.stats`` and told
        to listeners (the Perfetto trace shows it)."""
        st = self.vcpu.stats
        st.guest_work[kind] += 1
        st.guest_work_cycles[kind] += cycles
        st.guest_work_ns[kind] += cycles * 1000 // self._host.cpus[self.cpu].freq_mhz
        if self._host.listeners:
            self._host.emit("guest_work", cpu=self.cpu, vcpu=self.vcpu.name, work=kind,
                            cycles=cycles, t=self._host.cpus[self.cpu].now_ns)
        if cycles <= 0:
            return
        if self.truth is not None:
            for ev in (_CYCLES_EV, _INST_EV):
                self.truth[ev] = self.truth.get(ev, 0) + cycles
        old = self._el
        self._el = 1
        try:
            self.count({_CYCLES_EV: cycles, _INST_EV: cycles})
        finally:
            self._el = old

    def now_ns(self) -> int:
        """The physical CPU's clock (the guest's view of elapsed time)."""
        return self._host.cpus[self.cpu].now_ns

    def _irq_exit(self, reason: str) -> None:
        """A physical interrupt taken while the guest runs: with HCR_EL2.IMO set it is routed
        to EL2, so the vCPU exits (``ARM_EXCEPTION_IRQ``: ``handle_exit`` only re-enters), the
        host takes the interrupt, and the vCPU is entered again.  The world switch costs an
        exit round trip, charged under ``kvm_irq_exit``; the interrupt's own handling is the
        host's (``pmu_irq``, ``host_timer_irq``)."""
        vcpu = self.vcpu
        c = vcpu.vm.kvm.costs
        hc = self._host.cpus[self.cpu]
        t0 = hc.now_ns
        vcpu.stats.exits[reason] += 1
        vcpu.stats.el2_cycles += c.exit_round_trip
        self._host.charge(self.cpu, c.exit_round_trip, "kvm_irq_exit")
        vcpu.stats.exit_ns[reason] += hc.now_ns - t0
        if self._host.listeners:
            self._host.emit("irq_exit", cpu=self.cpu, vcpu=vcpu.name, reason=reason)

    def on_host_irq(self) -> None:
        """The host took a PMU interrupt while this vCPU ran (``pmupart.host.kernel``'s
        ``retire``): the exit it cost, then the virtual interrupt if one is now due."""
        self._irq_exit("irq")
        self._deliver()

    def timer_interrupt(self) -> None:
        """The guest's virtual timer fires (its tick): the host takes the timer PPI
        (``kvm_arch_timer_handler``), the vCPU exits and the timer interrupt is injected
        (``kvm_timer_update_irq`` -> ``kvm_vgic_inject_irq``) before it is entered again."""
        vcpu = self.vcpu
        c = vcpu.vm.kvm.costs
        self._irq_exit("vtimer")
        hc = self._host.cpus[self.cpu]
        t0 = hc.now_ns
        self._host.charge(self.cpu, self._host.costs.pmu_irq, "host_timer_irq")
        vcpu.stats.el2_cycles += c.vgic_inject + self._host.costs.pmu_irq
        self._host.charge(self.cpu, c.vgic_inject, "kvm_vgic_inject")
        vcpu.stats.exit_ns["vtimer"] += hc.now_ns - t0

    def _inject_virq(self) -> None:
        """One injection of the virtual PMU interrupt (``kvm_vgic_inject_irq`` at the next
        entry), with its stats and EL2 costs; with a userspace irqchip, KVM exits with
        KVM_EXIT_INTR and device_irq_level first and the VMM injects."""
        vcpu = self.vcpu
        costs = vcpu.vm.kvm.costs
        vcpu.stats.irqs_injected += 1
        vcpu.stats.exits["pmu_irq"] += 1
        t0 = self._host.cpus[self.cpu].now_ns
        if not vcpu.vm.irqchip:
            vcpu.stats.exits["userspace_irqchip"] += 1
            self._host.charge(self.cpu, costs.exit_round_trip, "kvm_exit_userspace")
        vcpu.stats.el2_cycles += costs.vgic_inject
        self._host.charge(self.cpu, costs.vgic_inject, "kvm_vgic_inject")
        vcpu.stats.exit_ns["pmu_irq"] += self._host.cpus[self.cpu].now_ns - t0
        if self._host.listeners:
            self._host.emit("virq", cpu=self.cpu, vcpu=vcpu.name)

    def _deliver(self) -> None:
        """Inject the virtual PMU interrupt at the next entry (``kvm_pmu_update_state``) and
        run the guest's handler while the level stays high (bounded: a handler that never
        clears its flag is an interrupt storm, counted and cut)."""
        pmu = self.vcpu.pmu
        if pmu is None or self._handler is None or self.irqs_masked or self._in_handler:
            return
        rounds = 0
        while pmu.overflow_status():
            pmu.irq_level = True
            if rounds == 8:
                self.vcpu.stats.exits["irq_storm"] += 1
                return
            rounds += 1
            self._inject_virq()
            old = self._el
            self._el = 1
            self._in_handler = True
            try:
                self._handler(self)
            finally:
                self._in_handler = False
                self._el = old
            self.eoi_maintenance()
        pmu.irq_level = False

    def eoi_maintenance(self) -> None:
        """The guest's EOI of the PMU interrupt: the vGIC listed it with ICH_LR_EOI (a
        level-triggered interrupt that is not hardware-mapped: ``vgic_v3_populate_lr`` /
        ``vgic_v3_compute_lr``, arch/arm64/kvm/vgic/vgic-v3.c), so the EOI raises a
        maintenance interrupt, a physical PPI taken at EL2 while the guest runs: an exit
        (``kvm_irq_exit``) and the host's interrupt entry and exit
        (``vgic_maintenance_handler`` does nothing more; priced as ``pmu_irq``).  The vtimer's
        interrupt is hardware-mapped and has no such exit; a userspace irqchip has no vGIC
        and none either.  The modelled driver's handler EOIs at its end; a machine-code
        guest where it deactivates the PPI (``pmupart.guest.aarch64``)."""
        vcpu = self.vcpu
        if not vcpu.vm.irqchip:
            return
        self._irq_exit("vgic_maintenance")
        hc = self._host.cpus[self.cpu]
        t0 = hc.now_ns
        cost = self._host.costs.pmu_irq
        vcpu.stats.el2_cycles += cost
        self._host.charge(self.cpu, cost, "vgic_maintenance")
        vcpu.stats.exit_ns["vgic_maintenance"] += hc.now_ns - t0


def kvm_arch_vcpu_run(vcpu: VCPU, program: Callable[[Any], object], cpu: int) -> uapi.KvmExit:
    """``KVM_RUN``: load on ``cpu``; fail entry on a CPU outside the VM's PMU; else run the
    program to completion (the guest powers off: ``KVM_EXIT_SYSTEM_EVENT``); put."""
    vm = vcpu.vm
    host = vm.kvm.host
    if vcpu.has_pmu_feature and not vcpu.pmu_created:
        # kvm_arm_pmu_v3_enable (first KVM_RUN): a PMU vCPU whose PMU was never initialised
        # fails the run with -EINVAL, with or without an in-kernel irqchip.
        import errno

        from pmupart.kvm.kvm import KvmError
        raise KvmError(errno.EINVAL, "KVM_RUN", "", f"{vcpu.name}: "
                       "KVM_ARM_VCPU_PMU_V3_INIT was not set")
    if vcpu.has_pmu_feature and vm.arm_pmu is None:
        # kvm_arm_pmu_v3_enable (mainline 7.3, with KVM_ARM_VCPU_PMU_V3_STRICT): no PMU was
        # selected (a STRICT vCPU gets no default one): -EINVAL
        import errno

        from pmupart.kvm.kvm import KvmError
        raise KvmError(errno.EINVAL, "KVM_RUN", "", f"{vcpu.name}: KVM_ARM_VCPU_PMU_V3_STRICT "
                       "and no KVM_ARM_VCPU_PMU_V3_SET_PMU")
    vm.has_run = True
    kvm_arch_vcpu_load(vcpu, cpu)
    if vcpu.on_unsupported_cpu:
        # kvm_vcpu_exit_request: return to userspace before entering the guest.
        vcpu.stats.fail_entries += 1
        vcpu.stats.exits["fail_entry"] += 1
        kvm_arch_vcpu_put(vcpu)
        return uapi.KvmExit(uapi.KVM_EXIT_FAIL_ENTRY, uapi.FailEntry(
            uapi.KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED, cpu))
    pe = host.cpus[cpu].pe
    with pe.at_el(2):
        pe.write("HCR_EL2", _HCR_GUEST)
    guest = GuestCpu(vcpu, cpu)
    try:
        program(guest)
    finally:
        pe.el = 2
        with pe.at_el(2):
            pe.write("HCR_EL2", _HCR_HOST)
        kvm_arch_vcpu_put(vcpu)
    return uapi.KvmExit(uapi.KVM_EXIT_SYSTEM_EVENT,
                        system_event_type=uapi.KVM_SYSTEM_EVENT_SHUTDOWN)


def kvm_inject_guest_pmu_irq(guest: GuestCpu) -> bool:
    """The virtual PMU interrupt of a guest that takes it at its own vector (machine code run
    by ``pmupart.guest.aarch64``): ``kvm_pmu_update_state`` raises the vGIC line and KVM
    injects it at the next entry (``kvm_vgic_inject_irq``), with the same stats and costs as
    :meth:`GuestCpu._deliver` charges for one delivery (``GuestCpu._inject_virq``); the host
    took the physical interrupt already (``retire``).  Returns False (nothing injected) when
    the overflow condition is not met."""
    vcpu = guest.vcpu
    pmu = vcpu.pmu
    if pmu is None or not pmu.overflow_status():
        return False
    pmu.irq_level = True
    guest._inject_virq()
    return True


__all__ = ["GuestCpu", "host_mdcr", "kvm_arch_vcpu_load", "kvm_arch_vcpu_put",
           "kvm_arch_vcpu_run"]
