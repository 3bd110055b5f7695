"""Guest programs the findings (``examples/findings/``) run: each is what a guest kernel
does in a few register accesses, written so that it behaves the same on every backend and
revision; what differs is what KVM does with those accesses.  Each takes the guest CPU
(``read``, ``write``, ``count``, ``el``).
"""

from __future__ import annotations

from typing import Any

#: A little work between accesses: one slice's worth of a 1 GHz core is far more.
_WORK = {"INST_RETIRED": 200_000, "CPU_CYCLES": 300_000}


def deny_el0(cpu: Any) -> int:
    """The guest kernel denies EL0 all PMU access (PMUSERENR_EL0 = 0, as Linux does unless
    ``perf_user_access`` is set), then runs; returns what EL1 reads back."""
    cpu.write("PMUSERENR_EL0", 0)
    cpu.count(_WORK)
    return int(cpu.read("PMUSERENR_EL0").value or 0)


def stop_pmu(cpu: Any) -> int:
    """The guest kernel stops its PMU (PMCR_EL0.E = 0, as ``armv8pmu_stop`` does) and keeps
    running; returns the PMCR_EL0 it reads back."""
    cpu.write("PMCR_EL0", 0)
    cpu.count(_WORK)
    return int(cpu.read("PMCR_EL0").value or 0)


def software_increment(cpu: Any) -> int:
    """Counter 0 counts SW_INCR at EL1 and EL0, enabled; one PMSWINC_EL0 write; returns the
    counter (1 on every correct PMU)."""
    cpu.write("PMEVTYPER0_EL0", 0x00)  # SW_INCR, no EL excluded
    cpu.write("PMEVCNTR0_EL0", 0)
    cpu.write("PMCNTENSET_EL0", 1)
    cpu.write("PMCR_EL0", 1)  # E
    cpu.write("PMSWINC_EL0", 1)
    return int(cpu.read("PMEVCNTR0_EL0").value or 0)


def read_then_reset_counter(cpu: Any) -> int:
    """A guest kernel's PMU probe: read PMCR_EL0 (PMCR.N), then zero counter 0 before using
    it; returns the counter."""
    cpu.read("PMCR_EL0")
    cpu.write("PMEVCNTR0_EL0", 0)
    cpu.count(_WORK)
    return int(cpu.read("PMEVCNTR0_EL0").value or 0)


__all__ = ["deny_el0", "read_then_reset_counter", "software_increment", "stop_pmu"]
