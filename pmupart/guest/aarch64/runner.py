"""Run AArch64 machine code under unicorn with its PMU accesses going to the pmupart model.

:class:`AArch64Program` is a guest program (DESIGN.md decision 4: a callable taking the
CPU object) that runs real code on whatever it is given: a bare :class:`pmupart.arch.PE`,
or a KVM guest CPU (``pmupart.kvm``, emulated or partitioned vPMU).  What it models:

* **System register moves.**  Every MRS/MSR whose (op0, op1, CRn, CRm, op2) is in the
  register table (``pmupart.arch.sysreg.lookup_encoding``) goes to ``cpu.read/write``;
  anything else (VBAR_EL1, ELR_EL1, DAIF, ...) is left to the emulated CPU.
* **Exceptions** (ARM DDI0487 §D1.3 exception entry, §D1.3.2 vector offsets): an access whose
  outcome is ``UNDEFINED`` is taken to EL1 with ESR_EL1.EC = 0x00, ``TRAP_EL1`` with EC =
  0x18 and the MSR/MRS ISS (Op0, Op2, Op1, CRn, Rt, CRm, direction; ARM §D24.2 ESR_EL1, ISS
  encoding for an exception from MSR, MRS or System instruction execution); SVC with EC 0x15,
  BRK with EC 0x3C, other UNDEFINED instructions with EC 0x00.  ELR_EL1 is the preferred
  return address, SPSR_EL1 the old PSTATE, PSTATE becomes EL1h with D, A, I, F set, and the
  PC the VBAR_EL1 vector (+0x000 current EL with SP_EL0, +0x200 current EL with SP_ELx,
  +0x400 lower EL; +0x80 for IRQ).  ``TRAP_EL2`` (bare PE) goes to a hypervisor model
  (:class:`Hypervisor`) which emulates the access and returns to the next instruction, or
  injects UNDEF, as KVM's ``kvm_handle_sys_reg`` / ``kvm_inject_undefined`` do.  ``HVC`` at
  EL1 is a hypercall to the same model (PSCI ``SYSTEM_OFF`` ends the run).
* **The PMU interrupt** is taken at VBAR_EL1 + 0x80 (+ the offset for the current EL)
  when its level is high and PSTATE.I is 0 (ARM §D1.3.6 asynchronous exception masking;
  the PMU interrupt is level-sensitive, spec §7), checked after every PMU register
  write, after every DAIF write and exception return, and at each overflow point.
* **Counting.**  INST_RETIRED counts each instruction architecturally executed (ARM §D14.3
  INST_RETIRED: an instruction that takes a synchronous exception instead of executing,
  like a trapped MRS or an UNDEFINED instruction, is not counted; SVC/HVC/ERET/WFI are);
  CPU_CYCLES is ``floor(instructions * core.cpi)`` (the catalogue's cost parameter) plus, at
  EL2, the trap costs of ``core.costs``.  Counts are delivered to ``cpu.count`` in blocks,
  cut exactly before every PMU register access, exception, exception return and at the
  instruction where a counter overflows (so the interrupt is taken with zero skid and
  freeze-on-overflow and overflow flags are exact).  In ``precise`` mode LD_RETIRED,
  ST_RETIRED and BR_RETIRED are counted from the instructions of each block (ARM §D14.3;
  the PMUv3p9 BR_RETIRED rule: exception returns counted, SVC/HVC/ISB not), and
  MEM_ACCESS from a native memory-access hook: one per data access the emulator makes.

Limits: code must not modify itself (hook sites are found by scanning the code once); the
MMU stays off (flat memory); SIMD structure loads count their MEM_ACCESS correctly but
the overflow point of a MEM_ACCESS counter assumes at most 2 accesses per instruction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from pmupart.arch.pe import Access, Outcome
from pmupart.arch.sysreg import RegDef, lookup_encoding
from pmupart.errors import PmupartError
from pmupart.guest.aarch64 import native as N
from pmupart.guest.aarch64.asm import assemble

__all__ = [
    "PSCI_SYSTEM_OFF",
    "AArch64Program",
    "ExceptionRecord",
    "ForwardingHypervisor",
    "GuestError",
    "HypResult",
    "Hypervisor",
    "RunResult",
    "SysregTrap",
]

PSCI_SYSTEM_OFF = 0x84000008  #: SMCCC function id of PSCI SYSTEM_OFF (Arm DEN0022)
SMCCC_NOT_SUPPORTED = (1 << 64) - 1  #: -1

_EC_UNKNOWN = 0x00
_EC_SVC64 = 0x15
_EC_SYSREG = 0x18
_EC_BRK64 = 0x3C
_IL = 1 << 25

# QEMU exception numbers unicorn reports to UC_HOOK_INTR (target/arm/cpu.h).
_EXCP_UDEF, _EXCP_SWI, _EXCP_HVC, _EXCP_BKPT = 1, 2, 11, 7

_SPSR_EL1 = (3, 0, 4, 0, 0)
_TPIDR_EL1 = (3, 0, 13, 0, 4)
_MAX_ADDR = (1 << 64) - 4
_MEM_FACTOR = 2  # data accesses per instruction assumed when predicting MEM_ACCESS overflow


class GuestError(PmupartError, RuntimeError):
    """The guest did something the runner cannot continue from (bad fetch, runaway)."""


@dataclass(frozen=True)
class SysregTrap:
    """An MSR/MRS that trapped to EL2: what KVM's ``kvm_handle_sys_reg`` gets."""

    reg: RegDef
    write: bool
    value: int  #: Xt for a write
    rt: int
    el: int  #: the guest EL the access came from
    esr: int  #: the ESR_EL2 syndrome (EC 0x18)


