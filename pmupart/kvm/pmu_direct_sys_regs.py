"""The partitioned vPMU's trapped accessors: the series' ``sys_regs.c`` changes.

Models ``pmu_reg_read``/``pmu_reg_write`` and the ``access_pm*`` handlers as the series
changes them (v8 09/21 "the trapped register accesses ... if the PMU is partitioned", 15/21
"GUEST_OWNED" switch and ``kvm_pmu_set_guest_owned`` at the top of both helpers), with the
hardware view of a GUEST_OWNED vCPU (``read_sysreg``/``write_sysreg`` on the CPU it runs on).
Where revisions differ the :mod:`pmupart.kvm.revision` choice decides; the v8 facts were
checked in the v8 patches as posted (linux-doc copies of 09/21, 15/21: ``pmu_reg_read``
returns the virtual PMEVTYPER/PMCCFILTR and PMOVSSET, hardware for the rest; PMSWINC is not
touched, so ``access_pmswinc`` still runs ``kvm_pmu_software_increment`` on the virtual
registers).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from pmupart.arch.events import Event
from pmupart.arch.pe import C_BIT, CYCLE_IDX, Access, Outcome
from pmupart.arch.sysreg import EVCNTR_NAMES, EVTYPER_NAMES, RegDef
from pmupart.kvm.revision import (
    EvtyperWrite,
    FilterExempt,
    OwnershipFlip,
    PmovsRead,
    Revision,
    SwincFallback,
    UserenrSwap,
)
from pmupart.kvm.vcpu_pmu import EXCLUDE_EL0, EXCLUDE_EL1, INCLUDE_EL2, M64, PMCR_C, PMCR_P, VcpuPmu

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU

_UNDEF = Access(Outcome.UNDEFINED)
_OK = Access(Outcome.OK)
#: The SET/CLR pairs the hardware accessors read and write.
_PAIRS = {"PMCNTENSET_EL0": ("PMCNTENSET_EL0", "PMCNTENCLR_EL0"),
          "PMCNTENCLR_EL0": ("PMCNTENSET_EL0", "PMCNTENCLR_EL0"),
          "PMINTENSET_EL1": ("PMINTENSET_EL1", "PMINTENCLR_EL1"),
          "PMINTENCLR_EL1": ("PMINTENSET_EL1", "PMINTENCLR_EL1")}


class PmuAccess(Enum):
    """``enum vcpu_pmu_register_access`` (series v7 14/20, v8 15/21)."""

    FREE = "free"
    GUEST_OWNED = "guest-owned"


class PartitionedSysRegs(VcpuPmu):
    """The trap side of the partitioned backend; :class:`~pmupart.kvm.pmu_direct.PartitionedPmu`
    adds load/put and interrupts."""

    def __init__(self, vcpu: VCPU) -> None:
        super().__init__(vcpu)
        self.rev: Revision = vcpu.vm.kvm.revision
        self.access = PmuAccess.FREE
        self.hw_cpu: int | None = None  #: the CPU whose counters hold the guest state
        #: set while SW_INCR runs on the virtual registers (v8 09/21 ``access_pmswinc``)
        self._virtual_only = False
        #: in hardware behind kept traps with ``FallbackPmcr.GATED``: PMCR stays virtual
        self.gated = False

    # ------------------------------------------------------------------ provided by PartitionedPmu
    @property
    def own_mask(self) -> int:
        raise NotImplementedError

    def set_guest_owned(self, cpu: int) -> None:
        """``kvm_pmu_set_guest_owned``."""
        raise NotImplementedError

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
        if self.hw_cpu is None or self._virtual_only:
            return super().counter_value(idx)
        if not self._hw_has(idx):
            return 0
        return self._hw(EVCNTR_NAMES[idx])  # PMCCNTR_EL0 for CYCLE_IDX

    def store_counter(self, idx: int, value: int) -> None:
        if self.hw_cpu is None or self._virtual_only:
            super().store_counter(idx, value)
        elif self._hw_has(idx):
            self._hw_write(EVCNTR_NAMES[idx],  # PMCCNTR_EL0 for CYCLE_IDX
                           value & M64)

    def sync_hw_ovs(self) -> None:
        """Fold hardware overflow flags of guest counters into the virtual PMOVSSET."""
        if self.hw_cpu is None:
            return
        bits = self._hw("PMOVSSET_EL0") & self.own_mask
        if bits:
            self.ovs |= bits
            self._hw_write("PMOVSCLR_EL0", bits)

    def event_filtered(self, event: int) -> bool:
        """The VM's filter denies ``event`` in hardware.  Intent: SW_INCR and CHAIN are never
        filtered (vcpu.rst FILTER); v8 12/21 ``kvm_pmu_apply_event_filter`` tests the bitmap
        with no exemption."""
        flt = self.vm.pmu_filter
        if flt is None:
            return False
        if self.rev.filter_exempt is FilterExempt.SWINC_CHAIN and event in (0x00, 0x1E):
            return False
        return event not in flt

    def filtered_typer(self, typer: int, event: int) -> int:
        """``kvm_pmu_apply_event_filter`` for one counter: no EL2 counting (no vEL2 here);
        an event the VM's filter denies counts nothing (EL0 and EL1 excluded)."""
        v = typer & ~INCLUDE_EL2
        if self.event_filtered(event):
            v |= EXCLUDE_EL0 | EXCLUDE_EL1
        return v

    def el0_disabled(self, reg: RegDef, write: bool) -> bool:
        """``check_pmu_access_disabled``: since v8 09/21 it reads PMUSERENR through
        ``pmu_reg_read``, i.e. the **hardware** register while GUEST_OWNED; the intent uses
        the saved virtual copy (which it keeps in step at load/put)."""
        if self.hw_cpu is None or self.rev.userenr_swap is not UserenrSwap.FORCED_AT_LOAD:
            return super().el0_disabled(reg, write)
        saved = self.userenr
        self.userenr = self._hw("PMUSERENR_EL0") & 0xF
        try:
            return super().el0_disabled(reg, write)
        finally:
            self.userenr = saved

    def gated_cnten(self) -> int:
        """The guest counters' hardware PMCNTEN under ``FallbackPmcr.GATED``: the guest's
        enables while its virtual PMCR_EL0.E is set, none otherwise."""
        return self.cnten & self.own_mask if self.pmcr & 1 else 0

    def write_gated_cnten(self) -> None:
        own = self.own_mask
        on = self.gated_cnten()
        self._hw_write("PMCNTENCLR_EL0", own & ~on)
        self._hw_write("PMCNTENSET_EL0", on)

    # ------------------------------------------------------------------ traps
    def handle_trap(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        """A trapped guest PMU access (``sys_regs.c`` accessors as the series changes them)."""
        if self.access is PmuAccess.FREE:
            # Intent: the first trapped write flips ownership.  v8 15/21: every access through
            # pmu_reg_read/pmu_reg_write flips, and check_pmu_access_disabled reads PMUSERENR
            # through pmu_reg_read, so any trapped PMU access does.
            if write or self.rev.ownership_flip is OwnershipFlip.ON_ACCESS:
                cpu = self.vcpu.cpu
                assert cpu is not None
                self.set_guest_owned(cpu)
                if self.hw_cpu is not None:
                    # The same exit then performs the access with the partitioned accessors
                    # (v7 08/20, v8 15/21): one exit, not a second trap on re-execution.
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
            if el == 0 and self.el0_disabled(reg, write):
                return _UNDEF
            # v8 09/21 pmu_reg_read(PMOVSSET): the virtual register only; the intent folds
            # the hardware flags in first.
            if self.rev.pmovs_read is PmovsRead.SYNC_HARDWARE:
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
            # v8 09/21 pmu_reg_write: __vcpu_assign_sys_reg only ("A later patch will ensure
            # these are handled correctly at vcpu_load time"); the intent writes hardware.
            if write and acc.ok and self.rev.evtyper_write is EvtyperWrite.HARDWARE_AT_ONCE:
                self._write_hw_typer(idx)
            return acc
        if name in ("PMCEID0_EL0", "PMCEID1_EL0"):
            if el == 0 and self.el0_disabled(reg, write):
                return _UNDEF
            return Access(Outcome.OK, self.pmceid(int(name[6])))
        if name == "PMMIR_EL1":
            return Access(Outcome.OK, self.pmmir())
        if name in ("PMICNTR_EL0", "PMICFILTR_EL0", "PMZR_EL0", "PMUACR_EL1"):
            return _UNDEF
        # Traps kept on this CPU (no FGT fallback, or above HPMN): the series' sys_regs.c
        # accessors reach the hardware directly (v8 09/21), with the guest's view.
        return self._hw_direct(reg, write, value, el)

    def _hw_index(self, reg: RegDef, cycle_reg: str) -> int:
        """The counter an access names: ``<n>`` of the family, 31 for the cycle counter's own
        register, else the guest's PMSELR_EL0.SEL (in hardware while it owns the PMU)."""
        if reg.family is not None:
            return reg.index or 0
        if reg.name == cycle_reg:
            return CYCLE_IDX
        return self._hw("PMSELR_EL0") & 0x1F

    def hw_typer(self, idx: int, raw: bool) -> int:
        """The value ``kvm_pmu_apply_event_filter`` writes for counter ``idx``."""
        if idx == CYCLE_IDX:
            c = self.ccfiltr
            return c if raw else self.filtered_typer(c, int(Event.CPU_CYCLES))
        t = self.evtyper[idx]
        return t if raw else self.filtered_typer(t, t & self.evmask())

    def _write_hw_typer(self, idx: int) -> None:
        raw = not self.rev.filter_at_load
        if idx == CYCLE_IDX:
            self._hw_write("PMCCFILTR_EL0", self.hw_typer(idx, False))
        elif idx < self.nr and self._hw_has(idx):
            self._hw_write(EVTYPER_NAMES[idx], self.hw_typer(idx, raw))

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
        if name == "PMCR_EL0" and self.gated:
            # Intent, traps kept (HPMN = N): the host keeps PMCR; the guest's is virtual.
            if not write:
                return Access(Outcome.OK, self.pmcr_read())
            w = self.pmcr_writable()
            self.pmcr = (self.pmcr & ~w) | (value & w)
            if value & PMCR_C:
                self.store_counter(CYCLE_IDX, 0)
            if value & PMCR_P:
                for i in range(self.nr):
                    self.store_counter(i, 0)
            self.write_gated_cnten()
            self.sync_irq()
            return _OK
        if name == "PMCR_EL0":
            # kvm_pmu_direct_pmcr_read/_write (v8 09/21): hardware PMCR with N replaced; P
            # resets only the VM's counters.
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
        if name in _PAIRS and self.gated and name.startswith("PMCNTEN"):
            if not write:
                return Access(Outcome.OK, self.cnten & own)
            if name == "PMCNTENSET_EL0":
                self.cnten |= value & own
            else:
                self.cnten &= ~value
            self.write_gated_cnten()
            self.sync_irq()
            return _OK
        if name in _PAIRS:
            if not write:
                return Access(Outcome.OK, self._hw(_PAIRS[name][0]) & own)
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
        """SW_INCR emulated for a GUEST_OWNED vCPU.  Intent: against the hardware counters
        (PMCR/PMCNTEN from hardware).  v8 09/21 leaves ``access_pmswinc`` →
        ``kvm_pmu_software_increment`` on the virtual registers, stale while the hardware
        holds the guest's state (the next put overwrites the increment)."""
        if self.hw_cpu is None:
            super().counter_increment(mask, event, el)
            return
        if self.rev.swinc_fallback is SwincFallback.VIRTUAL:
            self._virtual_only = True
            try:
                super().counter_increment(mask, event, el)
            finally:
                self._virtual_only = False
            return
        saved = (self.pmcr, self.cnten)
        if not self.gated:  # gated: the virtual PMCR and enables are the guest's
            self.pmcr = self._hw("PMCR_EL0")
            self.cnten = self._hw("PMCNTENSET_EL0") & self.own_mask
        try:
            super().counter_increment(mask, event, el)
        finally:
            self.pmcr, self.cnten = saved


__all__ = ["PartitionedSysRegs", "PmuAccess"]
