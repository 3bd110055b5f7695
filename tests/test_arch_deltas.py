"""Architecture rows of spec kernel-code-deltas §1, §2 and §5.1: the PE against Arm's
accessor pseudocode and field text (DDI0487 M.a.a)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pmupart.arch import PE, Outcome, Policies
from pmupart.arch.events import BASE_EVENTS
from pmupart.arch.sysreg import BY_NAME

C = 1 << 31
E, X = 1, 1 << 4
TPM, HPME, HPMD = 1 << 6, 1 << 7, 1 << 17
NSH = 1 << 27
INST, CYC, CHAIN = 0x08, 0x11, 0x1E


def mk(**kw: Any) -> PE:
    kw.setdefault("num_counters", 6)
    kw.setdefault("pmuver", "V3P5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PE(**kw)


def el2(pe: PE, name: str, value: int | None = None) -> int:
    with pe.at_el(2):
        if value is None:
            a = pe.read(name)
            assert a.outcome is Outcome.OK and a.value is not None
            return a.value
        assert pe.write(name, value).outcome is Outcome.OK
        return 0


def test_pmicfiltr_evtcount_reads_0x0008() -> None:
    """ARM §D24.5.14: PMICFILTR_EL0.evtCount, bits [15:0], reads as 0x0008 and is RO (the
    kernel's table: Field 15:0 evtCount)."""
    pe = mk(pmuver="V3P9", icntr=True, fgt=True, fgt2=True, hpmn0=True)
    assert el2(pe, "PMICFILTR_EL0") == 0x0008
    el2(pe, "PMICFILTR_EL0", (1 << 31) | 0xFFFF)
    assert el2(pe, "PMICFILTR_EL0") == (1 << 31) | 0x0008
    assert BY_NAME["PMICFILTR_EL0"].field("evtCount").mask == 0xFFFF


@pytest.mark.parametrize(("export_bus", "want"), [(True, X), (False, 0)])
def test_pmcr_x_is_raz_wi_without_an_export_bus(export_bus: bool, want: int) -> None:
    """ARM §D24.5.8: X is RW only when the implementation includes a PMU event export bus,
    otherwise RAZ/WI (a core feature flag, Core.export_bus)."""
    pe = mk(export_bus=export_bus)
    el2(pe, "PMCR_EL0", X | E)
    assert el2(pe, "PMCR_EL0") & (X | E) == want | E


def test_pmuacr_at_el1_traps_with_tpm() -> None:
    """ARM §D24.5.25, EL1: "elsif EL2Enabled() && MDCR_EL2.TPM == '1' then
    AArch64.SystemAccessTrap(EL2, 0x18)" for reads and writes."""
    pe = mk(pmuver="V3P9", fgt=True, fgt2=True, hpmn0=True)
    el2(pe, "MDCR_EL2", TPM | 6)
    pe.el = 1
    assert pe.read("PMUACR_EL1").outcome is Outcome.TRAP_EL2
    assert pe.write("PMUACR_EL1", 1).outcome is Outcome.TRAP_EL2
    el2(pe, "MDCR_EL2", 6)
    assert pe.read("PMUACR_EL1").outcome is Outcome.OK


@pytest.mark.parametrize(("debugv8p2", "counts"), [(True, False), (False, True)])
def test_external_debug_lifts_hpmd_only_before_debugv8p2(debugv8p2: bool, counts: bool) -> None:
    """ARM §J1.3.1.93: enabled external non-invasive debug overrides the HPMD prohibition
    only "if prohibited && !IsFeatureImplemented(FEAT_Debugv8p2)"."""
    pe = mk(pmuver="V3P1", debugv8p2=debugv8p2,
            policies=Policies(external_debug_enabled=True))
    el2(pe, "MDCR_EL2", HPMD | HPME | 6)
    el2(pe, "PMEVTYPER0_EL0", NSH | INST)
    el2(pe, "PMCNTENSET_EL0", 1)
    el2(pe, "PMCR_EL0", E)
    with pe.at_el(2):
        pe.count({"INST_RETIRED": 100})
    assert (el2(pe, "PMEVCNTR0_EL0") == 100) is counts


@pytest.mark.parametrize("implemented", [True, False])
def test_chain_counts_only_where_the_pe_implements_it(implemented: bool) -> None:
    """An event the PE does not implement counts nothing (ARM §D24.5.12): CHAIN on the odd
    counter of a pair counts only if CHAIN is in the PE's event set (PMCEID0[30])."""
    events = BASE_EVENTS if implemented else BASE_EVENTS - {CHAIN}
    pe = mk(pmuver="V3P1", events=events)
    assert bool(el2(pe, "PMCEID0_EL0") >> 30 & 1) is implemented
    el2(pe, "PMEVTYPER0_EL0", INST)
    el2(pe, "PMEVTYPER1_EL0", CHAIN)
    el2(pe, "PMEVCNTR0_EL0", (1 << 32) - 10)
    el2(pe, "PMCNTENSET_EL0", 3)
    el2(pe, "PMCR_EL0", E)
    pe.el = 1
    pe.count({"INST_RETIRED": 20})
    assert el2(pe, "PMEVCNTR1_EL0") == (1 if implemented else 0)


def test_nsh_is_res0_without_el2() -> None:
    """ARM §D24.5.12: NSH, bit [27], "When EL2 is implemented ... Otherwise RES0"."""
    with_el2 = mk()
    without = mk(el2=False)
    for pe, want in ((with_el2, NSH | INST), (without, INST)):
        pe.el = 1
        assert pe.write("PMEVTYPER0_EL0", NSH | INST).outcome is Outcome.OK
        assert pe.read("PMEVTYPER0_EL0").value == want