@dataclass(frozen=True)
class HypResult:
    """What the hypervisor did with a trap: emulated (``value`` for a read) or UNDEF."""

    value: int = 0
    undef: bool = False


class Hypervisor(Protocol):
    """The EL2 side of a bare-PE run: handles TRAP_EL2 outcomes and HVC."""

    def sysreg_trap(self, cpu: Any, trap: SysregTrap) -> HypResult: ...

    def hvc(self, cpu: Any, imm: int, x: list[int]) -> int | None:
        """Return the value for X0, or None to power the guest off."""
        ...


class ForwardingHypervisor:
    """A minimal trap-and-emulate hypervisor for a bare PE.

    A trapped PMU access is performed on the guest's behalf, at the guest's EL, with the
    PMU traps lifted for that one access (so the guest sees the first ``MDCR_EL2.HPMN``
    counters and PMCR_EL0.N = HPMN); an access that still faults (a counter at or above
    HPMN, or an UNDEFINED one) gets an UNDEF injected, as KVM's ``pmu_counter_idx_valid`` /
    ``kvm_inject_undefined`` do.  Each trap
    costs ``exception_entry_el2 + sysreg_access + exception_return`` cycles at EL2 (the
    core's cost parameters).  HVC: PSCI SYSTEM_OFF powers off; anything else returns
    SMCCC NOT_SUPPORTED.
    """

    def __init__(self) -> None:
        self.traps: list[SysregTrap] = []

    def sysreg_trap(self, cpu: Any, trap: SysregTrap) -> HypResult:
        self.traps.append(trap)
        pe = cpu
        core = getattr(pe, "core", None)
        with pe.at_el(2):
            if core is not None:
                c = core.costs
                pe.count({"CPU_CYCLES": c.exception_entry_el2 + c.sysreg_access
                          + c.exception_return})
            saved = {r: pe.read(r).value or 0 for r in ("MDCR_EL2", "HDFGRTR_EL2",
                                                        "HDFGWTR_EL2")}
            pe.write("MDCR_EL2", saved["MDCR_EL2"] & ~((1 << 6) | (1 << 5)))  # TPM, TPMCR
            pe.write("HDFGRTR_EL2", 0)
            pe.write("HDFGWTR_EL2", 0)
        try:
            with pe.at_el(trap.el):
                acc = (pe.write(trap.reg.name, trap.value) if trap.write
                       else pe.read(trap.reg.name))
        finally:
            with pe.at_el(2):
                for r, v in saved.items():
                    pe.write(r, v)
        if acc.outcome is not Outcome.OK:
            return HypResult(undef=True)  # beyond HPMN (still trapping) or UNDEFINED
        return HypResult(value=acc.value or 0)

    def hvc(self, cpu: Any, imm: int, x: list[int]) -> int | None:
        if imm == 0 and x[0] == PSCI_SYSTEM_OFF:
            return None
        return SMCCC_NOT_SUPPORTED


