"""Real AArch64 guest code under unicorn, with its PMU accesses going to the model.

``AArch64Program(code, base=..., entry=..., el=1)`` / ``AArch64Program.from_asm(text)`` /
``AArch64Program.from_elf(path)`` / ``from_raw(data, base)`` / ``from_file(path)`` is a guest
program (a callable taking the CPU object); see :mod:`.runner`.  The assembler
is :mod:`.asm`.
"""

from pmupart.guest.aarch64.asm import AsmError, Assembled, assemble
from pmupart.guest.aarch64.elf import ElfError, ElfImage, Segment, parse_elf
from pmupart.guest.aarch64.gic import GicV3
from pmupart.guest.aarch64.runner import (
    COUNTED_EVENTS,
    DEFAULT_MAX_INSTRUCTIONS,
    EXCEPTIONS_KEPT,
    PMU_PPI,
    PSCI_SYSTEM_OFF,
    RAM_BASE,
    UART_BASE,
    AArch64Program,
    ExceptionRecord,
    ForwardingHypervisor,
    GuestContext,
    GuestError,
    GuestFault,
    Hypervisor,
    HypResult,
    ImageError,
    RunResult,
    SysregTrap,
)

__all__ = [
    "COUNTED_EVENTS",
    "DEFAULT_MAX_INSTRUCTIONS",
    "EXCEPTIONS_KEPT",
    "PMU_PPI",
    "PSCI_SYSTEM_OFF",
    "RAM_BASE",
    "UART_BASE",
    "AArch64Program",
    "AsmError",
    "Assembled",
    "ElfError",
    "ElfImage",
    "ExceptionRecord",
    "ForwardingHypervisor",
    "GicV3",
    "GuestContext",
    "GuestError",
    "GuestFault",
    "HypResult",
    "Hypervisor",
    "ImageError",
    "RunResult",
    "Segment",
    "SysregTrap",
    "assemble",
    "parse_elf",
]
