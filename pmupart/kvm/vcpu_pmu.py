"""The state every vCPU PMU backend shares: the virtual PMU registers (KVM's
``__vcpu_sys_reg`` copies) and the guest's view of them.

Both backends (:mod:`pmupart.kvm.pmu_emul`, :mod:`pmupart.kvm.pmu_direct`) present the
architecture of a PE with ``N = kvm->arch.nr_pmu_counters`` event counters and a PMU version
capped at PMUv3p5 (``kvm_arm_pmu_get_pmuver_limit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmupart.arch.events import Event
from pmupart.arch.features import PMUVer
from pmupart.arch.pe import C_BIT, CYCLE_IDX, Access, Outcome
from pmupart.arch.sysreg import RegDef
from pmupart.kvm.options import Backend

if TYPE_CHECKING:
    from pmupart.host.kernel import HostKernel
    from pmupart.kvm.kvm import VCPU

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
PMCR_E, PMCR_P, PMCR_C, PMCR_D, PMCR_X, PMCR_DP, PMCR_LC, PMCR_LP = (
    1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7)
EXCLUDE_EL1, EXCLUDE_EL0, INCLUDE_EL2 = 1 << 31, 1 << 30, 1 << 27
USERENR_EN, USERENR_SW, USERENR_CR, USERENR_ER = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_UNDEF = Access(Outcome.UNDEFINED)
#: The SET/CLR register pairs and the virtual bitmap each reads and writes.
_BITMAPS = {"PMCNTENSET_EL0": "cnten", "PMCNTENCLR_EL0": "cnten",
            "PMOVSSET_EL0": "ovs", "PMOVSCLR_EL0": "ovs",
            "PMINTENSET_EL1": "inten", "PMINTENCLR_EL1": "inten"}
_OK = Access(Outcome.OK)


class VcpuPmu:
    """Virtual PMU registers of one vCPU, and what both backends do with them."""

    backend: Backend

    def __init__(self, vcpu: VCPU) -> None:
        self.vcpu = vcpu
        self.vm = vcpu.vm
        self.host: HostKernel = vcpu.vm.kvm.host
        self.pmuver = self.vm.guest_pmuver()
        # reset_pmcr (sys_regs.c): 0, with LC only when the system has no AArch32 EL0
        # (!kvm_supports_32bit_el0()); IMP/IDCODE and N are never stored.
        self.pmcr = 0 if self._aarch32_el0() else PMCR_LC
        self.cnten = 0
        self.ovs = 0
        self.inten = 0
        self.selr = 0
        self.userenr = 0
        self.ccfiltr = 0
        self.evtyper = [0] * 31
        self.evcntr = [0] * 31
        self.ccntr = 0
        self.irq_level = False
        self.irqs_injected = 0

    # ------------------------------------------------------------------ guest view
    @property
    def nr(self) -> int:
        """PMCR_EL0.N as the guest sees it: ``kvm->arch.nr_pmu_counters``."""
        return self.vm.nr_pmu_counters

    def implemented_mask(self) -> int:
        """``kvm_pmu_implemented_counter_mask``: GENMASK(N-1, 0) | cycle."""
        return ((1 << self.nr) - 1) | C_BIT

    def evmask(self) -> int:
        """``kvm_pmu_event_mask``: 10 event bits for PMUv3, 16 from PMUv3p1."""
        return 0xFFFF if self.pmuver >= PMUVer.V3P1 else 0x3FF

    def evtyper_mask(self) -> int:
        """``kvm_pmu_evtyper_mask`` for a guest without EL2 or EL3."""
        return EXCLUDE_EL1 | EXCLUDE_EL0 | self.evmask()

    def is_64bit(self, idx: int) -> bool:
        """``kvm_pmc_is_64bit``: the cycle counter, and every counter from PMUv3p5."""
        return idx == CYCLE_IDX or self.pmuver >= PMUVer.V3P5

    def has_64bit_overflow(self, idx: int) -> bool:
        """``kvm_pmc_has_64bit_overflow``: PMCR.LC for the cycle counter, PMCR.LP (PMUv3p5)
        for event counters."""
        if idx == CYCLE_IDX:
            return bool(self.pmcr & PMCR_LC)
        return self.pmuver >= PMUVer.V3P5 and bool(self.pmcr & PMCR_LP)

    def _aarch32_el0(self) -> bool:
        """``kvm_supports_32bit_el0``: every CPU of the system has AArch32 EL0 (a mismatched
        system counts as none for KVM)."""
        return all(hc.pe.aarch32 for hc in self.host.cpus)

    def pmcr_read(self) -> int:
        """``kvm_vcpu_read_pmcr``: the stored bits with N = nr_pmu_counters.  IMP and IDCODE
        read as 0 on every host: ``reset_pmcr`` stores 0 and ``access_pmcr`` keeps only bits
        [7:0] of a write (spec kernel-code-deltas §3.3).  A partitioned guest that reads the
        hardware PMCR later sees the same IMP on the FGT cores of the catalogue, all PMUv3p7+
        where IMP is RAZ (ARM §D24.5.8; kernel-code-deltas §5.2)."""
        return self.pmcr | (self.nr << 11)

    def pmcr_writable(self) -> int:
        m = PMCR_E | PMCR_X | PMCR_DP | PMCR_LC | PMCR_D
        if self.pmuver >= PMUVer.V3P5:
            m |= PMCR_LP
        return m

    def pmceid(self, n: int) -> int:
        """``kvm_pmu_get_pmceid``: the VM PMU's common events (``compute_pmceid0/1``: bits
        [31:0] events base..base+31, bits [63:32] events 0x4000+base..; SW_INCR and CHAIN
        always set in PMCEID0; STALL_SLOT* cleared in PMCEID1, PMMIR being RAZ), then ANDed
        with the VM's event filter, SW_INCR and CHAIN included (no exemption here, unlike
        the vcpu.rst FILTER text; spec kernel-code-deltas §3.5).  The upper half is masked
        only when the guest's event space reaches 0x4000+base+32 (PMUv3p1+)."""
        pmu = self.vm.arm_pmu
        if pmu is None:
            return 0
        base = 0x20 * n
        v = 0
        for ev in pmu.core.events:
            if base <= ev < base + 32:
                v |= 1 << (ev - base)
            elif 0x4000 + base <= ev < 0x4000 + base + 32:
                v |= 1 << (32 + ev - 0x4000 - base)
        if n == 0:
            v |= (1 << int(Event.SW_INCR)) | (1 << int(Event.CHAIN))
        elif not self.vcpu.pmu_strict:
            # compute_pmceid1: STALL_SLOT* hidden unless KVM_ARM_VCPU_PMU_V3_STRICT (mainline
            # 7.3: with STRICT, PMMIR.SLOTS is exposed and the events are meaningful,
            # kernel-code-deltas §3.13)
            for ev in (Event.STALL_SLOT_BACKEND, Event.STALL_SLOT_FRONTEND, Event.STALL_SLOT):
                v &= ~(1 << (int(ev) - 0x20))
        flt = self.vm.pmu_filter
        if flt is None:
            return v
        nr_events = self.evmask() + 1
        mask = 0
        for i in range(32):
            if base + i in flt:
                mask |= 1 << i
            if nr_events >= 0x4000 + base + 32 and 0x4000 + base + i in flt:
                mask |= 1 << (32 + i)
        return v & mask

    def pmmir(self) -> int:
        """``access_pmmir`` (mainline 7.3): SLOTS from ``kvm->arch.pmmir_slots`` (set by SET_PMU
        under KVM_ARM_VCPU_PMU_V3_STRICT, else 0), every other field RAZ; writes are refused
        by ``write_to_read_only`` but the register is read-only for the guest anyway.  Before
        7.3 (``trap_raz_wi``) pmmir_slots is never set, so the value is 0 the same way."""
        return self.vm.pmmir_slots & 0xFF

    # ------------------------------------------------------------------ interrupts
    def overflow_status(self) -> bool:
        """``kvm_pmu_overflow_status``: PMCR.E and an overflow flag with its interrupt
        enabled among the implemented counters."""
        return bool(self.pmcr & PMCR_E) and bool(self.ovs & self.inten & self.implemented_mask())

    def handle_guest_irq(self, cpu: int, bits: int) -> None:  # pragma: no cover - partitioned
        """Overflow bits of guest-owned hardware counters (partitioned backend only)."""

    # ------------------------------------------------------------------ hooks
    def load(self, cpu: int) -> None:
        """``kvm_vcpu_load`` PMU part."""

    def put(self, cpu: int) -> None:
        """``kvm_vcpu_put`` PMU part."""

    def handle_trap(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        """Emulate a trapped access (``kvm_handle_sys_reg``)."""
        raise NotImplementedError

    def el0_disabled(self, reg: RegDef, write: bool) -> bool:
        """``pmu_access_el0_disabled`` and friends: the virtual PMUSERENR_EL0 gate for a
        trapped EL0 access (KVM injects UNDEF, where hardware would trap to EL1)."""
        if reg.name == "PMUSERENR_EL0":
            # access_pmuserenr: a read has no check at all; a write UNDEFs unless at EL1
            # (spec kernel-code-deltas §3.1; ARM §D24.5.26: EL0 reads are not gated).
            return write
        u = self.userenr
        if u & USERENR_EN:
            return False
        if reg.user_en is None:
            return True
        allowed = reg.user_en.write if write else reg.user_en.read
        bits = {"ER": USERENR_ER, "CR": USERENR_CR, "SW": USERENR_SW}
        return not any(u & bits[b] for b in allowed if b in bits)

    def counter_value(self, idx: int) -> int:
        """The guest-visible value of counter ``idx`` (31 = PMCCNTR)."""
        return self.ccntr if idx == CYCLE_IDX else self.evcntr[idx]

    def sync_irq(self) -> bool:
        """Recompute the virtual interrupt level (``kvm_pmu_update_state``); True if it rose."""
        new = self.overflow_status()
        rose = new and not self.irq_level
        self.irq_level = new
        return rose


    # ------------------------------------------------------------------ virtual accessors
    def virtual_access(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        """The ``access_pm*`` handlers of ``sys_regs.c`` against the virtual registers, through
        the counter hooks the backend provides (``counter_value``/``set_counter_value``/
        ``store_counter``, ``on_evtyper_change``, ``reprogram``)."""
        if el == 0 and self.el0_disabled(reg, write):
            return _UNDEF  # KVM injects UNDEF for a disabled EL0 access
        fam = reg.family
        if fam == "PMEVCNTR<n>_EL0":
            return self._acc_cntr(reg.index or 0, write, value)
        if fam == "PMEVTYPER<n>_EL0":
            return self._acc_typer(reg.index or 0, write, value)
        name = reg.name
        impl = self.implemented_mask()
        if name == "PMCR_EL0":
            if not write:
                return Access(Outcome.OK, self.pmcr_read())
            self.handle_pmcr(value)
            return _OK
        attr = _BITMAPS.get(name)
        if attr is not None:  # the SET/CLR pairs: one state, write-1-to-set / -to-clear
            cur = getattr(self, attr)
            if not write:
                return Access(Outcome.OK, cur & impl)
            setattr(self, attr, (cur | (value & impl)) if "SET_" in name else (cur & ~value))
            if attr == "cnten":
                self.reprogram()
            return _OK
        if name == "PMSELR_EL0":
            if write:
                self.selr = value & 0x1F
                return _OK
            return Access(Outcome.OK, self.selr)
        if name == "PMXEVCNTR_EL0":
            # KVM's access_pmu_evcntr takes SEL = 31 as the cycle counter (an architectural
            # PE makes it UNDEFINED: 31 >= N); followed as KVM does.
            return self._acc_cntr(self.selr, write, value)
        if name == "PMXEVTYPER_EL0":
            return self._acc_typer(self.selr, write, value)
        if name == "PMCCNTR_EL0":
            return self._acc_cntr(CYCLE_IDX, write, value)
        if name == "PMCCFILTR_EL0":
            return self._acc_typer(CYCLE_IDX, write, value)
        if name == "PMSWINC_EL0":
            self.counter_increment(value & impl & ~C_BIT, int(Event.SW_INCR), el)
            self.sync_irq()
            return _OK
        if name == "PMUSERENR_EL0":
            if write:
                self.userenr = value & 0xF
                return _OK
            return Access(Outcome.OK, self.userenr)  # access_pmuserenr: & USERENR_MASK
        if name in ("PMCEID0_EL0", "PMCEID1_EL0"):
            return Access(Outcome.OK, self.pmceid(int(name[6])))
        if name == "PMMIR_EL1":
            return Access(Outcome.OK, self.pmmir())
        return _UNDEF  # PMICNTR/PMICFILTR/PMZR/PMUACR: beyond the guest's PMUv3p5

    def _valid(self, idx: int) -> bool:
        """``pmu_counter_idx_valid``: an implemented event counter, or the cycle counter."""
        return idx == CYCLE_IDX or idx < self.nr

    def _acc_cntr(self, idx: int, write: bool, value: int) -> Access:
        if not self._valid(idx):
            return _UNDEF
        if write:
            self.set_counter_value(idx, value)
            return _OK
        return Access(Outcome.OK, self.counter_value(idx))

    def _acc_typer(self, idx: int, write: bool, value: int) -> Access:
        if not self._valid(idx):
            return _UNDEF
        if not write:
            return Access(Outcome.OK, self.ccfiltr if idx == CYCLE_IDX else self.evtyper[idx])
        # kvm_pmu_set_counter_event_type: data & kvm_pmu_evtyper_mask = P | U | the event
        # mask; INCLUDE_EL2 (bit 27) only for a guest with EL2 (nested virt, not modelled),
        # the NS bits only with EL3.  PMCCFILTR takes the same mask, so its evtCount bits
        # [15:0] (RES0 in the architecture) read back as written (spec kernel-code-deltas §3.2).
        v = value & self.evtyper_mask()
        if idx == CYCLE_IDX:
            self.ccfiltr = v
        else:
            self.evtyper[idx] = v
        self.on_evtyper_change(idx)
        return _OK

    def handle_pmcr(self, value: int) -> None:
        """``kvm_pmu_handle_pmcr``: store the writable bits; C zeroes the cycle counter, P the
        event counters (all of them: the guest is not at vEL2); reprogram for E."""
        w = self.pmcr_writable()
        self.pmcr = (self.pmcr & ~w) | (value & w)
        # access_pmcr (sys_regs.c): LC is RES1 when the system has no AArch32 EL0
        # (!kvm_supports_32bit_el0()), as on the PE itself (spec pmuv3 §3; ARM §D24.5.8).
        if not self._aarch32_el0():
            self.pmcr |= PMCR_LC
        if value & PMCR_C:
            self.set_counter_value(CYCLE_IDX, 0)
        if value & PMCR_P:
            for i in range(self.nr):
                self.set_counter_value(i, 0)
        self.reprogram()

    def counts_at(self, typer: int, el: int | None) -> bool:
        """Whether a counter with this filter counts at ``el`` (EL0: U, EL1: P); None = any."""
        if el is None:
            return True
        return not (typer & (EXCLUDE_EL0 if el == 0 else EXCLUDE_EL1))

    def counter_increment(self, mask: int, event: int, el: int | None) -> None:
        """``kvm_pmu_counter_increment``: SW_INCR and CHAIN, emulated: each enabled counter in
        ``mask`` counting ``event`` at ``el`` goes up by one; a wrap sets its overflow flag
        and, for an even counter that can chain, feeds CHAIN to the next."""
        if not self.pmcr & PMCR_E:
            return
        mask &= self.cnten & self.implemented_mask()
        i = 0
        while mask >> i:
            if (mask >> i) & 1 and i < 31:
                t = self.evtyper[i]
                if (t & self.evmask()) == event and self.counts_at(t, el):
                    wide = self.has_64bit_overflow(i)
                    v = self.counter_value(i) + 1
                    # kvm_pmu_counter_increment truncates by kvm_pmc_is_64bit (the counter's
                    # width), and tests overflow by kvm_pmc_has_64bit_overflow (LP): a 64-bit
                    # counter with LP = 0 keeps its upper half (spec pmuv3 §6; ARM §D13.3
                    # IFYVTD).
                    if not self.is_64bit(i):
                        v &= M32
                    self.store_counter(i, v)
                    if (v & (M64 if wide else M32)) == 0:
                        self.ovs |= 1 << i
                        if i % 2 == 0 and i + 1 < CYCLE_IDX and not wide:
                            self.counter_increment(1 << (i + 1), int(Event.CHAIN), None)
            i += 1

    # Hooks a backend overrides: the default is frozen virtual counters.
    def set_counter_value(self, idx: int, value: int) -> None:
        self.store_counter(idx, value)

    def store_counter(self, idx: int, value: int) -> None:
        if idx == CYCLE_IDX:
            self.ccntr = value & M64
        else:
            self.evcntr[idx] = value & (M64 if self.is_64bit(idx) else M32)

    def on_evtyper_change(self, idx: int) -> None:
        """A PMEVTYPER/PMCCFILTR write (the backend reprograms what counts)."""

    def reprogram(self) -> None:
        """PMCR.E / PMCNTEN changed (``kvm_pmu_reprogram_counter_mask``)."""


def make_vcpu_pmu(vcpu: VCPU) -> VcpuPmu:
    """The backend for a vCPU at INIT: partitioned when the VMM enabled it, else emulated."""
    if vcpu.partition_requested:
        from pmupart.kvm.pmu_direct import PartitionedPmu
        return PartitionedPmu(vcpu)
    from pmupart.kvm.pmu_emul import EmulatedPmu
    return EmulatedPmu(vcpu)


__all__ = ["VcpuPmu", "make_vcpu_pmu"]