@dataclass(frozen=True)
class ExceptionRecord:
    """One exception the guest took (at EL1): kind, ESR, ELR and the EL it came from."""

    kind: str  #: "sync" or "irq"
    esr: int
    elr: int
    from_el: int

    @property
    def ec(self) -> int:
        return (self.esr >> 26) & 0x3F


@dataclass
class RunResult:
    """The end state of a run."""

    #: "poweroff" (PSCI SYSTEM_OFF), "wfi" (waiting with nothing that could wake it),
    #: "limit" (max_instructions reached), "exception-<n>" (an exception the runner does
    #: not model, e.g. a data abort)
    stop: str
    x: list[int]
    pc: int
    el: int
    instructions: int  #: instructions architecturally executed
    cycles: int  #: CPU_CYCLES generated by the guest's instructions (excluding EL2 costs)
    exceptions: list[ExceptionRecord] = field(default_factory=list)
    hvc_traps: int = 0
    mem: Callable[[int, int], bytes] | None = None

    def irqs(self) -> int:
        return sum(1 for e in self.exceptions if e.kind == "irq")

    def read64(self, addr: int) -> int:
        assert self.mem is not None
        return int(struct.unpack("<Q", self.mem(addr, 8))[0])


def _is_sysreg_move(w: int) -> bool:
    return (w & 0xFFD00000) == 0xD5100000  # MSR/MRS (register), op0 = 2 or 3


def _is_daif_write(w: int) -> bool:
    if (w & 0xFFFFF0DF) == 0xD50340DF:  # MSR DAIFSet/DAIFClr, #imm (op1=3, op2=6/7)
        return True
    return (w & 0xFFFFFFE0) == 0xD51B4220  # MSR DAIF, Xt


def _classify(w: int) -> tuple[int, int, int]:
    """(load, store, branch) for the static precise-mode tables (ARM §C4.1 encoding
    groups; ARM §D14.3 LD_RETIRED/ST_RETIRED/BR_RETIRED)."""
    if (w & 0x0A000000) == 0x08000000:  # loads and stores
        if (w & 0x3B000000) == 0x38000000 and (w & 0x00200C00) == 0x00200000 \
                and (w & 0x0000FC00) != 0x0000C000:
            return 1, 1, 0  # atomic memory operations: read and write
        if (w & 0xFFC00000) == 0xF9800000 or (w & 0xFF000000) == 0xD8000000:
            return 0, 0, 0  # PRFM: not counted as a load (IMPLEMENTATION DEFINED choice)
        if (w & 0x3B000000) == 0x18000000:
            return 1, 0, 0  # LDR (literal)
        return (1, 0, 0) if (w >> 22) & 1 else (0, 1, 0)
    if (w & 0x7C000000) == 0x14000000:  # B, BL
        return 0, 0, 1
    if (w & 0xFF000010) == 0x54000000:  # B.cond
        return 0, 0, 1
    if (w & 0x7E000000) in (0x34000000, 0x36000000):  # CBZ/CBNZ, TBZ/TBNZ
        return 0, 0, 1
    if (w & 0xFE000000) == 0xD6000000:  # BR, BLR, RET, ERET (register branches)
        return 0, 0, 1
    return 0, 0, 0


