"""Real AArch64 guest code under unicorn, with its PMU accesses going to the model.

``AArch64Program(code, base=..., entry=..., el=1)`` / ``AArch64Program.from_asm(text)``
is a guest program (a callable taking the CPU object); see :mod:`.runner`.  The assembler
is :mod:`.asm`.
"""

from pmupart.guest.aarch64.asm import AsmError, Assembled, assemble
from pmupart.guest.aarch64.runner import (
    PSCI_SYSTEM_OFF,
    AArch64Program,
    ExceptionRecord,
    ForwardingHypervisor,
    GuestError,
    Hypervisor,
    HypResult,
    RunResult,
    SysregTrap,
)

__all__ = [
    "PSCI_SYSTEM_OFF",
    "AArch64Program",
    "AsmError",
    "Assembled",
    "ExceptionRecord",
    "ForwardingHypervisor",
    "GuestError",
    "HypResult",
    "Hypervisor",
    "RunResult",
    "SysregTrap",
    "assemble",
]
