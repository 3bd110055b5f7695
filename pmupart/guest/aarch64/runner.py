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
  the PMU interrupt is level-sensitive, spec §7; ARM §D13.3.1), checked after every PMU register
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

* **The cycle model** (kernel-code-deltas §5.3).  CPU_CYCLES is the core's average CPI
  times the instructions retired, plus ``core.costs.sysreg_access`` for every PMU or GIC
  system-register access, charged with the instruction that makes it; every cut that retires
  an instruction advances CPU_CYCLES by at least one (so two back-to-back ``MRS
  PMCCNTR_EL0`` differ while the counter runs; ARM §D13.1.2: the cycle counter counts every
  processor clock).  A cycle given in advance at a cut is taken back from the next cuts, so
  the long-run average stays the core's CPI.
* **Precise mode switches itself on** (§5.4) when the guest programs a counter
  (PMEVTYPER<n>_EL0, PMXEVTYPER_EL0) with LD_RETIRED, ST_RETIRED, BR_RETIRED or MEM_ACCESS;
  PMCEID0/1_EL0 as the guest reads them advertise only the events the runner generates
  (:data:`COUNTED_EVENTS`), so no advertised event silently counts 0.
* **Robust runs** (§5.6).  An exception taken at the first instruction of the vector just
  entered (no handler there), or the same exception again and again with nothing retired in
  between (a handler that returns to a fault it does not fix, an interrupt never cleared),
  stops the run with ``stop = "exception-loop"`` and a reason naming VBAR_EL1 and the
  vector.  A run keeps a count of exceptions and the last :data:`EXCEPTIONS_KEPT` of them.
  ``interruptible=True`` makes SIGINT stop the run cleanly (``stop = "interrupted"``, the
  partial result).
* **Images** (:meth:`AArch64Program.from_elf`, :meth:`from_raw`, :meth:`from_file`): ELF
  segments are loaded where they are linked, in a RAM at 0 or at :data:`RAM_BASE` (QEMU
  ``virt``'s); an image overlapping the runtime's memory (MMIO windows, the initial stacks
  at the top of RAM) is refused.
* **The guest runtime's devices** (``pmupart/guest/runtime``): Arm semihosting (``HLT
  #0xF000``; SYS_WRITEC, SYS_WRITE0, SYS_WRITE, SYS_EXIT, SYS_EXIT_EXTENDED: Arm
  "Semihosting for AArch32 and AArch64", IHI 0077), a PL011 UART data/flag register at
  :data:`UART_BASE` (Arm DDI 0183), and the GICv3 of :mod:`.gic` at QEMU ``virt``'s
  addresses.  Console output is ``RunResult.console``; SYS_EXIT's status is
  ``RunResult.exit_status``.
