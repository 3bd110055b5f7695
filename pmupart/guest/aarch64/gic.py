"""A GICv3 CPU interface and redistributor, as much as a guest's PMU interrupt handler needs.

The model follows the GICv3 architecture (Arm IHI 0069, "GICv3 and GICv4 Architecture
Specification"): one PE, its redistributor's SGI/PPI state (INTIDs 0-31), the CPU
interface's Group 1 system registers, and a distributor that only answers its ID and
control registers.  What it models:

* **Redistributor, SGI_base frame** (IHI 0069 §12.10, the GICR_* register map): GICR_IGROUPR0,
  GICR_ISENABLER0 / GICR_ICENABLER0, GICR_ISPENDR0 / GICR_ICPENDR0, GICR_ISACTIVER0 /
  GICR_ICACTIVER0, GICR_IPRIORITYR<n> (byte accessible) and GICR_ICFGR0/1.  RD_base frame:
  GICR_CTLR, GICR_IIDR, GICR_TYPER (Last = 1: the only redistributor), GICR_WAKER
  (ChildrenAsleep follows ProcessorSleep), GICR_PIDR2 (ArchRev 3).
* **PPIs are level-sensitive** (IHI 0069 §1.2.1; the PMU's overflow interrupt is a PPI,
  conventionally 23, and is level-sensitive, ARM DDI0487 §D13.2 "the PMU overflow interrupt
  request"): an INTID is pending while its input line is high or a write to GICR_ISPENDR0 has
  latched it.  Reading GICR_ISPENDR0 shows both.
* **Signalling** (IHI 0069 §4.8 "Interrupt prioritization", §4.1 "the CPU interface"): the
  highest-priority pending, enabled, inactive Group 1 INTID is signalled to the PE as IRQ when
  ICC_IGRPEN1_EL1.Enable is 1, its priority is below ICC_PMR_EL1 and below the running
  priority.  Group 0 INTIDs (FIQ) are never signalled: a guest under KVM's vGICv3, and the
  runtime shipped with pmupart, use Group 1 (KVM's ``vgic_init`` puts every INTID in Group 1
  for a GICv3 model; that is also this model's reset state).
* **CPU interface registers** (IHI 0069 §12.2): ICC_IAR1_EL1 acknowledges (the INTID becomes
  active, its priority the running priority; 1023 when nothing is signalled), ICC_EOIR1_EL1
  drops the priority and, with ICC_CTLR_EL1.EOImode = 0, deactivates; ICC_DIR_EL1
  deactivates; ICC_PMR_EL1 and GICR_IPRIORITYR keep 5 priority bits (ICC_CTLR_EL1.PRIbits
  = 4, as KVM's vGICv3 advertises); ICC_SRE_EL1 reads SRE/DFB/DIB = 1 and ignores writes
  (system-register access is the only interface, as under KVM); ICC_RPR_EL1,
  ICC_HPPIR1_EL1, ICC_BPR1_EL1, ICC_IGRPEN1_EL1.  ICC_SGI1R_EL1 writes are accepted and do
  nothing (there is no other PE).

Not modelled: SPIs and LPIs, the distributor's enables (GICD_CTLR is stored and read back;
a PPI does not depend on it in this model), Group 0, binary-point preemption (every
priority preempts by its full value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GICD_BASE", "GICR_BASE", "ICC_REGS", "SPURIOUS", "GicV3"]

#: Guest-physical addresses, those of QEMU's ``virt`` machine (so an image runs there too).
GICD_BASE = 0x0800_0000
GICD_SIZE = 0x1_0000
GICR_BASE = 0x080A_0000
GICR_SIZE = 0x2_0000  #: RD_base frame + SGI_base frame
SPURIOUS = 1023  #: INTID returned by an acknowledge with nothing signalled (IHI 0069 §2.2.1)
_IDLE = 0xFF  #: running priority with no active interrupt
_PRI_MASK = 0xF8  #: 5 implemented priority bits

#: (op0, op1, CRn, CRm, op2) -> name of the ICC_* system registers (IHI 0069 §12.2).
ICC_REGS: dict[tuple[int, int, int, int, int], str] = {
    (3, 0, 4, 6, 0): "ICC_PMR_EL1",
    (3, 0, 12, 8, 0): "ICC_IAR0_EL1",
    (3, 0, 12, 8, 1): "ICC_EOIR0_EL1",
    (3, 0, 12, 8, 2): "ICC_HPPIR0_EL1",
    (3, 0, 12, 8, 3): "ICC_BPR0_EL1",
    (3, 0, 12, 11, 1): "ICC_DIR_EL1",
    (3, 0, 12, 11, 3): "ICC_RPR_EL1",
    (3, 0, 12, 11, 5): "ICC_SGI1R_EL1",
    (3, 0, 12, 12, 0): "ICC_IAR1_EL1",
    (3, 0, 12, 12, 1): "ICC_EOIR1_EL1",
    (3, 0, 12, 12, 2): "ICC_HPPIR1_EL1",
    (3, 0, 12, 12, 3): "ICC_BPR1_EL1",
    (3, 0, 12, 12, 4): "ICC_CTLR_EL1",
    (3, 0, 12, 12, 5): "ICC_SRE_EL1",
    (3, 0, 12, 12, 6): "ICC_IGRPEN0_EL1",
    (3, 0, 12, 12, 7): "ICC_IGRPEN1_EL1",
}


@dataclass
class GicV3:
    """One PE's GICv3 state: its redistributor's INTIDs 0-31 and its CPU interface."""

    group1: int = 0xFFFF_FFFF  #: GICR_IGROUPR0 (KVM's vgic_init: Group 1 for a GICv3 model)
    enabled: int = 0
    latched: int = 0  #: pending state set by GICR_ISPENDR0 (cleared by ICPENDR0 or an ack)
    active: int = 0
    priority: list[int] = field(default_factory=lambda: [0] * 32)
    icfgr: list[int] = field(default_factory=lambda: [0xAAAA_AAAA, 0])  # SGIs edge, PPIs level
    pmr: int = 0
    bpr1: int = 0
    eoimode: int = 0
    igrpen1: int = 0
    igrpen0: int = 0
    waker: int = 0x6  #: ProcessorSleep and ChildrenAsleep set at reset
    gicr_ctlr: int = 0
    gicd_ctlr: int = 0
    running: list[tuple[int, int]] = field(default_factory=list)  #: (priority, INTID) stack
    touched: bool = False  #: the guest used the GIC (registers or MMIO)
    acks: int = 0  #: acknowledges that returned an interrupt

    # ------------------------------------------------------------------ signalling
    def pending(self, lines: int) -> int:
        """Pending INTIDs: latched or with their (level-sensitive) line high."""
        return (self.latched | lines) & 0xFFFF_FFFF

    def running_priority(self) -> int:
        return self.running[-1][0] if self.running else _IDLE

    def _best(self, lines: int) -> int | None:
        cand = self.pending(lines) & self.enabled & ~self.active & self.group1
        best: int | None = None
        for i in range(32):
            if (cand >> i) & 1 and (best is None or self.priority[i] < self.priority[best]):
                best = i
        return best

    def signalled(self, lines: int) -> int | None:
        """The INTID the CPU interface signals as IRQ, or None (IHI 0069 §4.8)."""
        if not self.igrpen1 & 1:
            return None
        best = self._best(lines)
        if best is None:
            return None
        p = self.priority[best]
        if p >= self.pmr or p >= self.running_priority():
            return None
        return best

    # ------------------------------------------------------------------ CPU interface
    def read_icc(self, name: str, lines: int) -> int:
        self.touched = True
        if name == "ICC_IAR1_EL1":
            intid = self.signalled(lines)
            if intid is None:
                return SPURIOUS
            self.active |= 1 << intid
            self.latched &= ~(1 << intid)
            self.running.append((self.priority[intid], intid))
            self.acks += 1
            return intid
        if name == "ICC_HPPIR1_EL1":
            best = self._best(lines)
            return SPURIOUS if best is None else best
        if name in ("ICC_IAR0_EL1", "ICC_HPPIR0_EL1"):
            return SPURIOUS  # Group 0 is never signalled
        if name == "ICC_RPR_EL1":
            return self.running_priority()
        if name == "ICC_PMR_EL1":
            return self.pmr
        if name == "ICC_BPR1_EL1":
            return self.bpr1
        if name == "ICC_CTLR_EL1":
            return (4 << 8) | (self.eoimode << 1)  # PRIbits = 4 (5 bits), IDbits = 0 (16)
        if name == "ICC_SRE_EL1":
            return 0x7
        if name == "ICC_IGRPEN1_EL1":
            return self.igrpen1
        if name == "ICC_IGRPEN0_EL1":
            return self.igrpen0
        return 0  # write-only registers read as 0 (ICC_EOIR*, ICC_DIR, ICC_SGI1R)

    def write_icc(self, name: str, value: int) -> int | None:
        """A write to a CPU interface register; returns the INTID the write deactivated
        (EOIR with EOImode = 0, or DIR), if one was active: under KVM that is where a vGIC
        list register with ICH_LR_EOI raises its maintenance interrupt."""
        self.touched = True
        if name == "ICC_EOIR1_EL1":
            intid = value & 0xFFFFFF
            for k in range(len(self.running) - 1, -1, -1):
                if self.running[k][1] == intid:
                    del self.running[k]  # priority drop
                    break
            if not self.eoimode:
                return self._deactivate(intid)
        elif name == "ICC_DIR_EL1":
            return self._deactivate(value & 0xFFFFFF)
        elif name == "ICC_PMR_EL1":
            self.pmr = value & _PRI_MASK
        elif name == "ICC_BPR1_EL1":
            self.bpr1 = value & 0x7
        elif name == "ICC_CTLR_EL1":
            self.eoimode = (value >> 1) & 1
        elif name == "ICC_IGRPEN1_EL1":
            self.igrpen1 = value & 1
        elif name == "ICC_IGRPEN0_EL1":
            self.igrpen0 = value & 1
        # ICC_SRE_EL1 (RAO/WI here), ICC_EOIR0, ICC_SGI1R_EL1: no effect
        return None

    def _deactivate(self, intid: int) -> int | None:
        if intid < 32 and (self.active >> intid) & 1:
            self.active &= ~(1 << intid)
            return intid
        return None

    # ------------------------------------------------------------------ MMIO

    def mmio_read(self, addr: int, size: int, lines: int) -> int:
        """A read of ``size`` bytes at guest-physical ``addr`` in the GICD or GICR window."""
        self.touched = True
        if GICD_BASE <= addr < GICD_BASE + GICD_SIZE:
            off = addr - GICD_BASE
            if off == 0x0:
                return self.gicd_ctlr
            if off == 0x4:  # GICD_TYPER: ITLinesNumber 0, IDbits 15 (16 bits), no LPIs
                return 15 << 19
            if off == 0xFFE8:
                return 0x30  # GICD_PIDR2.ArchRev = 3 (GICv3)
            return 0
        off = addr - GICR_BASE
        if off < 0x10000:  # RD_base
            if off == 0x0:
                return self.gicr_ctlr
            if off == 0x4:
                return 0x43B  # GICR_IIDR: Arm implementer code
            if off in (0x8, 0xC):
                typer = 1 << 4  # Last
                return (typer >> (8 * (off - 0x8))) & ((1 << (8 * size)) - 1)
            if off == 0x14:
                return self.waker
            if off == 0xFFE8:
                return 0x30
            return 0
        off -= 0x10000  # SGI_base
        if off == 0x80:
            return self.group1
        if off in (0x100, 0x180):
            return self.enabled
        if off in (0x200, 0x280):
            return self.pending(lines)
        if off in (0x300, 0x380):
            return self.active
        if 0x400 <= off < 0x420:
            i = off - 0x400
            return sum(self.priority[i + k] << (8 * k) for k in range(min(size, 32 - i)))
        if off in (0xC00, 0xC04):
            return self.icfgr[(off - 0xC00) // 4]
        return 0

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        self.touched = True
        if GICD_BASE <= addr < GICD_BASE + GICD_SIZE:
            if addr == GICD_BASE:
                self.gicd_ctlr = value & 0xFFFF_FFFF
            return
        off = addr - GICR_BASE
        if off < 0x10000:
            if off == 0x0:
                self.gicr_ctlr = value & 0x1
            elif off == 0x14:
                sleep = value & 0x2
                self.waker = sleep | (0x4 if sleep else 0)  # ChildrenAsleep follows
            return
        off -= 0x10000
        v = value & 0xFFFF_FFFF
        if off == 0x80:
            self.group1 = v
        elif off == 0x100:
            self.enabled |= v
        elif off == 0x180:
            self.enabled &= ~v
        elif off == 0x200:
            self.latched |= v
        elif off == 0x280:
            self.latched &= ~v
        elif off == 0x300:
            self.active |= v
        elif off == 0x380:
            self.active &= ~v
        elif 0x400 <= off < 0x420:
            i = off - 0x400
            for k in range(min(size, 32 - i)):
                self.priority[i + k] = (value >> (8 * k)) & _PRI_MASK
        elif off == 0xC04:
            self.icfgr[1] = v  # PPIs: stored; the PMU PPI stays level-sensitive
