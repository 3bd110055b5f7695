"""The partitioned vPMU: models the series' ``arch/arm64/kvm/pmu-direct.c`` (v8/v9).

The guest owns hardware counters 0..HPMN-1 (HPMN = ``nr_pmu_counters``) and the cycle
counter while its vCPU is loaded; it touches PMCR, PMSELR, PMUSERENR, PMCCNTR, PMCNTEN*,
PMINTEN* and PMEVCNTRn directly, while PMOVS, PMEVTYPERn, PMCCFILTR, PMCEIDn, PMMIR and the
instruction counter stay trapped by FGT (spec kvm-partitioning §2.6).

* ``kvm_pmu_load``: take the guest counters from the host (dynamic reservation: only now,
  squeezing host events out, ``perf_pmu_resched_update``), write the saved guest state,
  clear the guest's PMOVS bits in hardware (the virtual copy is authoritative), and apply
  the event filter to PMEVTYPER (``kvm_pmu_apply_event_filter``) (§2.3, §2.7, §2.8).
* ``kvm_pmu_put``: save the guest state, disable the guest counters, give them back.
* Lazy swap (v4+): the vCPU starts FREE with traps in place and virtual state; the first
  trapped PMU write makes it GUEST_OWNED, reprograms MDCR_EL2 and loads (§2.7).
* Interrupts: guest overflow bits of the host PMU interrupt go to the virtual PMOVSSET
  (``kvm_pmu_handle_guest_irq``) and are injected at the next entry (§2.9).

Without FEAT_FGT, or for zero counters without FEAT_HPMN0, the guest counters are still
loaded in hardware but every access traps (the series' fallback).  Where this CPU cannot
hold the guest's counters at all (its PMU not partitioned, fewer guest counters than the
VM asked for), the vCPU keeps its state in the virtual registers and traps every access:
its counters do not count there.  The
series does not say what happens in that case (spec kvm-partitioning §6); this is the
model's ASSUMPTION, and the checker reports the counting it loses.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from pmupart.arch.events import Event
from pmupart.arch.pe import C_BIT, CYCLE_IDX, Access, Outcome
from pmupart.arch.sysreg import RegDef
from pmupart.host.arm_pmuv3 import Reservation
from pmupart.host.perf_event import PerfEvent
from pmupart.kvm.debug import kvm_arm_setup_mdcr_el2, kvm_vcpu_load_fgt
from pmupart.kvm.options import Backend, Swap
from pmupart.kvm.vcpu_pmu import (
    EXCLUDE_EL0,
    EXCLUDE_EL1,
    INCLUDE_EL2,
    M64,
    PMCR_C,
    PMCR_E,
    PMCR_P,
    VcpuPmu,
)

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU

_UNDEF = Access(Outcome.UNDEFINED)
_OK = Access(Outcome.OK)
#: Sentinel: the access must be executed again on the hardware (after the lazy flip).
RETRY = Access(Outcome.TRAP_EL2, -1)


class PmuAccess(Enum):
    """``enum vcpu_pmu_register_access`` (series v7 14/20)."""

    FREE = "free"
    GUEST_OWNED = "guest-owned"


class PartitionedPmu(VcpuPmu):
    """One vCPU's partitioned PMU."""

    backend = Backend.PARTITIONED

    def __init__(self, vcpu: VCPU) -> None:
        super().__init__(vcpu)
        eager = vcpu.vm.kvm.options.swap is Swap.EAGER
        self.access = PmuAccess.GUEST_OWNED if eager else PmuAccess.FREE
        self.hw_cpu: int | None = None  #: the CPU whose counters hold the guest state
        self.hpmn = 0
        self._host_pmcr = 0
        self._host_userenr = 0
        self._squeezed: list[PerfEvent] = []

    @property
    def own_mask(self) -> int:
        """The counters this guest uses: 0..nr-1 and the cycle counter."""
        return ((1 << self.nr) - 1) | C_BIT

    # ------------------------------------------------------------------ load / put
    def load(self, cpu: int) -> None:
        """PMU part of ``kvm_arch_vcpu_load``: MDCR_EL2, FGT, then ``kvm_pmu_load``."""
        owned = self.access is PmuAccess.GUEST_OWNED
        setup = kvm_arm_setup_mdcr_el2(self.vcpu, cpu, owned)
        self.hpmn = setup.hpmn
        self._charge_swap(cpu, kvm_vcpu_load_fgt(self.vcpu, cpu, setup.hw_partition) + 1)
        if owned and (setup.hw_partition or self._hw_fallback(cpu)):
            self.kvm_pmu_load(cpu)

    def _hw_fallback(self, cpu: int) -> bool:
        """No FGT, or zero counters without FEAT_HPMN0: the series keeps TPM/TPMCR (HPMN = N)
        but still loads the guest counters, and its ``sys_regs.c`` accessors reach the
        hardware (v7 08/20; spec kvm-partitioning §2.6, §4.4 "falls back to traps", §6 "only
        avoids the host perf layer").  Only where this CPU cannot hold the VM's counters
        (unsupported CPU, PMU not partitioned, fewer guest counters) do they stay virtual."""
        pmu = self.host.pmu_of_cpu(cpu)
        return (not self.vcpu.on_unsupported_cpu and pmu.partitioned
                and self.nr <= pmu.max_guest_counters)

    def kvm_pmu_load(self, cpu: int) -> None:
        host = self.host
        hc = host.cpus[cpu]
        pe = hc.pe
        pmu = host.pmu_of_cpu(cpu)
        opts = self.vm.kvm.options
        own = self.own_mask
        # Take the guest counters from the host (v7 13/20); static reservation took them
        # at boot already.
        if pmu.reservation is Reservation.DYNAMIC:
            self._squeezed = host.resched_update(cpu, pmu, pmu.hw_cntr_impl & ~pmu.guest_mask())
        hc.guest_counter_mask = own
        n = 0
        with pe.at_el(2):
            self._host_pmcr = pe.read("PMCR_EL0").value or 0
            self._host_userenr = pe.read("PMUSERENR_EL0").value or 0
            for i in range(min(self.nr, pe.num_counters)):
                pe.write(f"PMEVCNTR{i}_EL0", self.evcntr[i])
                n += 1
            pe.write("PMCCNTR_EL0", self.ccntr)
            pe.write("PMSELR_EL0", self.selr)
            pe.write("PMCR_EL0", self.pmcr & ~(PMCR_P | PMCR_C))
            if opts.clear_pmovs_on_load:
                pe.write("PMOVSCLR_EL0", own)
            pe.write("PMCNTENCLR_EL0", own & ~self.cnten)
            pe.write("PMCNTENSET_EL0", own & self.cnten)
            pe.write("PMINTENCLR_EL1", own & ~self.inten)
            pe.write("PMINTENSET_EL1", own & self.inten)
            pe.write("PMUSERENR_EL0", self.userenr)
            n += 10
        n += self.apply_event_filter(cpu)
        self.hw_cpu = cpu
        self._charge_swap(cpu, n)
        host.emit("guest_counters_loaded", cpu=cpu, vcpu=self.vcpu.name, mask=own)

    def filtered_typer(self, typer: int, event: int) -> int:
        """``kvm_pmu_apply_event_filter`` for one counter: no EL2 counting (no vEL2 here);
        an event the VM's filter denies counts nothing (EL0 and EL1 excluded)."""
        v = typer & ~INCLUDE_EL2
        if not self.vm.event_allowed(event):
            v |= EXCLUDE_EL0 | EXCLUDE_EL1
        return v

    def apply_event_filter(self, cpu: int) -> int:
        """Write every guest PMEVTYPER and PMCCFILTR to hardware; returns registers written.
        With ``filter_at_load`` off (the v1 gap), the guest's raw values go to hardware."""
        pe = self.host.cpus[cpu].pe
        raw = not self.vm.kvm.options.filter_at_load
        n = 0
        with pe.at_el(2):
            for i in range(min(self.nr, pe.num_counters)):
                t = self.evtyper[i]
                pe.write(f"PMEVTYPER{i}_EL0",
                         t if raw else self.filtered_typer(t, t & self.evmask()))
                n += 1
            c = self.ccfiltr
            pe.write("PMCCFILTR_EL0", c if raw else self.filtered_typer(c, int(Event.CPU_CYCLES)))
        return n + 1

    def put(self, cpu: int) -> None:
        """``kvm_pmu_put``: save the guest state, disable its counters, give them back."""
        if self.hw_cpu != cpu:
            return
        host = self.host
        hc = host.cpus[cpu]
        pe = hc.pe
        pmu = host.pmu_of_cpu(cpu)
        own = self.own_mask
        n = 0
        with pe.at_el(2):
            for i in range(min(self.nr, pe.num_counters)):
                self.evcntr[i] = pe.read(f"PMEVCNTR{i}_EL0").value or 0
                n += 1
            self.ccntr = pe.read("PMCCNTR_EL0").value or 0
            self.selr = pe.read("PMSELR_EL0").value or 0
            w = self.pmcr_writable()
            self.pmcr = (self.pmcr & ~w) | ((pe.read("PMCR_EL0").value or 0) & w)
            self.cnten = (pe.read("PMCNTENSET_EL0").value or 0) & own
            self.inten = (pe.read("PMINTENSET_EL1").value or 0) & own
            self.userenr = (pe.read("PMUSERENR_EL0").value or 0) & 0xF
            hw_ovs = (pe.read("PMOVSSET_EL0").value or 0) & own
            if self.vm.kvm.options.save_pmovs_on_put:
                self.ovs |= hw_ovs
            # v8: disable guest counters on put; clear their flags so nothing leaks.
            pe.write("PMCNTENCLR_EL0", own)
            pe.write("PMINTENCLR_EL1", own)
            pe.write("PMOVSCLR_EL0", own)
            pe.write("PMCR_EL0", self._host_pmcr & ~(PMCR_P | PMCR_C))
            pe.write("PMUSERENR_EL0", self._host_userenr)
            n += 12
        hc.guest_counter_mask = 0
        self.hw_cpu = None
        if pmu.reservation is Reservation.DYNAMIC:
            # kvm_pmu_put restores hw_cntr_impl and reschedules only if it squeezed an
            # event out (v7 13/20).
            pmu.set_cntr_mask(cpu, pmu.hw_cntr_impl)
            if self._squeezed:
                host.restore_errored(cpu)
                host.charge(cpu, host.costs.resched, "perf_resched")
                host.resched(cpu)
            self._squeezed = []
        self._charge_swap(cpu, n)
        host.emit("guest_counters_saved", cpu=cpu, vcpu=self.vcpu.name)

    def _charge_swap(self, cpu: int, nregs: int) -> None:
        c = self.vm.kvm.costs
        self.vcpu.stats.regs_swapped += nregs
        cycles = c.load_put_base + nregs * c.reg_swap
        self.vcpu.stats.el2_cycles += cycles
        self.host.charge(cpu, cycles, "kvm_pmu_swap")

    # ------------------------------------------------------------------ hardware view
    def _hw(self, name: str) -> int:
        return self.host.cpus[self.hw_cpu or 0].pe.read_el2(name)

    def _hw_write(self, name: str, value: int) -> None:
        self.host.cpus[self.hw_cpu or 0].pe.write_el2(name, value)

    def _hw_has(self, idx: int) -> bool:
        """This CPU implements counter ``idx`` (under the v1 HPMN rule a VM's counters can
        outnumber a CPU's: those have no hardware here, and their state is lost)."""
        return idx == CYCLE_IDX or idx < self.host.cpus[self.hw_cpu or 0].pe.num_counters

    def counter_value(self, idx: int) -> int:
        if self.hw_cpu is None:
            return super().counter_value(idx)
        if not self._hw_has(idx):
            return 0
        return self._hw("PMCCNTR_EL0" if idx == CYCLE_IDX else f"PMEVCNTR{idx}_EL0")

    def store_counter(self, idx: int, value: int) -> None:
        if self.hw_cpu is None:
            super().store_counter(idx, value)
        elif self._hw_has(idx):
            self._hw_write("PMCCNTR_EL0" if idx == CYCLE_IDX else f"PMEVCNTR{idx}_EL0",
                           value & M64)

    def sync_hw_ovs(self) -> None:
        """Fold hardware overflow flags of guest counters into the virtual PMOVSSET."""
        if self.hw_cpu is None:
            return
        bits = self._hw("PMOVSSET_EL0") & self.own_mask
        if bits:
            self.ovs |= bits
            self._hw_write("PMOVSCLR_EL0", bits)

    def handle_guest_irq(self, cpu: int, bits: int) -> None:
        """``kvm_pmu_handle_guest_irq``: clear the guest bits in hardware, OR them into the
        virtual PMOVSSET; the level is injected at the next entry."""
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            pe.write("PMOVSCLR_EL0", bits)
        self.ovs |= bits

    def overflow_status(self) -> bool:
        """``kvm_pmu_part_overflow_status``: PMCR.E && guest mask & vPMOVSSET & PMINTENSET
        (hardware PMCR and PMINTENSET while the guest owns them); never while FREE."""
        if self.access is PmuAccess.FREE or not (self.ovs & self.own_mask):
            return False
        if self.hw_cpu is None:
            return super().overflow_status()
        pmcr = self._hw("PMCR_EL0")
        inten = self._hw("PMINTENSET_EL1")
        return bool(pmcr & PMCR_E) and bool(self.own_mask & self.ovs & inten)

    # ------------------------------------------------------------------ traps
    def handle_trap(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        """A trapped guest PMU access (``sys_regs.c`` accessors as the series changes them)."""
        if self.access is PmuAccess.FREE:
            if write:
                # First trapped write: the guest now owns the PMU (v7 14/20).
                self.access = PmuAccess.GUEST_OWNED
                cpu = self.vcpu.cpu
                assert cpu is not None
                self.load(cpu)
                if self.hw_cpu is not None:
                    # The same exit then performs the access with the partitioned accessors
                    # (v7 08/20, 14/20): one exit, not a second trap on re-execution.
                    return self._hw_access(reg, write, value, el)
            return self._virtual(reg, write, value, el)
        if self.hw_cpu is None:
            return self._virtual(reg, write, value, el)
        return self._hw_access(reg, write, value, el)

    def _virtual(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        acc = self.virtual_access(reg, write, value, el)
        self.sync_irq()
        return acc

    def _hw_access(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        name = reg.name
        own = self.own_mask
        if name in ("PMOVSSET_EL0", "PMOVSCLR_EL0"):
            self.sync_hw_ovs()
            if not write:
                return Access(Outcome.OK, self.ovs & own)
            if name == "PMOVSSET_EL0":
                self.ovs |= value & own
            else:
                self.ovs &= ~value
            self.sync_irq()
            return _OK
        fam = reg.family
        if fam == "PMEVTYPER<n>_EL0" or name in ("PMXEVTYPER_EL0", "PMCCFILTR_EL0"):
            idx = self._hw_index(reg, "PMCCFILTR_EL0")
            if el == 0 and self.el0_disabled(reg, write):
                return _UNDEF
            acc = self._acc_typer(idx, write, value)
            if write and acc.ok:
                self._write_hw_typer(idx)
            return acc
        if name in ("PMCEID0_EL0", "PMCEID1_EL0"):
            return Access(Outcome.OK, self.pmceid(int(name[6])))
        if name == "PMMIR_EL1":
            return Access(Outcome.OK, 0)
        if name in ("PMICNTR_EL0", "PMICFILTR_EL0", "PMZR_EL0", "PMUACR_EL1"):
            return _UNDEF
        # Traps kept on this CPU (no FGT fallback, or above HPMN): the series' sys_regs.c
        # accessors reach the hardware directly (v7 08/20), with the guest's view.
        return self._hw_direct(reg, write, value, el)

    def _hw_index(self, reg: RegDef, cycle_reg: str) -> int:
        """The counter an access names: ``<n>`` of the family, 31 for the cycle counter's own
        register, else the guest's PMSELR_EL0.SEL (in hardware while it owns the PMU)."""
        if reg.family is not None:
            return reg.index or 0
        if reg.name == cycle_reg:
            return CYCLE_IDX
        return self._hw("PMSELR_EL0") & 0x1F

    def _write_hw_typer(self, idx: int) -> None:
        if idx == CYCLE_IDX:
            self._hw_write("PMCCFILTR_EL0",
                           self.filtered_typer(self.ccfiltr, int(Event.CPU_CYCLES)))
        elif idx < self.nr and self._hw_has(idx):
            t = self.evtyper[idx]
            raw = not self.vm.kvm.options.filter_at_load
            self._hw_write(f"PMEVTYPER{idx}_EL0",
                           t if raw else self.filtered_typer(t, t & self.evmask()))

    def _hw_direct(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        name = reg.name
        own = self.own_mask
        if el == 0 and self.el0_disabled(reg, write):
            return _UNDEF
        if reg.family == "PMEVCNTR<n>_EL0" or name in ("PMXEVCNTR_EL0", "PMCCNTR_EL0"):
            idx = self._hw_index(reg, "PMCCNTR_EL0")
            if not self._valid(idx):
                return _UNDEF
            if write:
                self.store_counter(idx, value)
                return _OK
            return Access(Outcome.OK, self.counter_value(idx))
        if name == "PMCR_EL0":
            hw = self._hw("PMCR_EL0")
            if not write:
                return Access(Outcome.OK, (hw & ~(0x1F << 11)) | (self.nr << 11))
            w = self.pmcr_writable()
            self._hw_write("PMCR_EL0", (hw & ~w) | (value & w))
            if value & PMCR_C:
                self.store_counter(CYCLE_IDX, 0)
            if value & PMCR_P:  # only the guest's counters, not the host's
                for i in range(self.nr):
                    self.store_counter(i, 0)
            self.sync_irq()
            return _OK
        pairs = {"PMCNTENSET_EL0": ("PMCNTENSET_EL0", "PMCNTENCLR_EL0"),
                 "PMCNTENCLR_EL0": ("PMCNTENSET_EL0", "PMCNTENCLR_EL0"),
                 "PMINTENSET_EL1": ("PMINTENSET_EL1", "PMINTENCLR_EL1"),
                 "PMINTENCLR_EL1": ("PMINTENSET_EL1", "PMINTENCLR_EL1")}
        if name in pairs:
            if not write:
                return Access(Outcome.OK, self._hw(pairs[name][0]) & own)
            self._hw_write(name, value & own)
            self.sync_irq()
            return _OK
        if name in ("PMSELR_EL0", "PMUSERENR_EL0"):
            if not write:
                return Access(Outcome.OK, self._hw(name))
            self._hw_write(name, value & (0x1F if name == "PMSELR_EL0" else 0xF))
            return _OK
        if name == "PMSWINC_EL0":
            self.counter_increment(value & own & ~C_BIT, int(Event.SW_INCR), el)
            self.sync_irq()
            return _OK
        return _UNDEF

    def counter_increment(self, mask: int, event: int, el: int | None) -> None:
        """SW_INCR emulated against hardware-owned counters (PMCR/PMCNTEN from hardware)."""
        if self.hw_cpu is None:
            super().counter_increment(mask, event, el)
            return
        saved = (self.pmcr, self.cnten)
        self.pmcr = self._hw("PMCR_EL0")
        self.cnten = self._hw("PMCNTENSET_EL0") & self.own_mask
        try:
            super().counter_increment(mask, event, el)
        finally:
            self.pmcr, self.cnten = saved