class AArch64Program:
    """A guest program made of AArch64 machine code.

    ``code`` is loaded at ``base`` in a flat RAM of ``mem_size`` bytes starting at 0 and
    started at ``entry`` (default ``base``) at EL ``el`` (1, or 0 for code that relies on its
    vectors being set up by the caller), with all of DAIF masked as after reset.
    ``program(cpu)`` runs it to completion and returns a :class:`RunResult`.
    """

    def __init__(self, code: bytes, base: int = 0x1000, entry: int | None = None, el: int = 1,
                 *, mem_size: int = 0x100000, precise: bool = False,
                 max_instructions: int = 10**10, hypervisor: Hypervisor | None = None,
                 labels: dict[str, int] | None = None) -> None:
        if el not in (0, 1):
            raise ValueError(f"a guest program starts at EL0 or EL1, not {el!r}")
        if len(code) % 4:
            raise ValueError("code length must be a multiple of 4 (A64 instructions)")
        if base % 4 or not 0 <= base < mem_size or base + len(code) > mem_size:
            raise ValueError(f"code at {base:#x}+{len(code):#x} must be 4-aligned and fit "
                             f"in memory of {mem_size:#x} bytes")
        if mem_size % 0x1000:
            raise ValueError("mem_size must be a multiple of 4 KiB")
        self.code = code
        self.base = base
        self.entry = base if entry is None else entry
        self.el = el
        self.mem_size = mem_size
        self.precise = precise
        self.max_instructions = max_instructions
        self.hypervisor = hypervisor
        self.labels = dict(labels or {})

    @classmethod
    def from_asm(cls, text: str, base: int = 0x1000, entry: int | str | None = None,
                 **kw: Any) -> AArch64Program:
        """Assemble ``text`` (see :mod:`pmupart.guest.aarch64.asm`); ``entry`` may be a label."""
        a = assemble(text, base)
        if isinstance(entry, str):
            if entry not in a.labels:
                raise ValueError(f"entry label {entry!r} is not defined")
            entry = a.labels[entry]
        elif entry is None and "_start" in a.labels:
            entry = a.labels["_start"]
        return cls(a.code, base, entry, labels=a.labels, **kw)

    def __call__(self, cpu: Any) -> RunResult:
        return _Run(self, cpu).run()

    run = __call__


