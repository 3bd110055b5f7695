"""The host driver on a PE with FEAT_PMUv3_ICNTR (spec kernel-code-deltas §4.18): no catalogue
core has it, so a what-if core (C1-Pro made PMUv3p9 with the instruction counter).

Rules: ``__armv8pmu_probe_pmu`` sets ARMV8_PMU_INSTR_IDX (32) in the counter mask when
``pmuv3_has_icntr()`` (v8 07/21 keeps it in ``hw_cntr_impl``); ``armv8pmu_get_event_idx``
puts INST_RETIRED there when it is free (no threshold, no user access), and the partitioning
series not while the PMU is partitioned."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pmupart import Machine
from pmupart.arch.cores import CORES
from pmupart.arch.features import PMUVer
from pmupart.arch.pe import F0_BIT, ICNTR_IDX
from pmupart.host import PerfEventAttr
from pmupart.host.topology import Cluster, Topology

INST, CYC, MEM = 0x08, 0x11, 0x13
ICNTR_CORE = dataclasses.replace(CORES["c1-pro"], name="c1-pro-icntr", pmuver=PMUVer.V3P9,
                                 icntr=True)


def mach(core: Any = ICNTR_CORE, **kw: Any) -> Machine:
    return Machine.from_topology(Topology("t", (Cluster("a", core, (0,)),)), **kw)


def open_(m: Machine, config: int, **kw: Any) -> Any:
    typ = m.host.pmu_of_cpu(0).type
    return m.host.perf_event_open(PerfEventAttr(type=typ, config=config, **kw), cpu=0)


def test_probe_adds_instr_idx_only_with_icntr() -> None:
    assert mach().host.pmus[0].hw_cntr_impl & F0_BIT
    assert not mach(CORES["c1-pro"]).host.pmus[0].hw_cntr_impl & F0_BIT


def test_inst_retired_goes_to_pmicntr_and_counts() -> None:
    m = mach()
    n = m.host.pmus[0].num_counters
    inst = open_(m, INST, exclude_kernel=True)  # the host kernel's own work counts at EL2
    assert inst.hw_idx == ICNTR_IDX
    assert open_(m, MEM).hw_idx == n - 1       # general counters untouched by it
    assert open_(m, INST).hw_idx == n - 2      # PMICNTR taken: a general counter
    pe = m.host.cpus[0].pe
    assert pe.read_el2("PMCNTENSET_EL0") & F0_BIT
    for _ in range(10):
        m.host.retire(0, 0, {INST: 1000, CYC: 2000})
    count, _, _ = m.host.perf_event_read(inst)
    assert count == 10_000
    # armv8pmu_write_event_type: the filter went to PMICFILTR (P set for exclude_kernel, NSH
    # clear), its evtCount stays INST_RETIRED (ARM §D24.5.14)
    icf = pe.read_el2("PMICFILTR_EL0")
    assert icf & (1 << 31) and not icf & (1 << 27) and icf & 0xFFFF == INST


def test_without_icntr_inst_retired_takes_a_general_counter() -> None:
    m = mach(CORES["c1-pro"])
    assert open_(m, INST).hw_idx == m.host.pmus[0].num_counters - 1


def test_partitioned_pmu_keeps_inst_retired_off_pmicntr() -> None:
    m = mach(reserved_host_counters=2)
    assert m.host.pmus[0].partitioned
    assert open_(m, INST).hw_idx != ICNTR_IDX


@pytest.mark.parametrize("config", [CYC, MEM])
def test_other_events_never_take_pmicntr(config: int) -> None:
    m = mach()
    assert open_(m, config).hw_idx != ICNTR_IDX