* **Interrupts through the GIC.**  Until the guest touches the GIC (an ICC_* register or the
  GICD/GICR windows) the PMU interrupt goes straight to the PE, as above; from then on it is
  PPI :data:`PMU_PPI` (under KVM, the PPI the VMM set) of the GIC model and is taken only
  when the GIC signals it (a GICR/GICD write takes effect at the next block boundary: a
  taken branch, an exception, an ISB; the GIC architecture leaves the delay open).  Under
  a KVM vCPU every interrupt the guest takes goes through KVM's injection
  (``pmupart.kvm.run.kvm_inject_guest_pmu_irq``: the vCPU's stats, the vGIC injection cost)
  after the host took the physical interrupt (``retire``); on a bare PE the PPI is delivered
  directly.

Limits: code must not modify itself (hook sites are found by scanning the code once); the
MMU stays off (flat memory); SIMD structure loads count their MEM_ACCESS correctly but
the overflow point of a MEM_ACCESS counter assumes at most 2 accesses per instruction.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from pmupart.arch.cores import CoreCosts
from pmupart.arch.pe import Access, Outcome
from pmupart.arch.sysreg import RegDef, lookup_encoding
from pmupart.errors import PmupartError
from pmupart.guest.aarch64 import native as N
from pmupart.guest.aarch64.asm import assemble
from pmupart.guest.aarch64.elf import ElfError, Segment, parse_elf
from pmupart.guest.aarch64.gic import GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE, ICC_REGS, GicV3

__all__ = [
    "COUNTED_EVENTS",
    "DEFAULT_MAX_INSTRUCTIONS",
    "EXCEPTIONS_KEPT",
    "PMU_PPI",
    "PSCI_SYSTEM_OFF",
    "RAM_BASE",
    "UART_BASE",
    "AArch64Program",
    "ExceptionRecord",
    "ForwardingHypervisor",
    "GuestContext",
    "GuestError",
    "HypResult",
    "Hypervisor",
    "ImageError",
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

DEFAULT_MAX_INSTRUCTIONS = 10**9  #: instruction limit of a run unless told otherwise
EXCEPTIONS_KEPT = 64  #: a run keeps the last this-many exception records (and a count)
_LOOP_REPEATS = 256  # the same exception this many times with no progress is a loop
RAM_BASE = 0x4000_0000  #: where the guest runtime's RAM starts (QEMU virt's)
RUNTIME_RAM_SIZE = 0x0100_0000  #: 16 MiB of RAM for an image linked at RAM_BASE
UART_BASE = 0x0900_0000  #: the PL011 UART (QEMU virt's address)
_UART_SIZE = 0x1000
STACK_RESERVE = 0x1_0000  #: the top of RAM holds the initial EL1/EL0 stacks
PMU_PPI = 23  #: the PMU overflow interrupt's PPI on a bare PE (the KVM convention too)
#: Events the runner generates (ARM §D14.3): SW_INCR and CHAIN (the PE model), INST_RETIRED,
#: CPU_CYCLES, and in precise mode LD_RETIRED, ST_RETIRED, MEM_ACCESS, BR_RETIRED.
COUNTED_EVENTS = frozenset({0x00, 0x06, 0x07, 0x08, 0x11, 0x13, 0x1E, 0x21})
_PRECISE_EVENTS = frozenset({0x06, 0x07, 0x13, 0x21})
_SEMIHOST_HLT = 0xD45E0000  # HLT #0xF000 (IHI 0077 §"The semihosting interface", A64)
_SYS_WRITEC, _SYS_WRITE0, _SYS_WRITE, _SYS_EXIT, _SYS_EXIT_EXTENDED = 0x03, 0x04, 0x05, \
    0x18, 0x20
_ADP_STOPPED_APPLICATION_EXIT = 0x20026
_PMCEID = {"PMCEID0_EL0": 0x00, "PMCEID1_EL0": 0x20}


def _pmceid_mask(base: int) -> int:
    """PMCEID bits (events base..base+31 in [31:0], 0x4000+base.. in [63:32]) we generate."""
    return sum(1 << (e - base) for e in COUNTED_EVENTS if base <= e < base + 32)


class GuestError(PmupartError, RuntimeError):
    """The guest did something the runner cannot continue from (bad fetch, runaway)."""


class GuestFault(GuestError):
    """The program itself faulted: it read, wrote or fetched where nothing is mapped (the
    user's program is at fault, not the model: ``pmupart exec`` exits 3 for it)."""


class ImageError(PmupartError, ValueError):
    """A program image that cannot be loaded (bad ELF, overlap with the runtime's memory)."""


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


class GuestContext:
    """The guest's architectural state as a hypervisor sees it while the guest is stopped in a
    trap or hypercall: its general registers, PC, PSTATE, ELR_EL1/SPSR_EL1 and memory.

    ``get_reg``/``set_reg`` are KVM's ``vcpu_get_reg``/``vcpu_set_reg``: register 31 is XZR
    (reads 0, writes are ignored).  A hypervisor gets one through ``attach(ctx)`` before
    the guest starts (:class:`Hypervisor`)."""

    def __init__(self, uc: Any) -> None:
        self._uc = uc

    def get_reg(self, n: int) -> int:
        from unicorn import arm64_const as A

        if not 0 <= n <= 31:
            raise ValueError(f"general register number must be 0..31, not {n!r}")
        if n == 31:
            return 0
        return int(self._uc.reg_read(_xreg(A, n)))

    def set_reg(self, n: int, value: int) -> None:
        from unicorn import arm64_const as A

        if not 0 <= n <= 31:
            raise ValueError(f"general register number must be 0..31, not {n!r}")
        if n != 31:
            self._uc.reg_write(_xreg(A, n), value & ((1 << 64) - 1))

    def _reg(self, name: str) -> int:
        from unicorn import arm64_const as A

        return int(self._uc.reg_read(getattr(A, f"UC_ARM64_REG_{name}")))

    def _set(self, name: str, value: int) -> None:
        from unicorn import arm64_const as A

        self._uc.reg_write(getattr(A, f"UC_ARM64_REG_{name}"), value & ((1 << 64) - 1))

    @property
    def pc(self) -> int:
        return self._reg("PC")

    @property
    def pstate(self) -> int:
        return self._reg("PSTATE")

    @property
    def elr_el1(self) -> int:
        return self._reg("ELR_EL1")

    @elr_el1.setter
    def elr_el1(self, value: int) -> None:
        self._set("ELR_EL1", value)

    @property
    def spsr_el1(self) -> int:
        return int(self._uc.cpr_read(*_SPSR_EL1))

    @spsr_el1.setter
    def spsr_el1(self, value: int) -> None:
        self._uc.cpr_write(*_SPSR_EL1, value & 0xFFFF_FFFF)

    def read_mem(self, addr: int, size: int) -> bytes:
        return bytes(self._uc.mem_read(addr, size))

    def write_mem(self, addr: int, data: bytes) -> None:
        self._uc.mem_write(addr, bytes(data))


def _xreg(A: Any, n: int) -> int:
    if n < 29:
        return int(A.UC_ARM64_REG_X0 + n)
    return int(A.UC_ARM64_REG_X29 if n == 29 else A.UC_ARM64_REG_X30)


class Hypervisor(Protocol):
    """The EL2 side of a bare-PE run: handles TRAP_EL2 outcomes and HVC.

    A hypervisor that also has a method ``attach(ctx: GuestContext)`` gets the guest's
    state before the guest starts, to read and write its registers and memory from its
    handlers (a method the runner looks up, so existing hypervisors need not define it)."""

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
        self.guest: GuestContext | None = None  #: the running guest (set by ``attach``)

    def attach(self, ctx: GuestContext) -> None:
        self.guest = ctx

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

    #: "poweroff" (PSCI SYSTEM_OFF), "exit" (semihosting SYS_EXIT: ``exit_status``), "wfi"
    #: (waiting with nothing that could wake it), "limit" (max_instructions reached),
    #: "exception-loop" (see ``reason``), "interrupted" (SIGINT), "exception-<n>" (an
    #: exception the runner does not model, e.g. a data abort)
    stop: str
    x: list[int]
    pc: int
    el: int
    instructions: int  #: instructions architecturally executed
    cycles: int  #: CPU_CYCLES generated by the guest's instructions (excluding EL2 costs)
    exceptions: list[ExceptionRecord] = field(default_factory=list)  #: the last 64
    hvc_traps: int = 0
    mem: Callable[[int, int], bytes] | None = None
    exception_count: int = 0  #: every exception taken (``exceptions`` keeps the last ones)
    irq_count: int = 0
    reason: str = ""  #: why the run stopped, in words (exception-loop, limit, interrupted)
    console: str = ""  #: what the guest wrote (semihosting and the UART)
    exit_status: int | None = None  #: SYS_EXIT's status
    symbols: dict[str, int] = field(default_factory=dict)  #: from the ELF image
    precise_switch_s: float | None = None  #: when precise mode switched itself on: its cost

    def irqs(self) -> int:
        return self.irq_count

    def read64(self, addr: int) -> int:
        assert self.mem is not None
        return int(struct.unpack("<Q", self.mem(addr, 8))[0])

    def read_symbol(self, name: str, size: int = 8, signed: bool = False) -> int:
        """The little-endian integer of ``size`` bytes at symbol ``name`` after the run."""
        if name not in self.symbols:
            raise KeyError(f"no symbol {name!r} in the image")
        return int.from_bytes(self.read_bytes(name, size), "little", signed=signed)

    def read_bytes(self, name: str, size: int) -> bytes:
        """``size`` bytes of guest memory at symbol ``name`` after the run."""
        if name not in self.symbols:
            raise KeyError(f"no symbol {name!r} in the image")
        assert self.mem is not None
        return self.mem(self.symbols[name], size)


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

    ``code`` is loaded at ``base`` in a flat RAM of ``mem_size`` bytes starting at
    ``ram_base`` (default: 0, or :data:`RAM_BASE` when the image lies there) and started at
    ``entry`` (default ``base``) at EL ``el`` (1, or 0 for code that relies on its vectors
    being set up by the caller), with all of DAIF masked as after reset.  ``segments``
    (from an ELF image) replaces ``code``/``base``.  ``program(cpu)`` runs it to completion
    and returns a :class:`RunResult`.
    """

    def __init__(self, code: bytes, base: int = 0x1000, entry: int | None = None, el: int = 1,
                 *, mem_size: int | None = None, precise: bool = False,
                 max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
                 hypervisor: Hypervisor | None = None,
                 labels: dict[str, int] | None = None,
                 segments: list[Segment] | tuple[Segment, ...] | None = None,
                 ram_base: int | None = None, interruptible: bool = False) -> None:
        if el not in (0, 1):
            raise ValueError(f"a guest program starts at EL0 or EL1, not {el!r}")
        if max_instructions < 0:
            raise ValueError(f"max_instructions must be >= 0, not {max_instructions}")
        if segments is None:
            if len(code) % 4:
                raise ValueError("code length must be a multiple of 4 (A64 instructions)")
            if base % 4:
                raise ValueError(f"code at {base:#x} must be 4-aligned")
            segments = (Segment(base, bytes(code), len(code), True),)
        segs = tuple(sorted(segments, key=lambda sg: sg.addr))
        if not segs:
            raise ImageError("the image has nothing to load")
        lo = segs[0].addr
        if ram_base is None:
            ram_base = RAM_BASE if lo >= RAM_BASE else 0
        if mem_size is None:
            mem_size = RUNTIME_RAM_SIZE if ram_base == RAM_BASE else 0x100000
        if mem_size % 0x1000 or mem_size <= STACK_RESERVE:
            raise ValueError("mem_size must be a multiple of 4 KiB and larger than 64 KiB")
        if ram_base % 0x1000:
            raise ValueError("ram_base must be 4 KiB aligned")
        _check_layout(segs, ram_base, mem_size)
        first = next((sg for sg in segs if sg.executable), segs[0])
        self.segments = segs
        self.code = first.data  #: the first executable segment (``base`` is its address)
        self.base = first.addr
        self.entry = self.base if entry is None else entry
        if not any(sg.addr <= self.entry < sg.end for sg in segs if sg.executable):
            raise ImageError(f"entry point {self.entry:#x} is not in an executable segment")
        self.el = el
        self.ram_base = ram_base
        self.mem_size = mem_size
        self.precise = precise
        self.max_instructions = max_instructions
        self.hypervisor = hypervisor
        self.labels = dict(labels or {})  #: labels of an assembled program, symbols of an ELF
        self.interruptible = interruptible
        self._tables: tuple[list[int], list[int], list[int]] | None = None

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

    @classmethod
    def from_elf(cls, data: bytes | str | Path, **kw: Any) -> AArch64Program:
        """Load an ELF executable (bytes or a path): segments where they are linked, its
        entry point, its symbols (``RunResult.read_symbol``)."""
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        try:
            img = parse_elf(raw)
        except ElfError as e:
            raise ImageError(str(e)) from None
        return cls(b"", entry=img.entry, segments=img.segments, labels=img.symbols, **kw)

    @classmethod
    def from_raw(cls, data: bytes | str | Path, base: int, entry: int | None = None,
                 **kw: Any) -> AArch64Program:
        """A raw binary image loaded at ``base``, started at ``entry`` (default ``base``)."""
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        if len(raw) % 4:
            raw += bytes(4 - len(raw) % 4)
        return cls(raw, base, entry, **kw)

    @classmethod
    def from_file(cls, path: str | Path, base: int | None = None, entry: int | None = None,
                  **kw: Any) -> AArch64Program:
        """An assembly file (``.S``/``.s``), an ELF executable, or a raw binary (which needs
        ``base``)."""
        path = Path(path)
        if path.suffix in (".S", ".s"):
            return cls.from_asm(path.read_text(encoding="utf-8"),
                                **({"base": base} if base is not None else {}),
                                entry=entry, **kw)
        raw = path.read_bytes()
        if raw[:4] == b"\x7fELF":
            return cls.from_elf(raw, **kw)
        if base is None:
            raise ImageError(f"{path}: not an ELF file; a raw binary needs a load address "
                             "(--base)")
        return cls.from_raw(raw, base, entry, **kw)

    def __call__(self, cpu: Any) -> RunResult:
        return _Run(self, cpu).run()

    run = __call__

    def precise_tables(self) -> tuple[list[int], list[int], list[int]]:
        """Prefix sums of loads, stores and branches over the executable range (cached)."""
        if self._tables is None:
            lo, hi = self.code_range()
            img = bytearray(hi - lo)
            for sg in self.segments:
                if sg.executable:
                    img[sg.addr - lo:sg.addr - lo + len(sg.data)] = sg.data
            ld, st, br = [0], [0], [0]
            for (w,) in struct.iter_unpack("<I", bytes(img)):
                a, b, c = _classify(w)
                ld.append(ld[-1] + a)
                st.append(st[-1] + b)
                br.append(br[-1] + c)
            self._tables = (ld, st, br)
        return self._tables

    def code_range(self) -> tuple[int, int]:
        """[lowest, highest) address of the executable segments, 4-aligned."""
        ex = [sg for sg in self.segments if sg.executable]
        lo = min(sg.addr for sg in ex) & ~3
        hi = (max(sg.addr + len(sg.data) for sg in ex) + 3) & ~3
        return lo, hi

    def code_words(self) -> Iterator[tuple[int, int]]:
        """(address, instruction word) of every word of the executable segments."""
        for sg in self.segments:
            if sg.executable:
                n = len(sg.data) // 4
                for i, (w,) in enumerate(struct.iter_unpack("<I", sg.data[:4 * n])):
                    yield sg.addr + 4 * i, w


def _check_layout(segs: tuple[Segment, ...], ram_base: int, mem_size: int) -> None:
    """Every segment inside RAM, clear of the initial stacks and of the MMIO windows."""
    top = ram_base + mem_size
    reserved = [(top - STACK_RESERVE, top, "the initial stacks (top 64 KiB of RAM)"),
                (GICD_BASE, GICD_BASE + GICD_SIZE, "the GIC distributor"),
                (GICR_BASE, GICR_BASE + GICR_SIZE, "the GIC redistributor"),
                (UART_BASE, UART_BASE + _UART_SIZE, "the PL011 UART")]
    for lo, hi, what in reserved[1:]:
        if ram_base < hi and lo < top:
            raise ImageError(f"RAM {ram_base:#x}-{top:#x} overlaps {what} at {lo:#x}-{hi:#x}")
    for sg in segs:
        if not (ram_base <= sg.addr and sg.end <= top):
            raise ImageError(f"segment {sg.addr:#x}-{sg.end:#x} is outside the guest's RAM "
                             f"{ram_base:#x}-{top:#x}")
        for lo, hi, what in reserved:
            if sg.addr < hi and lo < sg.end:
                raise ImageError(f"segment {sg.addr:#x}-{sg.end:#x} overlaps {what} at "
                                 f"{lo:#x}-{hi:#x}, which the runtime uses")


@contextmanager
def _sigint_stops(run: _Run) -> Iterator[None]:
    """While the guest runs, SIGINT asks the run to stop at the next block (a clean stop with
    a partial result) instead of raising KeyboardInterrupt.

    The emulator runs in C with the GIL released, so Python's handler would only run once
    it returns; the wakeup fd (written by the C-level handler at once) wakes a thread that
    sets the native deadline to 0, which the block hook sees within a block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def on_sigint(_sig: int, _frame: Any) -> None:
        run.interrupt()

    old = signal.signal(signal.SIGINT, on_sigint)
    done = False

    def watch() -> None:
        while True:
            try:
                b = os.read(r, 64)
            except OSError:
                return
            if done or not b:
                return
            if signal.SIGINT in b:
                run.interrupt()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield
    finally:
        done = True
        signal.signal(signal.SIGINT, old)
        signal.set_wakeup_fd(old_fd)
        os.write(w, b"\0")
        t.join(1.0)
        os.close(w)
        os.close(r)


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
        costs = core.costs if core is not None else CoreCosts()
        self.access_cost = costs.sysreg_access
        self.hyp = prog.hypervisor or ForwardingHypervisor()
        self.state = N.NativeState()
        self.w = self.state.words
        self.precise = prog.precise
        self.want_precise = False
        self.precise_switch_s: float | None = None
        self.delivered = 0  # instructions delivered to the model
        self.cyc_delivered = 0  # CPU_CYCLES delivered to the model
        self.extra_cycles = 0  # in-place access costs so far (cycles beyond CPI x instructions)
        self.dl_ld = self.dl_st = self.dl_br = self.dl_mem = 0
        self.deadline = 0  # absolute instruction count of the next overflow point
        self.deadline_valid = False
        self.el_stale = False
        self.cur_el = prog.el
        self.pending: tuple[str, int, int] | None = None  # (kind, esr, pc of faulting insn)
        self.finished: str | None = None
        self.reason = ""
        self.wfi_at: int | None = None
        self.stop_pc: int | None = None  # where a Python hook stopped the guest
        self.exceptions: deque[ExceptionRecord] = deque(maxlen=EXCEPTIONS_KEPT)
        self.exc_count = 0
        self.irq_count = 0
        self.last_exc: tuple[str, int, int] | None = None
        self.exc_repeats = 0
        self.vector_entered: tuple[int, int] | None = None  # (vector address, delivered then)
        self.progress_mark = -1  # instructions delivered at the last ERET
        self.interrupted = False
        self.console: list[str] = []
        self.exit_status: int | None = None
        self.hvcs = 0
        self.gic = GicV3()
        self.el2_target = hasattr(cpu, "at_el")  # a bare PE: TRAP_EL2 is ours to handle
        vcpu = getattr(cpu, "vcpu", None)
        self.vcpu_pmu = getattr(vcpu, "pmu", None)
        irq = getattr(vcpu, "irq", None)
        self.ppi = irq if isinstance(irq, int) and 16 <= irq < 32 else PMU_PPI
        if self.vcpu_pmu is not None and hasattr(cpu, "irqs_masked"):
            # The runner takes the interrupt at the guest's own vector, after KVM's injection
            # (kvm_inject_guest_pmu_irq); the Python handler path (on_pmu_irq) stays unused.
            cpu.irqs_masked = True
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from unicorn import UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR
        from unicorn import arm64_const as A

        uc: Any = self.uc
        p = self.p
        uc.mem_map(p.ram_base, p.mem_size)
        for sg in p.segments:
            uc.mem_write(sg.addr, sg.data)
        uc.mmio_map(UART_BASE, _UART_SIZE, self._uart_read, None, self._uart_write, None)
        uc.mmio_map(GICD_BASE, GICD_SIZE, self._gic_read, GICD_BASE, self._gic_write,
                    GICD_BASE)
        uc.mmio_map(GICR_BASE, GICR_SIZE, self._gic_read, GICR_BASE, self._gic_write,
                    GICR_BASE)
        self.w[N.STOPFN] = N.stop_fn_addr()
        self.w[N.DEADLINE] = (1 << 64) - 1
        self.block_hook: int | None = None
        if self.precise:
            self._install_precise()
        else:
            self.block_hook = self._add_block_hook(N.compiled().block)
        comp = N.compiled()
        uc.hook_add(UC_HOOK_INSN, self._on_sysreg, None, 1, 0, A.UC_ARM64_INS_MRS)
        uc.hook_add(UC_HOOK_INSN, self._on_sysreg, None, 1, 0, A.UC_ARM64_INS_MSR)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        for addr, w in p.code_words():
            if _is_sysreg_move(w):
                N.add_native_hook(uc, UC_HOOK_CODE, comp.checkpoint, self.state,
                                  addr + 4, addr + 4)
            if _is_daif_write(w):
                uc.hook_add(UC_HOOK_CODE, self._after_daif, None, addr + 4, addr + 4)
            if w == 0xD69F03E0:
                uc.hook_add(UC_HOOK_CODE, self._on_eret, None, addr, addr)
            if w == 0xD503207F:
                uc.hook_add(UC_HOOK_CODE, self._on_wfi, None, addr, addr)
        top = p.ram_base + p.mem_size
        uc.reg_write(A.UC_ARM64_REG_SP_EL1, top - 0x100)
        uc.reg_write(A.UC_ARM64_REG_SP_EL0, top - 0x8000)
        self._set_pstate(0x3C5 if p.el == 1 else 0x3C0)
        uc.reg_write(A.UC_ARM64_REG_SP, top - (0x100 if p.el == 1 else 0x8000))
        self.cpu.el = p.el
        attach = getattr(self.hyp, "attach", None)
        if callable(attach):
            attach(GuestContext(uc))

    def _add_block_hook(self, fn: int) -> int:
        from unicorn import UC_HOOK_BLOCK

        return N.add_native_hook(self.uc, UC_HOOK_BLOCK, fn, self.state)

    def _install_precise(self) -> None:
        """Precise counting: static load/store/branch tables, the memory hook, the precise
        block hook (ARM §D14.3 LD_RETIRED, ST_RETIRED, BR_RETIRED, MEM_ACCESS)."""
        from unicorn import UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE

        comp = N.compiled()
        ld, st, br = self.p.precise_tables()
        self.state.set_tables(self.p.code_range()[0], ld, st, br)
        self.pre = (ld, st, br)
        N.add_native_hook(self.uc, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, comp.mem, self.state)
        if self.block_hook is not None:
            N.del_native_hook(self.uc, self.block_hook)
        self.block_hook = self._add_block_hook(comp.block_precise)
        self.precise = True

    def _switch_to_precise(self, pc: int) -> None:
        """A counter was programmed with an event only precise mode counts: switch now, at
        an instruction boundary where everything before ``pc`` has been delivered."""
        t0 = time.perf_counter()
        w = self.w
        w[N.LD] = w[N.ST] = w[N.BR] = w[N.MEM] = 0
        self.dl_ld = self.dl_st = self.dl_br = self.dl_mem = 0
        w[N.BSTART] = w[N.BEND] = pc
        self._install_precise()
        self.uc.ctl_flush_tb()  # translated blocks carry the old block hook
        self.deadline_valid = False
        self.precise_switch_s = time.perf_counter() - t0

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
        if self.precise:
            tail = self._tail_counts(pc)
            w[N.LD] -= tail[0]
            w[N.ST] -= tail[1]
            w[N.BR] -= tail[2]
        w[N.ICOUNT] = self._executed(pc)
        w[N.BSTART] = w[N.BEND] = pc

    def _tail_counts(self, pc: int) -> tuple[int, int, int]:
        w = self.w
        b, end = int(w[N.TBASE]), int(w[N.BEND])
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
        if n <= 0 and not self.precise:
            return
        ev: dict[str, int] = {}
        if n > 0:
            ev["INST_RETIRED"] = n
            # §5.3: at least one cycle per cut that retires instructions; a cycle given in
            # advance is taken back later (the average stays CPI + in-place access costs).
            cyc = max(1, self._cycles(e) + self.extra_cycles - self.cyc_delivered)
            ev["CPU_CYCLES"] = cyc
            self.cyc_delivered += cyc
        if self.precise:
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
        try:
            return int(struct.unpack("<I", self.uc.mem_read(addr, 4))[0])
        except Exception:  # unmapped: no instruction there
            return -1

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
                if d <= 1:
                    k = 1  # the next cut delivers at least one cycle
                else:
                    c = self.cpi
                    target = self.cyc_delivered + d - self.extra_cycles
                    k = -((-target * c.denominator) // c.numerator) - self.delivered
            elif self.precise and ev in (0x06, 0x07, 0x21):
                k = d
            elif self.precise and ev == 0x13:
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
        if self.interrupted:
            return 0
        return min(self.deadline, self.p.max_instructions)

    def _request_stop(self) -> None:
        self.w[N.DEADLINE] = 0

    def interrupt(self) -> None:
        """Stop at the next block boundary (SIGINT); the run returns a partial result."""
        self.interrupted = True
        self.w[N.DEADLINE] = 0

    # ------------------------------------------------------------------ interrupt line
    def _pmu_line(self) -> bool:
        if self.vcpu_pmu is not None:
            return bool(self.vcpu_pmu.overflow_status())
        return bool(getattr(self.cpu, "pmuirq", False))

    def _lines(self) -> int:
        return (1 << self.ppi) if self._pmu_line() else 0

    def _irq_line(self) -> bool:
        """The IRQ signal to the PE: the PMU line itself until the guest uses the GIC, then
        what the GIC's CPU interface signals."""
        if not self.gic.touched:
            return self._pmu_line()
        return self.gic.signalled(self._lines()) is not None

    def _irq_takeable(self) -> bool:
        return self._irq_line() and not (self._pstate() & 0x80)

    # ------------------------------------------------------------------ devices
    def _uart_read(self, uc: Any, offset: int, size: int, _ud: Any) -> int:
        # PL011 (Arm DDI 0183): UARTFR (0x18) reads TXFE | RXFE (transmit FIFO empty, nothing
        # to receive); the PrimeCell ID registers read the PL011's values.
        ids = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00,
               0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}
        if offset == 0x18:
            return 0x90
        return ids.get(offset, 0)

    def _uart_write(self, uc: Any, offset: int, size: int, value: int, _ud: Any) -> None:
        if offset == 0x0:  # UARTDR: transmit one character
            self.console.append(chr(value & 0xFF))

    def _gic_read(self, uc: Any, offset: int, size: int, base: int) -> int:
        return self.gic.mmio_read(base + offset, size, self._lines())

    def _gic_write(self, uc: Any, offset: int, size: int, value: int, base: int) -> None:
        self.gic.mmio_write(base + offset, size, value)
        self._request_stop()  # the interrupt may be deliverable now: look at the next block

    def _semihost(self, pc: int) -> None:
        """``HLT #0xF000``: an Arm semihosting call (IHI 0077), operation in W0, parameter
        block address in X1, result in X0."""
        from unicorn import arm64_const as A

        uc = self.uc
        op = int(uc.reg_read(A.UC_ARM64_REG_X0)) & 0xFFFFFFFF
        arg = int(uc.reg_read(A.UC_ARM64_REG_X1))
        ret = 0
        if op == _SYS_WRITEC:
            self.console.append(chr(uc.mem_read(arg, 1)[0]))
        elif op == _SYS_WRITE0:
            out = bytearray()
            while len(out) < 1 << 20:
                chunk = bytes(uc.mem_read(arg + len(out), 64))
                z = chunk.find(b"\0")
                out += chunk if z < 0 else chunk[:z]
                if z >= 0:
                    break
            self.console.append(out.decode("utf-8", "replace"))
        elif op == _SYS_WRITE:
            _fd, buf, n = struct.unpack("<QQQ", uc.mem_read(arg, 24))
            self.console.append(bytes(uc.mem_read(buf, n)).decode("utf-8", "replace"))
            ret = 0  # bytes not written
        elif op in (_SYS_EXIT, _SYS_EXIT_EXTENDED):
            reason, sub = struct.unpack("<QQ", uc.mem_read(arg, 16))
            self.exit_status = (sub & 0xFF) if reason == _ADP_STOPPED_APPLICATION_EXIT else 1
            self.finished = "exit"
            if reason != _ADP_STOPPED_APPLICATION_EXIT:
                self.reason = f"SYS_EXIT with reason {reason:#x} (not ApplicationExit)"
            uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)
            uc.emu_stop()
            return
        else:
            ret = (1 << 64) - 1  # -1: unsupported operation
        uc.reg_write(A.UC_ARM64_REG_X0, ret)
        uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)

    # ------------------------------------------------------------------ hooks
    def _on_sysreg(self, uc: Any, reg: int, cp: Any, _ud: Any) -> bool:
        from unicorn import arm64_const as A

        key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        rd = lookup_encoding(*key)
        icc = ICC_REGS.get(key) if rd is None else None
        if rd is None and icc is None:
            return False  # not PMU state: the emulated CPU's own register (DAIF, VBAR_EL1...)
        pc = self._pc()
        word = self._word(pc)
        write = not ((word >> 21) & 1)
        rt = word & 0x1F
        self.cut(pc)
        value = int(cp.val) if write and rt != 31 else 0
        el = self.cur_el
        if icc is not None:  # the GIC CPU interface (EL1 registers: UNDEFINED at EL0)
            if el == 0:
                acc = Access(Outcome.UNDEFINED)
            elif write:
                if self.gic.write_icc(icc, value) == self.ppi and self.vcpu_pmu is not None:
                    self.cpu.eoi_maintenance()  # the vGIC's ICH_LR_EOI: an exit (kvm/run.py)
                acc = Access(Outcome.OK)
            else:
                acc = Access(Outcome.OK, self.gic.read_icc(icc, self._lines()))
        else:
            assert rd is not None
            acc = self.cpu.write(rd.name, value) if write else self.cpu.read(rd.name)
        iss = (cp.op0 << 20) | (cp.op2 << 17) | (cp.op1 << 14) | (cp.crn << 10) | (rt << 5) \
            | (cp.crm << 1) | (0 if write else 1)
        esr = (_EC_SYSREG << 26) | _IL | iss
        if rd is not None and acc.outcome is Outcome.TRAP_EL2 and self.el2_target:
            res = self.hyp.sysreg_trap(self.cpu, SysregTrap(rd, write, value, rt, el, esr))
            self.cpu.el = el
            if res.undef:
                acc = Access(Outcome.UNDEFINED)
            else:
                acc = Access(Outcome.OK, None if write else res.value)
        elif acc.outcome is Outcome.OK:
            self.extra_cycles += self.access_cost  # §5.3: the access's cost, in place
        if rd is not None and not write and acc.outcome is Outcome.OK and rd.name in _PMCEID:
            # §5.4: advertise only the events this runner generates.
            m = _pmceid_mask(_PMCEID[rd.name])
            acc = Access(Outcome.OK, (acc.value or 0) & m)  # none of 0x4000.. is generated
        # Skip the instruction ourselves: unicorn's skip leaves the PC stale for registers
        # QEMU treats as I/O (the block would restart), so set it and retire the block
        # here; the checkpoint hook on pc + 4 makes the jump take effect at once.
        uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)
        self._normalize(pc + 4)
        if acc.outcome is Outcome.OK:
            if not write and rt != 31:
                uc.reg_write(_xreg(A, rt), acc.value or 0)
            if write:
                if (not self.precise and rd is not None
                        and (rd.family == "PMEVTYPER<n>_EL0" or rd.name == "PMXEVTYPER_EL0")
                        and (value & 0xFFFF) in _PRECISE_EVENTS):
                    self.want_precise = True
                    self.stop_pc = pc + 4
                    uc.emu_stop()
                    return True
                self.deadline_valid = False
                self._arm_deadline()
                if self._irq_takeable():
                    self.stop_pc = pc + 4
                    uc.emu_stop()
            return True
        if acc.outcome is Outcome.TRAP_EL2:
            name = rd.name if rd is not None else icc
            raise GuestError(f"{name} trapped to EL2 at {pc:#x} and the CPU object "
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
        self.progress_mark = self.delivered
        self.vector_entered = None
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
            if word == _SEMIHOST_HLT:
                self.cut(pc + 4)
                self._normalize(pc + 4)
                self._semihost(pc)
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
        off = 0x400 if el == 0 else (0x200 if spx else 0)
        if kind == "irq":
            off += 0x80
        vbar = int(uc.reg_read(A.UC_ARM64_REG_VBAR_EL1))
        if self._exception_loop(kind, esr, elr, vbar, off):
            uc.emu_stop()
            return
        sp = uc.reg_read(A.UC_ARM64_REG_SP)
        uc.reg_write(A.UC_ARM64_REG_SP_EL1 if (el == 1 and spx) else A.UC_ARM64_REG_SP_EL0, sp)
        if kind == "sync":
            uc.reg_write(A.UC_ARM64_REG_ESR_EL1, esr)
        uc.reg_write(A.UC_ARM64_REG_ELR_EL1, elr)
        uc.cpr_write(*_SPSR_EL1, ps)
        self._set_pstate((ps & 0xF0000000) | 0x3C5)
        uc.reg_write(A.UC_ARM64_REG_SP, uc.reg_read(A.UC_ARM64_REG_SP_EL1))
        uc.reg_write(A.UC_ARM64_REG_PC, vbar + off)
        self.exceptions.append(ExceptionRecord(kind, esr if kind == "sync" else 0, elr, el))
        self.exc_count += 1
        if kind == "irq":
            self.irq_count += 1
        self.vector_entered = (vbar + off, self.delivered)
        self._set_el(1)

    def _exception_loop(self, kind: str, esr: int, elr: int, vbar: int, off: int) -> bool:
        """§5.6: a fault at the first instruction of the vector just entered (no handler),
        or the same exception again and again with nothing retired in between."""
        names = {0x000: "current EL with SP_EL0", 0x200: "current EL with SP_ELx",
                 0x400: "lower EL using AArch64"}
        where = (f"VBAR_EL1 = {vbar:#x}, vector {vbar + off:#x} (VBAR_EL1 + {off:#x}: "
                 f"{'IRQ' if kind == 'irq' else 'synchronous'}, {names[off & ~0x80]})")
        ve = self.vector_entered
        if kind == "sync" and ve is not None and elr == ve[0] and self.delivered == ve[1]:
            word = self._word(elr)
            what = "is not mapped" if word < 0 else f"holds {word:#010x}, not a handler"
            self.finished = "exception-loop"
            self.reason = (f"nested fault at a vector with no code: the exception vector "
                           f"{elr:#x} {what}; the fault there (ESR_EL1 {esr:#x}, EC "
                           f"{(esr >> 26) & 0x3F:#04x}) is taken at {where}")
            return True
        key = (kind, esr, elr)
        if key == self.last_exc and self.delivered == self.progress_mark:
            self.exc_repeats += 1
        else:
            self.exc_repeats = 0
        self.last_exc = key
        if self.exc_repeats >= _LOOP_REPEATS:
            self.finished = "exception-loop"
            self.reason = (f"exception loop: the same {'IRQ' if kind == 'irq' else 'exception'}"
                           f" (ESR_EL1 {esr:#x}, ELR {elr:#x}) raised {self.exc_repeats + 1} "
                           f"times in a row with no instruction retired in between, at {where}")
            return True
        return False

    def _take_irq(self, pc: int) -> None:
        """Take the IRQ at ``pc``; under KVM after KVM's injection (its stats and costs)."""
        if self.vcpu_pmu is not None:
            from pmupart.kvm.run import kvm_inject_guest_pmu_irq

            kvm_inject_guest_pmu_irq(self.cpu)
        self._enter("irq", 0, pc)

    # ------------------------------------------------------------------ main loop
    def run(self) -> RunResult:
        if self.p.interruptible:
            with _sigint_stops(self):
                return self._run()
        return self._run()

    def _run(self) -> RunResult:
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
                at = self._pc()
                ve = self.vector_entered
                if ve is not None and at == ve[0]:
                    self.finished = "exception-loop"
                    self.reason = (f"nested fault at a vector with no code: the exception "
                                   f"vector {at:#x} (VBAR_EL1 = "
                                   f"{int(uc.reg_read(A.UC_ARM64_REG_VBAR_EL1)):#x}) cannot "
                                   f"be fetched ({e})")
                    break
                raise GuestFault(f"guest fault at pc={at:#x}: {e}") from None
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
                if self.finished:
                    break
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
            if self.want_precise:
                self.want_precise = False
                self._switch_to_precise(pc)
            if self.interrupted:
                self.finished = "interrupted"
                self.reason = "SIGINT: stopped at a block boundary; the counts are exact so far"
                uc.reg_write(A.UC_ARM64_REG_PC, pc)
                break
            executed = self.delivered
            if executed >= self.p.max_instructions:
                self.finished = "limit"
                self.reason = (f"the instruction limit ({self.p.max_instructions}) was "
                               "reached")
                break
            if self._irq_takeable():
                self._take_irq(pc)
                if self.finished:
                    break
                pc = self._pc()
                continue
            self._arm_deadline()
            gap = self._stop_at() - executed
            if 0 < gap <= 4096:
                # The stop point is near (the block hook stopped short of it, at the start of
                # the block that crosses it): run exactly up to it.
                budget = gap
        regs = [int(uc.reg_read(_xreg(A, i))) for i in range(31)]
        return RunResult(self.finished or "stopped", regs, self._pc(), self.cur_el,
                         self.delivered, self.cyc_delivered, list(self.exceptions),
                         self.hvcs, lambda a, n: bytes(self.uc.mem_read(a, n)),
                         exception_count=self.exc_count, irq_count=self.irq_count,
                         reason=self.reason, console="".join(self.console),
                         exit_status=self.exit_status, symbols=dict(self.p.labels),
                         precise_switch_s=self.precise_switch_s)
