"""Small guest programs in Python, usable from a scenario (``program = "pmupart.guest.programs:
counting_loop"``) or with ``vcpu.run``: each takes the guest CPU (``read``, ``write``,
``count``, ``el``) and works the same on a bare PE and on either vPMU.
"""

from __future__ import annotations

from typing import Any


def counting_loop(cpu: Any) -> int:
    """Count the instructions of a 1,000,000-instruction loop on counter 0 (INST_RETIRED,
    EL0 and EL1) and return what the counter reads."""
    cpu.write("PMEVTYPER0_EL0", 0x08)
    cpu.write("PMEVCNTR0_EL0", 0)
    cpu.write("PMCNTENSET_EL0", 1)
    cpu.write("PMCR_EL0", cpu.read("PMCR_EL0").value | 1)
    cpu.count({"INST_RETIRED": 1_000_000, "CPU_CYCLES": 1_500_000})
    value = cpu.read("PMEVCNTR0_EL0").value
    cpu.write("PMCNTENCLR_EL0", 1)
    return int(value or 0)


def probe(cpu: Any) -> dict[str, int]:
    """Read what the guest's PMU advertises: PMCR_EL0.N and PMCEID0/1 (a VMM's sanity check
    after SET_NR_COUNTERS / FILTER)."""
    pmcr = cpu.read("PMCR_EL0").value or 0
    return {"N": (pmcr >> 11) & 0x1F, "PMCEID0": cpu.read("PMCEID0_EL0").value or 0,
            "PMCEID1": cpu.read("PMCEID1_EL0").value or 0}
