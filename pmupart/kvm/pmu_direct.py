"""The partitioned vPMU: models the series' ``arch/arm64/kvm/pmu-direct.c`` (v8 as posted,
and the cover letter's intent; :mod:`pmupart.kvm.revision` says which choice each revision
makes).

The guest owns hardware counters 0..HPMN-1 (HPMN = ``nr_pmu_counters``) and the cycle
counter while its vCPU is loaded; it touches PMCR, PMSELR, PMUSERENR, PMCCNTR, PMCNTEN*,
PMINTEN* and PMEVCNTRn directly, while PMOVS, PMEVTYPERn, PMCCFILTR, PMCEIDn, PMMIR and the
instruction counter stay trapped by FGT (spec kvm-partitioning §2.6; v8 08/21, the series'
``arch/arm64/kvm/config.c``).  The trapped accessors
are in :mod:`pmupart.kvm.pmu_direct_sys_regs`.

* ``kvm_pmu_load`` (v8 11/21, 12/21, 14/21): take the guest counters from the host (dynamic
  reservation: only now, squeezing host events out, ``perf_pmu_resched_update``), apply the
  event filter (``kvm_pmu_apply_event_filter``), write the saved counters, PMSELR, PMCR
  without P/C, clear the guest's PMOVS bits in hardware (the virtual copy is authoritative),
  PMCNTEN and PMINTEN.  v8 order: reserve, filter, counters, PMSELR, PMCR, PMOVSCLR, PMCNTEN,
  PMINTEN; the model writes the filter last, which no one can observe in between
  (kernel-code-deltas §4.8).
* ``kvm_pmu_put`` (v8 11/21): save counters, PMSELR, PMCR, PMCNTEN and PMINTEN, fold the
  hardware PMOVS into the virtual PMOVSSET and clear it, disable the guest counters and
  interrupts, give them back.  v8 neither saves PMUSERENR nor restores the host's PMCR.
* Lazy swap (v4+): the vCPU starts FREE with traps in place and virtual state; a trapped
  access makes it GUEST_OWNED (``kvm_pmu_set_guest_owned``).
* Interrupts: guest overflow bits of the host PMU interrupt go to a virtual PMOVSSET
  (``kvm_pmu_handle_guest_irq``) and are injected at the next entry (spec kvm-partitioning §2.9).

Without FEAT_FGT, or for zero counters without FEAT_HPMN0, the guest counters are still
loaded in hardware but every access traps (the series' fallback).  Under the intent, where
this CPU cannot hold the guest's counters at all (its PMU not partitioned, fewer guest
counters than the VM asked for), the vCPU keeps its state in the virtual registers and traps
every access: its counters do not count there.  The series does not say what happens in that
case (spec kvm-partitioning §6); this is the model's ASSUMPTION (``GuestHpmn.PER_CPU_CAPACITY``),
and the checker reports the counting it loses.  v8 as posted loads whenever GUEST_OWNED
(``GuestHpmn.V8_AS_POSTED``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmupart.arch.pe import C_BIT
from pmupart.arch.sysreg import EVCNTR_NAMES, EVTYPER_NAMES
from pmupart.host.arm_pmuv3 import Reservation
from pmupart.host.perf_event import PerfEvent
from pmupart.kvm.debug import kvm_arm_setup_mdcr_el2, kvm_pmu_is_partitioned, kvm_vcpu_load_fgt
from pmupart.kvm.options import Backend, Swap
from pmupart.kvm.pmu_direct_sys_regs import PartitionedSysRegs, PmuAccess
from pmupart.kvm.revision import (
    CounterMask,
    FallbackPmcr,
    FreeOverflow,
    GuestHpmn,
    HostPmcrAtPut,
    LoadAtFlip,
    UserenrSwap,
)
from pmupart.kvm.vcpu_pmu import PMCR_C, PMCR_E, PMCR_P

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU

#: ARMV8_PMU_USERENR_MASK: what VHE ``__activate_traps_common`` writes at every vcpu_load
USERENR_MASK = 0xF


class PartitionedPmu(PartitionedSysRegs):
    """One vCPU's partitioned PMU."""

    backend = Backend.PARTITIONED

    def __init__(self, vcpu: VCPU) -> None:
        super().__init__(vcpu)
        if self.rev.swap is Swap.EAGER:
            self.access = PmuAccess.GUEST_OWNED
        self.hpmn = 0
        self._host_pmcr = 0
        self._host_userenr = 0
        self._filter_loads = 0  #: loads that applied the filter (``filter_first_load_only``)
        self._squeezed: list[PerfEvent] = []
        #: the revision's choice for :attr:`own_mask` (fixed for the VM)
        self._max_guest_mask = self.rev.counter_mask is CounterMask.MAX_GUEST

    @property
    def own_mask(self) -> int:
        """The counters load/put/PMOVS act on: the VM's ``nr`` and the cycle counter
        (intent), or ``kvm_pmu_guest_counter_mask`` = GENMASK(max_guest_counters-1, 0) | C
        of the VM's PMU (v8 11/21, 16/21)."""
        if self._max_guest_mask:
            pmu = self.vm.arm_pmu
            if pmu is not None and pmu.partitioned:
                return pmu.guest_mask()
        return ((1 << self.nr) - 1) | C_BIT

    # ------------------------------------------------------------------ ownership
    def set_guest_owned(self, cpu: int) -> None:
        """``kvm_pmu_set_guest_owned``.  Intent (v8 cover letter): reprogram MDCR_EL2 and FGT
        and load the guest state at once.  v8 15/21 as posted: only if the VM is partitioned
        here, set GUEST_OWNED and call ``kvm_arm_setup_mdcr_el2``, which on VHE writes
        MDCR_EL2 at once ("Write MDCR_EL2 directly if we're already at EL2", debug.c): the
        range is untrapped, but nothing was reserved or loaded, and the accessors now reach
        the hardware (15/21 switches them on GUEST_OWNED)."""
        if self.rev.load_at_flip is LoadAtFlip.LOAD:
            self.access = PmuAccess.GUEST_OWNED
            self.load(cpu)
            return
        if not kvm_pmu_is_partitioned(self.vcpu, cpu):
            return
        self.access = PmuAccess.GUEST_OWNED
        setup = kvm_arm_setup_mdcr_el2(self.vcpu, cpu, True)
        self.hpmn = setup.hpmn
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            self._host_pmcr = pe.read("PMCR_EL0").value or 0
        self.hw_cpu = cpu
        self.host.emit("guest_owned", cpu=cpu, vcpu=self.vcpu.name, loaded=False)

    # ------------------------------------------------------------------ load / put
    def load(self, cpu: int) -> None:
        """PMU part of ``kvm_arch_vcpu_load``: MDCR_EL2, FGT, then ``kvm_pmu_load``."""
        owned = self.access is PmuAccess.GUEST_OWNED
        if self.rev.userenr_swap is UserenrSwap.FORCED_AT_LOAD:
            # VHE __activate_traps_common (switch.h), every vcpu_load: save the host's
            # PMUSERENR and write ARMV8_PMU_USERENR_MASK; v8 does not touch it further.
            pe = self.host.cpus[cpu].pe
            with pe.at_el(2):
                self._host_userenr = pe.read("PMUSERENR_EL0").value or 0
                pe.write("PMUSERENR_EL0", USERENR_MASK)
        setup = kvm_arm_setup_mdcr_el2(self.vcpu, cpu, owned)
        self.hpmn = setup.hpmn
        self._charge_swap(cpu, kvm_vcpu_load_fgt(self.vcpu, cpu, setup.hw_partition) + 1)
        if owned and (setup.hw_partition or self._hw_fallback(cpu)):
            self.gated = not setup.hw_partition and \
                self.rev.fallback_pmcr is FallbackPmcr.GATED
            self.kvm_pmu_load(cpu)

    def _hw_fallback(self, cpu: int) -> bool:
        """No FGT, or zero counters without FEAT_HPMN0: the series keeps TPM/TPMCR (HPMN = N)
        but still loads the guest counters, and its ``sys_regs.c`` accessors reach the
        hardware (v8 09/21; spec kvm-partitioning §2.6, §4.4 "falls back to traps").  v8 as
        posted loads whenever GUEST_OWNED (``kvm_pmu_load`` tests only the access state).
        Under the intent, where this CPU cannot hold the VM's counters (unsupported CPU, PMU
        not partitioned, fewer guest counters) they stay virtual (the model's ASSUMPTION)."""
        if self.rev.guest_hpmn is GuestHpmn.V8_AS_POSTED:
            return True
        pmu = self.host.pmu_of_cpu(cpu)
        return (not self.vcpu.on_unsupported_cpu and pmu.partitioned
                and self.nr <= pmu.max_guest_counters)

    def _reserving_pmu(self, cpu: int) -> bool:
        """Whether ``kvm_pmu_set_guest_counters`` reserves on this CPU's host PMU.  v8 calls
        it on ``kvm->arch.arm_pmu``: on a CPU of another PMU (a default PMU on big.LITTLE)
        that PMU has no events here, so nothing of this CPU's own PMU is reserved."""
        pmu = self.host.pmu_of_cpu(cpu)
        if self.rev.guest_hpmn is GuestHpmn.V8_AS_POSTED:
            return pmu is self.vm.arm_pmu
        return True

    def kvm_pmu_load(self, cpu: int) -> None:
        host = self.host
        hc = host.cpus[cpu]
        pe = hc.pe
        pmu = host.pmu_of_cpu(cpu)
        rev = self.rev
        own = self.own_mask
        # Take the guest counters from the host (v8 14/21); static reservation took them
        # at boot already.
        if pmu.reservation is Reservation.DYNAMIC and self._reserving_pmu(cpu):
            self._squeezed = host.resched_update(cpu, pmu, pmu.hw_cntr_impl & ~pmu.guest_mask())
        hc.guest_counter_mask = own
        n = 0
        with pe.at_el(2):
            self._host_pmcr = pe.read("PMCR_EL0").value or 0
            if rev.userenr_swap is UserenrSwap.SAVED_RESTORED:
                self._host_userenr = pe.read("PMUSERENR_EL0").value or 0
            for i in range(min(self.nr, pe.num_counters)):
                pe.write(EVCNTR_NAMES[i], self.evcntr[i])
                n += 1
            pe.write("PMCCNTR_EL0", self.ccntr)
            pe.write("PMSELR_EL0", self.selr)
            if self.gated:
                # the host's PMCR with E set (harmless to the host: its counters run only
                # with their PMCNTEN bits, which perf sets); the guest's E gates PMCNTEN
                pe.write("PMCR_EL0", (self._host_pmcr | PMCR_E) & ~(PMCR_P | PMCR_C))
            else:
                pe.write("PMCR_EL0", self.pmcr & ~(PMCR_P | PMCR_C))
            if rev.clear_pmovs_on_load:
                pe.write("PMOVSCLR_EL0", own)
            on = self.gated_cnten() if self.gated else own & self.cnten
            pe.write("PMCNTENCLR_EL0", own & ~on)
            pe.write("PMCNTENSET_EL0", on)
            pe.write("PMINTENCLR_EL1", own & ~self.inten)
            pe.write("PMINTENSET_EL1", own & self.inten)
            n += 9
            if rev.userenr_swap is UserenrSwap.SAVED_RESTORED:
                pe.write("PMUSERENR_EL0", self.userenr)
                n += 1
        n += self.apply_event_filter(cpu)
        self.hw_cpu = cpu
        self._charge_swap(cpu, n)
        host.emit("guest_counters_loaded", cpu=cpu, vcpu=self.vcpu.name, mask=own)

    def apply_event_filter(self, cpu: int) -> int:
        """``kvm_pmu_apply_event_filter`` (v8 12/21): write every guest PMEVTYPER and
        PMCCFILTR to hardware; returns registers written.  With ``filter_at_load`` off (the
        v1 gap), or after the first load under ``filter_first_load_only``, the guest's raw
        values go to hardware."""
        pe = self.host.cpus[cpu].pe
        raw = not self.rev.filter_at_load or \
            (self.rev.filter_first_load_only and self._filter_loads > 0)
        self._filter_loads += 1
        n = 0
        with pe.at_el(2):
            for i in range(min(self.nr, pe.num_counters)):
                pe.write(EVTYPER_NAMES[i], self.hw_typer(i, raw))
                n += 1
            pe.write("PMCCFILTR_EL0", self.hw_typer(31, raw))
        return n + 1

    def put(self, cpu: int) -> None:
        """``kvm_pmu_put`` (and, for PMUSERENR under v8, ``__deactivate_traps_common``)."""
        rev = self.rev
        forced = rev.userenr_swap is UserenrSwap.FORCED_AT_LOAD
        if self.hw_cpu != cpu:
            if forced:
                self._restore_host_userenr(cpu)
            return
        host = self.host
        hc = host.cpus[cpu]
        pe = hc.pe
        pmu = host.pmu_of_cpu(cpu)
        own = self.own_mask
        n = 0
        with pe.at_el(2):
            for i in range(min(self.nr, pe.num_counters)):
                self.evcntr[i] = pe.read(EVCNTR_NAMES[i]).value or 0
                n += 1
            self.ccntr = pe.read("PMCCNTR_EL0").value or 0
            self.selr = pe.read("PMSELR_EL0").value or 0
            if not self.gated:  # gated: the virtual PMCR and enables are authoritative
                w = self.pmcr_writable()
                self.pmcr = (self.pmcr & ~w) | ((pe.read("PMCR_EL0").value or 0) & w)
                self.cnten = (pe.read("PMCNTENSET_EL0").value or 0) & own
            self.inten = (pe.read("PMINTENSET_EL1").value or 0) & own
            hw_ovs = (pe.read("PMOVSSET_EL0").value or 0) & own
            if rev.save_pmovs_on_put:
                self.ovs |= hw_ovs
            if rev.clear_pmovs_on_put:
                pe.write("PMOVSCLR_EL0", own)
            # v8 11/21: disable guest counters and interrupts on put.
            pe.write("PMCNTENCLR_EL0", own)
            pe.write("PMINTENCLR_EL1", own)
            n += 9
            if rev.host_pmcr_at_put is HostPmcrAtPut.RESTORED:
                pe.write("PMCR_EL0", self._host_pmcr & ~(PMCR_P | PMCR_C))
                n += 1
            if not forced:
                self.userenr = (pe.read("PMUSERENR_EL0").value or 0) & 0xF
                pe.write("PMUSERENR_EL0", self._host_userenr)
                n += 2
        if forced:
            self._restore_host_userenr(cpu)
        hc.guest_counter_mask = 0
        self.hw_cpu = None
        self.gated = False
        if pmu.reservation is Reservation.DYNAMIC and self._reserving_pmu(cpu):
            # kvm_pmu_put restores hw_cntr_impl and reschedules only if it squeezed an
            # event out (v8 14/21 kvm_pmu_set_guest_counters(pmu, 0)).
            pmu.set_cntr_mask(cpu, pmu.hw_cntr_impl)
            if self._squeezed:
                host.restore_errored(cpu)
                host.charge(cpu, host.costs.resched, "perf_resched")
                host.resched(cpu)
            self._squeezed = []
        self._charge_swap(cpu, n)
        host.emit("guest_counters_saved", cpu=cpu, vcpu=self.vcpu.name)

    def _restore_host_userenr(self, cpu: int) -> None:
        """VHE ``__deactivate_traps_common``: the host's PMUSERENR comes back."""
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            pe.write("PMUSERENR_EL0", self._host_userenr)

    def _charge_swap(self, cpu: int, nregs: int) -> None:
        c = self.vm.kvm.costs
        self.vcpu.stats.regs_swapped += nregs
        cycles = c.load_put_base + nregs * c.reg_swap
        self.vcpu.stats.el2_cycles += cycles
        self.host.charge(cpu, cycles, "kvm_pmu_swap")

    # ------------------------------------------------------------------ interrupts
    def handle_guest_irq(self, cpu: int, bits: int) -> None:
        """``kvm_pmu_handle_guest_irq``: clear the guest bits in hardware, OR them into the
        virtual PMOVSSET; the level is injected at the next entry."""
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            pe.write("PMOVSCLR_EL0", bits)
        self.ovs |= bits

    def overflow_status(self) -> bool:
        """``kvm_pmu_part_overflow_status``: PMCR.E && guest mask & vPMOVSSET & PMINTENSET
        (hardware PMCR and PMINTENSET while the guest owns them).  While FREE: never
        (intent), or, v8 17/21, when the virtual PMCR.E & PMOVS & PMINTEN & mask is set, flip
        to GUEST_OWNED and decide from the hardware registers."""
        if self.access is not PmuAccess.FREE and not self.ovs:
            return False  # no virtual overflow flag: nothing to decide (the common case)
        own = self.own_mask
        if self.access is PmuAccess.FREE:
            if self.rev.free_overflow is FreeOverflow.NO_IRQ:
                return False
            if not (self.pmcr & PMCR_E and own & self.ovs & self.inten):
                return False
            cpu = self.vcpu.cpu
            if cpu is None:
                return False
            self.set_guest_owned(cpu)
        if not (self.ovs & own):
            return False
        if self.hw_cpu is None:
            return super().overflow_status()
        pmcr = self.pmcr if self.gated else self._hw("PMCR_EL0")
        inten = self._hw("PMINTENSET_EL1")
        return bool(pmcr & PMCR_E) and bool(own & self.ovs & inten)


__all__ = ["PartitionedPmu", "PmuAccess"]