class _Run:
    def __init__(self, prog: AArch64Program, cpu: Any) -> None:
        from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc  # type: ignore[attr-defined]

        self.p = prog
        self.cpu = cpu
        self.uc: Any = Uc(UC_ARCH_ARM64, UC_MODE_ARM)  # type: ignore[no-untyped-call]
        core = getattr(cpu, "core", None)
        if core is None:
            pe = getattr(cpu, "physical_pe", None)
            core = getattr(pe, "core", None)
        self.cpi = Fraction(core.cpi if core is not None else 1.0).limit_denominator(1000)
        self.hyp = prog.hypervisor or ForwardingHypervisor()
        self.state = N.NativeState()
        self.w = self.state.words
        self.delivered = 0  # instructions delivered to the model
        self.dl_ld = self.dl_st = self.dl_br = self.dl_mem = 0
        self.deadline = 0  # absolute instruction count of the next overflow point
        self.deadline_valid = False
        self.el_stale = False
        self.cur_el = prog.el
        self.pending: tuple[str, int, int] | None = None  # (kind, esr, pc of faulting insn)
        self.finished: str | None = None
        self.wfi_at: int | None = None
        self.stop_pc: int | None = None  # where a Python hook stopped the guest
        self.exceptions: list[ExceptionRecord] = []
        self.hvcs = 0
        self.el2_target = hasattr(cpu, "at_el")  # a bare PE: TRAP_EL2 is ours to handle
        self.vcpu_pmu = getattr(getattr(cpu, "vcpu", None), "pmu", None)
        if self.vcpu_pmu is not None and hasattr(cpu, "irqs_masked"):
            # The runner takes the interrupt at the guest's own vector; KVM's Python
            # handler path (GuestCpu.on_pmu_irq) stays unused.
            cpu.irqs_masked = True
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR
        from unicorn import arm64_const as A

        uc: Any = self.uc
        p = self.p
        uc.mem_map(0, p.mem_size)
        uc.mem_write(p.base, p.code)
        words = struct.unpack(f"<{len(p.code) // 4}I", p.code)
        self.w[N.STOPFN] = N.stop_fn_addr()
        self.w[N.DEADLINE] = (1 << 64) - 1
        comp = N.compiled()
        if p.precise:
            ld, st, br = [0], [0], [0]
            for w in words:
                a, b, c = _classify(w)
                ld.append(ld[-1] + a)
                st.append(st[-1] + b)
                br.append(br[-1] + c)
            self.state.set_tables(p.base, ld, st, br)
            self.pre = (ld, st, br)
            from unicorn import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE

            N.add_native_hook(uc, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, comp.mem, self.state)
        N.add_native_hook(uc, UC_HOOK_BLOCK, comp.block_precise if p.precise else comp.block,
                          self.state)
        uc.hook_add(UC_HOOK_INSN, self._on_sysreg, None, 1, 0, A.UC_ARM64_INS_MRS)
        uc.hook_add(UC_HOOK_INSN, self._on_sysreg, None, 1, 0, A.UC_ARM64_INS_MSR)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        for i, w in enumerate(words):
            addr = p.base + 4 * i
            if _is_sysreg_move(w):
                N.add_native_hook(uc, UC_HOOK_CODE, comp.checkpoint, self.state,
                                  addr + 4, addr + 4)
            if _is_daif_write(w):
                uc.hook_add(UC_HOOK_CODE, self._after_daif, None, addr + 4, addr + 4)
            if w == 0xD69F03E0:
                uc.hook_add(UC_HOOK_CODE, self._on_eret, None, addr, addr)
            if w == 0xD503207F:
                uc.hook_add(UC_HOOK_CODE, self._on_wfi, None, addr, addr)
        top = p.mem_size
        uc.reg_write(A.UC_ARM64_REG_SP_EL1, top - 0x100)
        uc.reg_write(A.UC_ARM64_REG_SP_EL0, top - 0x8000)
        self._set_pstate(0x3C5 if p.el == 1 else 0x3C0)
        uc.reg_write(A.UC_ARM64_REG_SP, top - (0x100 if p.el == 1 else 0x8000))
        self.cpu.el = p.el

    # ------------------------------------------------------------------ state helpers
    def _pstate(self) -> int:
        from unicorn.arm64_const import UC_ARM64_REG_PSTATE

        return int(self.uc.reg_read(UC_ARM64_REG_PSTATE))

    def _set_pstate(self, v: int) -> None:
        from unicorn.arm64_const import UC_ARM64_REG_PSTATE

        self.uc.reg_write(UC_ARM64_REG_PSTATE, v)
        # unicorn's PSTATE write does not recompute QEMU's cached hflags (current EL for
        # translation); a CP register write does.
        self.uc.cpr_write(*_TPIDR_EL1, self.uc.cpr_read(*_TPIDR_EL1))

    def _pc(self) -> int:
        from unicorn.arm64_const import UC_ARM64_REG_PC

        return int(self.uc.reg_read(UC_ARM64_REG_PC))

    def _executed(self, pc: int) -> int:
        w = self.w
        return int(w[N.ICOUNT]) - (int(w[N.BEND]) - pc) // 4

    def _normalize(self, pc: int) -> None:
        """Control left the current block at ``pc``: forget its unexecuted tail."""
        w = self.w
        if self.p.precise:
            tail = self._tail_counts(pc)
            w[N.LD] -= tail[0]
            w[N.ST] -= tail[1]
            w[N.BR] -= tail[2]
        w[N.ICOUNT] = self._executed(pc)
        w[N.BSTART] = w[N.BEND] = pc

    def _tail_counts(self, pc: int) -> tuple[int, int, int]:
        w = self.w
        b, end = self.p.base, int(w[N.BEND])
        n = len(self.pre[0]) - 1
        i0, i1 = (pc - b) // 4, (end - b) // 4
        if not (0 <= i0 <= i1 <= n):
            return 0, 0, 0
        ld, st, br = self.pre
        return ld[i1] - ld[i0], st[i1] - st[i0], br[i1] - br[i0]

    def _cycles(self, n: int) -> int:
        c = self.cpi
        return (n * c.numerator) // c.denominator

    # ------------------------------------------------------------------ counting
    def cut(self, pc: int) -> None:
        """Deliver every instruction executed before ``pc`` to the model."""
        e = self._executed(pc)
        if self.el_stale:
            self._sync_el()
        n = e - self.delivered
        if n <= 0 and not self.p.precise:
            return
        ev: dict[str, int] = {}
        if n > 0:
            ev["INST_RETIRED"] = n
            cyc = self._cycles(e) - self._cycles(self.delivered)
            if cyc:
                ev["CPU_CYCLES"] = cyc
        if self.p.precise:
            w = self.w
            tl, ts, tb = self._tail_counts(pc)
            ld, st, br, mem = (int(w[N.LD]) - tl, int(w[N.ST]) - ts, int(w[N.BR]) - tb,
                               int(w[N.MEM]))
            for name, now, attr in (("LD_RETIRED", ld, "dl_ld"), ("ST_RETIRED", st, "dl_st"),
                                    ("BR_RETIRED", br, "dl_br"), ("MEM_ACCESS", mem, "dl_mem")):
                d = now - getattr(self, attr)
                if d > 0:
                    ev[name] = d
                    setattr(self, attr, now)
        if ev:
            self.cpu.count(ev)
        if n > 0:
            self.delivered = e
        if e >= self.deadline:
            self.deadline_valid = False

    def _word(self, addr: int) -> int:
        return int(struct.unpack("<I", self.uc.mem_read(addr, 4))[0])

    def _sync_el(self) -> None:
        el = (self._pstate() >> 2) & 3
        self.el_stale = False
        if el != self.cur_el:
            self.cur_el = el
            self.cpu.el = el
            self.deadline_valid = False

    def _set_el(self, el: int) -> None:
        self.el_stale = False
        if el != self.cur_el:
            self.cur_el = el
            self.cpu.el = el
            self.deadline_valid = False

    # ------------------------------------------------------------------ overflow points
    def _distance(self) -> int | None:
        """Instructions (a lower bound) until a counter could overflow, or None."""
        pe = self.cpu if hasattr(self.cpu, "events_to_overflow") else \
            getattr(self.cpu, "physical_pe", None)
        if pe is None or not hasattr(pe, "events_to_overflow"):
            return 4096  # no way to look: bounded skid
        if pe is not self.cpu:
            pe.el = self.cur_el
        snap = pe.snapshot()
        best: int | None = None
        for idx in [*range(len(snap.evtyper)), 31]:
            d = pe.events_to_overflow(idx)
            if d is None:
                continue
            ev = 0x11 if idx == 31 else snap.evtyper[idx] & 0xFFFF
            if ev == 0x08:
                k = d
            elif ev == 0x11:
                c = self.cpi
                e = self.delivered
                target_cyc = self._cycles(e) + d
                k = -((-target_cyc * c.denominator) // c.numerator) - e
            elif self.p.precise and ev in (0x06, 0x07, 0x21):
                k = d
            elif self.p.precise and ev == 0x13:
                k = -(-d // _MEM_FACTOR)
            else:
                continue
            k = max(k, 1)
            best = k if best is None else min(best, k)
        return best

    def _arm_deadline(self) -> None:
        """Set the native stop point: the next overflow point, or the instruction limit."""
        if not self.deadline_valid:
            d = self._distance()
            self.deadline = self.delivered + d if d is not None else (1 << 63)
            self.deadline_valid = True
        self.w[N.DEADLINE] = self._stop_at()

    def _stop_at(self) -> int:
        return min(self.deadline, self.p.max_instructions)

    def _request_stop(self) -> None:
        self.w[N.DEADLINE] = 0

    # ------------------------------------------------------------------ interrupt line
    def _irq_line(self) -> bool:
        if self.vcpu_pmu is not None:
            return bool(self.vcpu_pmu.overflow_status())
        return bool(getattr(self.cpu, "pmuirq", False))

    def _irq_takeable(self) -> bool:
        return self._irq_line() and not (self._pstate() & 0x80)

    # ------------------------------------------------------------------ hooks
    def _on_sysreg(self, uc: Any, reg: int, cp: Any, _ud: Any) -> bool:
        from unicorn import arm64_const as A

        rd = lookup_encoding(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        if rd is None:
            return False  # not PMU state: the emulated CPU's own register (DAIF, VBAR_EL1...)
        pc = self._pc()
        word = self._word(pc)
        write = not ((word >> 21) & 1)
        rt = word & 0x1F
        self.cut(pc)
        value = int(cp.val) if write and rt != 31 else 0
        acc: Access = self.cpu.write(rd.name, value) if write else self.cpu.read(rd.name)
        el = self.cur_el
        iss = (cp.op0 << 20) | (cp.op2 << 17) | (cp.op1 << 14) | (cp.crn << 10) | (rt << 5) \
            | (cp.crm << 1) | (0 if write else 1)
        esr = (_EC_SYSREG << 26) | _IL | iss
        if acc.outcome is Outcome.TRAP_EL2 and self.el2_target:
            res = self.hyp.sysreg_trap(self.cpu, SysregTrap(rd, write, value, rt, el, esr))
            self.cpu.el = el
            if res.undef:
                acc = Access(Outcome.UNDEFINED)
            else:
                acc = Access(Outcome.OK, None if write else res.value)
        # Skip the instruction ourselves: unicorn's skip leaves the PC stale for registers
        # QEMU treats as I/O (the block would restart), so set it and retire the block
        # here; the checkpoint hook on pc + 4 makes the jump take effect at once.
        uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)
        self._normalize(pc + 4)
        if acc.outcome is Outcome.OK:
            if not write and rt != 31:
                uc.reg_write(A.UC_ARM64_REG_X0 + rt if rt < 29 else
                             (A.UC_ARM64_REG_X29 if rt == 29 else A.UC_ARM64_REG_X30),
                             acc.value or 0)
            if write:
                self.deadline_valid = False
                self._arm_deadline()
                if self._irq_takeable():
                    self.stop_pc = pc + 4
                    uc.emu_stop()
            return True
        if acc.outcome is Outcome.TRAP_EL2:
            raise GuestError(f"{rd.name} trapped to EL2 at {pc:#x} and the CPU object "
                             "returned TRAP_EL2 itself (no hypervisor owns it)")
        self.pending = ("sync", esr if acc.outcome is Outcome.TRAP_EL1 else
                        (_EC_UNKNOWN << 26) | _IL, pc)
        self.stop_pc = pc + 4
        uc.emu_stop()
        return True

    def _after_daif(self, uc: Any, addr: int, size: int, _ud: Any) -> None:
        if self._irq_takeable():
            self.stop_pc = addr
            uc.emu_stop()

    def _on_eret(self, uc: Any, addr: int, size: int, _ud: Any) -> None:
        # ERET retires at the EL it executes in; what follows runs at the SPSR's EL.
        self.cut(addr + 4)
        self.el_stale = True
        self.deadline_valid = False
        self._request_stop()

    def _on_wfi(self, uc: Any, addr: int, size: int, _ud: Any) -> None:
        self.wfi_at = addr
        self.stop_pc = addr
        uc.emu_stop()

    def _on_intr(self, uc: Any, intno: int, _ud: Any) -> None:
        pc = self._pc()
        if intno == _EXCP_SWI:  # SVC: PC is the preferred return address (next insn)
            imm = (self._word(pc - 4) >> 5) & 0xFFFF
            self.cut(pc)
            self._normalize(pc)
            self._enter("sync", (_EC_SVC64 << 26) | _IL | imm, pc)
            return
        if intno in (_EXCP_UDEF, _EXCP_HVC, _EXCP_BKPT):
            word = self._word(pc)
            if ((word & 0xFFE0001F) == 0xD4000002 and self.cur_el == 1) or intno == _EXCP_HVC:
                if intno == _EXCP_HVC:  # PC already past the HVC
                    pc -= 4
                self.cut(pc + 4)
                self._normalize(pc + 4)
                self._hvc(pc, (word >> 5) & 0xFFFF)
                return
            self.cut(pc)
            self._normalize(pc)
            if (word & 0xFFE0001F) == 0xD4200000:  # BRK
                self._enter("sync", (_EC_BRK64 << 26) | _IL | ((word >> 5) & 0xFFFF), pc)
            else:
                self._enter("sync", (_EC_UNKNOWN << 26) | _IL, pc)
            return
        self.finished = f"exception-{intno}"
        uc.emu_stop()

    def _hvc(self, pc: int, imm: int) -> None:
        from unicorn import arm64_const as A

        self.hvcs += 1
        x = [int(self.uc.reg_read(A.UC_ARM64_REG_X0 + i)) for i in range(4)]
        r = self.hyp.hvc(self.cpu, imm, x)
        if r is None:
            self.finished = "poweroff"
            self.uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)
            self.uc.emu_stop()
            return
        self.uc.reg_write(A.UC_ARM64_REG_X0, r)
        self.uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)

    # ------------------------------------------------------------------ exception entry
    def _enter(self, kind: str, esr: int, elr: int) -> None:
        """Take an exception to EL1 (ARM §D1.3 / pseudocode AArch64.TakeException)."""
        from unicorn import arm64_const as A

        uc: Any = self.uc
        ps = self._pstate()
        el = (ps >> 2) & 3
        spx = ps & 1
        sp = uc.reg_read(A.UC_ARM64_REG_SP)
        uc.reg_write(A.UC_ARM64_REG_SP_EL1 if (el == 1 and spx) else A.UC_ARM64_REG_SP_EL0, sp)
        if kind == "sync":
            uc.reg_write(A.UC_ARM64_REG_ESR_EL1, esr)
        uc.reg_write(A.UC_ARM64_REG_ELR_EL1, elr)
        uc.cpr_write(*_SPSR_EL1, ps)
        self._set_pstate((ps & 0xF0000000) | 0x3C5)
        uc.reg_write(A.UC_ARM64_REG_SP, uc.reg_read(A.UC_ARM64_REG_SP_EL1))
        off = 0x400 if el == 0 else (0x200 if spx else 0)
        if kind == "irq":
            off += 0x80
        uc.reg_write(A.UC_ARM64_REG_PC, int(uc.reg_read(A.UC_ARM64_REG_VBAR_EL1)) + off)
        self.exceptions.append(ExceptionRecord(kind, esr if kind == "sync" else 0, elr, el))
        self._set_el(1)

    # ------------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        from unicorn import UcError  # type: ignore[attr-defined]
        from unicorn import arm64_const as A

        uc: Any = self.uc
        pc = self.p.entry
        budget = 0
        while True:
            self._arm_deadline()
            if self.pending is not None:
                self._request_stop()
            if budget:
                # Run exactly ``budget`` instructions (unicorn's instruction count, which
                # only applies to blocks translated after it is set: flush them).
                self.w[N.DEADLINE] = (1 << 64) - 1
                uc.ctl_flush_tb()
            try:
                uc.emu_start(pc, _MAX_ADDR, 0, budget)
            except UcError as e:
                raise GuestError(f"guest fault at pc={self._pc():#x}: {e}") from None
            budget = 0
            pc = self._pc() if self.stop_pc is None else self.stop_pc
            self.stop_pc = None
            if self.finished:
                self.cut(pc)
                break
            if self.pending is not None:
                kind, esr, fpc = self.pending
                self.pending = None
                self.cut(fpc)
                self._normalize(fpc)
                self._enter(kind, esr, fpc)
                pc = self._pc()
                continue
            if self.wfi_at is not None:
                # WFI retires, then waits for an interrupt (ARM §D1.6.2); nothing generates
                # events while the guest waits, so with no interrupt pending it never wakes.
                at = self.wfi_at
                self.wfi_at = None
                self.cut(at + 4)
                self._normalize(at + 4)
                pc = at + 4
                if not self._irq_line():
                    self.finished = "wfi"
                    uc.reg_write(A.UC_ARM64_REG_PC, pc)
                    break
            else:
                self.cut(pc)
                self._normalize(pc)
            executed = self.delivered
            if executed >= self.p.max_instructions:
                self.finished = "limit"
                break
            if self._irq_takeable():
                self._enter("irq", 0, pc)
                pc = self._pc()
                continue
            self._arm_deadline()
            gap = self._stop_at() - executed
            if 0 < gap <= 4096:
                # The stop point is near (the block hook stopped short of it, at the start of
                # the block that crosses it): run exactly up to it.
                budget = gap
        regs = [int(uc.reg_read(A.UC_ARM64_REG_X0 + i)) for i in range(29)]
        regs += [int(uc.reg_read(A.UC_ARM64_REG_X29)), int(uc.reg_read(A.UC_ARM64_REG_X30))]
        return RunResult(self.finished or "stopped", regs, self._pc(), self.cur_el,
                         self.delivered, self._cycles(self.delivered), self.exceptions,
                         self.hvcs, lambda a, n: bytes(self.uc.mem_read(a, n)))
